-- When the admin CLI last chose the account's password (Unix ms; `create-user`, `set-password`).
-- No e-mail address is verified, so an account an invitation made (its invitation's
-- `accepted_at` equals its `created_at`: the acceptance writes both from one clock reading,
-- which an existing account joining through its own session, a later moment, never matches)
-- has the password whoever held the link chose, until the admin sets one. Such an account is
-- added to another tenant only with its own consent, and `create-tenant --owner` refuses it.
-- "Made by an invitation" is read from the invitations, never from a mark the acceptance would
-- write: an older instance serving beside a newer one after this migration does not know this
-- column, and the NULL it leaves means "not set by the admin", the safe side.
ALTER TABLE users ADD COLUMN password_set_by_admin_at BIGINT;
-- Resets made before this migration: each left an audit row (`user.set_password`,
-- `user.create_or_reset`, target `user:<id>`) dated after the account was made. Audit rows are
-- written best-effort, so an account whose reset left none still needs one again.
UPDATE users SET password_set_by_admin_at = (
    SELECT MAX(a.created_at) FROM audit_log a
    WHERE a.action IN ('user.set_password', 'user.create_or_reset')
      AND a.target = 'user:' || CAST(users.id AS TEXT)
      AND a.created_at > users.created_at
);
