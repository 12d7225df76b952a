-- When an account's password was chosen through an invitation link (Unix ms;
-- `password_via_invitation_at`): no e-mail address is verified, so whoever held the link chose
-- it, whatever the address. NULL: the password was set by the admin CLI (`create-user`,
-- `set-password`, which clear the mark) or the demo seed. Such an account is added to a tenant
-- only with its own consent (an invitation its session accepts), and `create-tenant --owner`
-- refuses it until the admin resets its password.
ALTER TABLE users ADD COLUMN password_via_invitation_at BIGINT;
-- Accounts an invitation made before this migration: the acceptance wrote the account's
-- `created_at` and the invitation's `accepted_at` from one clock reading, which an existing
-- account joining through its own session (a later moment) never matches. A reset since then
-- left no trace, so such an account keeps the mark until the admin resets it again.
UPDATE users SET password_via_invitation_at = created_at
WHERE EXISTS (
    SELECT 1 FROM invitations i
    WHERE i.accepted_by = users.id AND i.accepted_at = users.created_at
);
