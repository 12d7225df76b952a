-- Tenants, users and who may do what in which tenant.
CREATE TABLE tenants (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    external_id TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    graph_client_id TEXT,
    -- A reference to where the client secret lives (e.g. an environment variable name), never the secret.
    graph_secret_ref TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE memberships (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('owner', 'manager', 'operator', 'readonly')),
    created_at BIGINT NOT NULL,
    UNIQUE (user_id, tenant_id)
);
CREATE INDEX memberships_tenant ON memberships (tenant_id);
