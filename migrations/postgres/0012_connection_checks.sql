-- Each tenant's last connection check: when, how it ended and its report (JSON: the token
-- error in plain words, the permissions granted and missing, one line per policy type). A
-- tenant whose last check ended 'auth_failed' starts no run until a check passes; a tenant
-- without a row was never checked. No foreign key on run_id: the check outlives its run.
CREATE TABLE tenant_connection_checks (
    tenant_id BIGINT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    run_id BIGINT,
    checked_at BIGINT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN (
        'ok', 'auth_failed', 'no_consent', 'permissions_missing', 'incomplete')),
    report TEXT NOT NULL
);
