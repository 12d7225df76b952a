-- The policy inventory synced from Graph, and point-in-time snapshots of policies.
CREATE TABLE policies (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    graph_id TEXT NOT NULL,
    policy_type TEXT NOT NULL CHECK (policy_type IN (
        'settings_catalog', 'device_configuration', 'compliance', 'administrative_template')),
    display_name TEXT NOT NULL,
    platform TEXT NOT NULL,
    last_modified_at BIGINT,
    -- Set when a sync no longer finds the policy in Intune; the row stays for history.
    gone_from_intune_at BIGINT,
    synced_at BIGINT NOT NULL,
    UNIQUE (tenant_id, policy_type, graph_id),
    -- Lets child tables reference (tenant, policy) so a row can never mix tenants.
    UNIQUE (tenant_id, id)
);
CREATE INDEX policies_tenant_name ON policies (tenant_id, display_name);

CREATE TABLE policy_snapshots (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    policy_id BIGINT NOT NULL,
    -- Hex sha256 of the canonical JSON payload: an unchanged policy reuses its snapshot.
    content_hash TEXT NOT NULL,
    payload TEXT NOT NULL,
    captured_at BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, policy_id) REFERENCES policies (tenant_id, id) ON DELETE CASCADE,
    UNIQUE (policy_id, content_hash),
    UNIQUE (tenant_id, id)
);
