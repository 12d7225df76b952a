-- Databases made before 0009 got the instance admin flag FALSE for every account, so nobody
-- could connect a tenant in the app, although the first account of a database is an admin
-- (create-user gives it the flag). The first account (the smallest id) gets it here when no
-- account has it; an empty database, or one with an admin, is left as it is.
UPDATE users SET is_admin = TRUE
WHERE id = (SELECT MIN(id) FROM users)
  AND NOT EXISTS (SELECT 1 FROM users WHERE is_admin);
