-- The versions list names the run that captured each version (Capture now, drift checks and
-- restores record theirs on their run items): found by policy and version, not by reading
-- every run item of the tenant.
CREATE INDEX run_items_policy_version ON run_items (tenant_id, policy_id, snapshot_id)
    WHERE snapshot_id IS NOT NULL;
