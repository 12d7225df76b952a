-- Every update that changes a run's status (its claim, its end) writes a new entry into each
-- index of runs whose rows it matches. Three indexes held every run although their queries look
-- only for some: the active runs (the queue depth), the runs that retry another, and the runs
-- that have ended (a tenant's last end, for the claim's fair share). Now each holds only those,
-- so a claim writes two index entries less and an end two less.
DROP INDEX runs_queue;
CREATE INDEX runs_queue ON runs (status, created_at) WHERE status IN ('pending', 'running');
DROP INDEX runs_retry_of;
CREATE INDEX runs_retry_of ON runs (retry_of) WHERE retry_of IS NOT NULL;
DROP INDEX runs_tenant_lane_finished;
CREATE INDEX runs_tenant_lane_finished ON runs (tenant_id, lane, finished_at)
    WHERE finished_at IS NOT NULL;
