-- What a run's captures are waiting for on Microsoft Graph right now (while it runs), and its
-- Graph figures (kept when it ends). The engine writes them at most once a second.
ALTER TABLE runs ADD COLUMN graph_wait_reason TEXT;
ALTER TABLE runs ADD COLUMN graph_wait_until BIGINT;
ALTER TABLE runs ADD COLUMN graph_requests BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN graph_throttled BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN graph_server_errors BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN graph_retries BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN graph_waited_ms BIGINT NOT NULL DEFAULT 0;
