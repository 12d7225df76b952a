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
-- `user.create_or_reset`, target `user:<id>`) dated after the account was made, and raised its
-- `session_generation` (only a reset does: it starts at 0). A `user.create_or_reset` row of an
-- account whose generation is still 0 was written by the old create-user that lost the race
-- to an acceptance of the link (it kept the link holder's password and wrote the row all the
-- same): that is no reset. Audit rows are written best-effort, so an account whose reset left
-- none still needs one again. One grouped pass over the audit log (it is never pruned and has
-- no index on `target`): a subquery per user would scan it once per account.
UPDATE users SET password_set_by_admin_at = resets.at
FROM (
    SELECT target, MAX(created_at) AS at FROM audit_log
    WHERE action IN ('user.set_password', 'user.create_or_reset')
    GROUP BY target
) AS resets
WHERE resets.target = 'user:' || CAST(users.id AS TEXT)
  AND resets.at > users.created_at
  AND users.session_generation > 0;
