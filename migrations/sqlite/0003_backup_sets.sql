-- Backup sets and the policy snapshots they hold.
CREATE TABLE backup_sets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL,
    item_count BIGINT NOT NULL DEFAULT 0 CHECK (item_count >= 0),
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id)
);
CREATE INDEX backup_sets_tenant_created ON backup_sets (tenant_id, created_at);

CREATE TABLE backup_items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id BIGINT NOT NULL,
    backup_set_id BIGINT NOT NULL,
    policy_id BIGINT NOT NULL,
    snapshot_id BIGINT NOT NULL,
    -- The run that added the item (NULL when added otherwise); runs are kept, so no FK cascade.
    run_id BIGINT,
    captured_at BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, backup_set_id) REFERENCES backup_sets (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, policy_id) REFERENCES policies (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, snapshot_id) REFERENCES policy_snapshots (tenant_id, id),
    UNIQUE (backup_set_id, policy_id)
);
