-- Sessions live in the session store as opaque rows, so they cannot be found by user. Each
-- session records the user's generation at sign-in and is honoured only while it still matches:
-- a password change bumps it and signs the user out everywhere.
ALTER TABLE users ADD COLUMN session_generation BIGINT NOT NULL DEFAULT 0;
