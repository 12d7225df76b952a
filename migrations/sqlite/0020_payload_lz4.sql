-- PostgreSQL only (its payload compression); SQLite stores the payload as it is. The file keeps
-- both engines' migrations numbered alike.
SELECT 1;
