-- The claim looks at each tenant's oldest queued run and whether the tenant has a run going, per
-- lane. Queued and running runs are few beside the finished ones, so two small partial indexes
-- keep the claim's cost independent of the history: the queued runs by tenant, lane and age, and
-- the running ones by tenant and lane.
CREATE INDEX runs_pending_by_tenant ON runs (tenant_id, lane, created_at, id) WHERE status = 'pending';
CREATE INDEX runs_running_by_tenant ON runs (tenant_id, lane) WHERE status = 'running';
