-- Lanes: long runs over many policies queue in the bulk lane, short ones a user waits for in the
-- interactive lane, which has slots of its own. Every run before this migration is bulk.
ALTER TABLE runs ADD COLUMN lane TEXT NOT NULL DEFAULT 'bulk' CHECK (lane IN ('bulk', 'interactive'));

-- At most one active bulk run per tenant, across every instance: Graph's budget is per tenant and
-- app, so a second one would only compete for it. Runs that several instances of an older version
-- had running at once for one tenant go back to the queue (their items and counters stay), all but
-- the oldest, so that the index can be built.
UPDATE runs SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL
WHERE status = 'running'
  AND id NOT IN (SELECT MIN(id) FROM runs WHERE status = 'running' GROUP BY tenant_id);
CREATE UNIQUE INDEX runs_one_bulk_per_tenant ON runs (tenant_id) WHERE lane = 'bulk' AND status = 'running';

-- The fair-share claim reads when each tenant's last run in a lane ended.
CREATE INDEX runs_tenant_lane_finished ON runs (tenant_id, lane, finished_at);
