-- A restore preview is executed at most once: enforced here, not only by the check before the
-- insert (an execute that ended between that check and the insert let a second one in).
CREATE UNIQUE INDEX runs_one_execute_per_preview ON runs (tenant_id, target_id)
    WHERE operation_type = 'restore.execute';
