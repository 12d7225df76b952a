-- Runs and their items: the observable record of background work, and the durable queue itself.
CREATE TABLE runs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    initiated_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    operation_type TEXT NOT NULL,
    resource TEXT NOT NULL,
    action TEXT NOT NULL,
    -- The resource the run works on (a backup set); no FK: the run outlives a deleted target.
    target_id BIGINT NOT NULL,
    -- The validated input as JSON (backup set id, policy ids, options).
    input TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN (
        'pending', 'running', 'completed', 'completed_with_errors', 'failed', 'cancelled')),
    total_items BIGINT NOT NULL CHECK (total_items >= 0),
    processed_items BIGINT NOT NULL DEFAULT 0,
    succeeded BIGINT NOT NULL DEFAULT 0 CHECK (succeeded >= 0),
    failed BIGINT NOT NULL DEFAULT 0 CHECK (failed >= 0),
    skipped BIGINT NOT NULL DEFAULT 0 CHECK (skipped >= 0),
    -- Set when the whole run could not proceed (e.g. backup set deleted, credentials rejected).
    reason_code TEXT,
    failure_message TEXT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    lease_owner TEXT,
    lease_expires_at BIGINT,
    attempt BIGINT NOT NULL DEFAULT 0,
    CHECK (processed_items = succeeded + failed + skipped),
    CHECK (processed_items <= total_items),
    UNIQUE (tenant_id, id)
);
-- Deduplication under races: one active run per tenant and key.
CREATE UNIQUE INDEX runs_active_idempotency ON runs (tenant_id, idempotency_key)
    WHERE status IN ('pending', 'running');
CREATE INDEX runs_tenant_created ON runs (tenant_id, created_at);
CREATE INDEX runs_queue ON runs (status, created_at);

CREATE TABLE run_items (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    run_id BIGINT NOT NULL,
    policy_id BIGINT NOT NULL,
    outcome TEXT NOT NULL DEFAULT 'pending' CHECK (outcome IN ('pending', 'succeeded', 'failed', 'skipped')),
    reason_code TEXT,
    -- Sanitized, short; never a raw Graph payload, token or secret.
    message TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    finished_at BIGINT,
    FOREIGN KEY (tenant_id, run_id) REFERENCES runs (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, policy_id) REFERENCES policies (tenant_id, id) ON DELETE CASCADE,
    UNIQUE (run_id, policy_id)
);
CREATE INDEX run_items_run_outcome ON run_items (run_id, outcome);
