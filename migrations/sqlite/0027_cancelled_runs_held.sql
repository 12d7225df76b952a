-- A cancelled run keeps its lease while its claim still sends and records what was in flight
-- (it is "settled" once let go of). The claim's tenant affinity and the starts' settle check
-- look for such runs per tenant: cancelled runs are the many, those still holding a lease the
-- few, so a small partial index keeps both independent of the tenant's history.
CREATE INDEX runs_cancelled_held_by_tenant ON runs (tenant_id)
    WHERE status = 'cancelled' AND lease_expires_at IS NOT NULL;
