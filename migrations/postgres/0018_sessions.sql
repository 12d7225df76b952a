-- Sessions in the app's own table (server::auth::session_store), replacing the session store's
-- own table (sessions signed in before this migration end; their users sign in again). The
-- cookie holds only the random id, and the table only its SHA-256 (`id_hash`, hex), so a copy of
-- the table signs no one in. The record's data is JSON; the user, the generation and time
-- it was signed in under and its last save are columns too, so the authorization point reads
-- the session, the user and the membership in one statement. Times are Unix milliseconds.
DROP SCHEMA IF EXISTS tower_sessions CASCADE;
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_id BIGINT REFERENCES users (id) ON DELETE CASCADE,
    generation BIGINT,
    signed_in_at BIGINT,
    touched_at BIGINT,
    data TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
