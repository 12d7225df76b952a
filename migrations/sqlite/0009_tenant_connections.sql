-- Tenants connected without SQL: a client secret entered in the app is stored encrypted
-- (AES-256-GCM, the tenant's row id as associated data) with the id of the key that sealed it;
-- graph_secret_ref is then 'encrypted'. A disconnected tenant keeps its data and starts no run.
ALTER TABLE tenants ADD COLUMN graph_secret_ciphertext TEXT;
ALTER TABLE tenants ADD COLUMN graph_secret_key_id TEXT;
ALTER TABLE tenants ADD COLUMN graph_secret_set_at BIGINT;
-- The day the client secret expires (YYYY-MM-DD), as its owner entered it.
ALTER TABLE tenants ADD COLUMN graph_secret_expires_on TEXT;
ALTER TABLE tenants ADD COLUMN disconnected_at BIGINT;

-- The instance-wide admin flag: may connect new tenants (and becomes their owner).
ALTER TABLE users ADD COLUMN is_admin BOOLEAN NOT NULL DEFAULT FALSE;

-- Each secret key's check value (a known text encrypted under it), so a start with a different
-- key under the same id is refused before any secret is touched.
CREATE TABLE secret_key_checks (
    key_id TEXT PRIMARY KEY,
    check_value TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Invitations: a one-time link for an e-mail without an account. Only the token's sha256 is kept.
CREATE TABLE invitations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'manager', 'operator', 'readonly')),
    token_hash TEXT NOT NULL UNIQUE,
    invited_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    accepted_at BIGINT,
    accepted_by BIGINT REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX invitations_tenant ON invitations (tenant_id, created_at);

-- The audit page filters a tenant's log by action and actor and pages by id.
CREATE INDEX audit_log_tenant_id ON audit_log (tenant_id, id);
