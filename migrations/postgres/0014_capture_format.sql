-- What each snapshot was captured with: the capture format (what the capture recorded; rows
-- before this migration are format 1) and the capture options (assignments, scope tags), so
-- comparisons and drift checks capture the same way and know what "not captured then" means.
ALTER TABLE policy_snapshots ADD COLUMN capture_format BIGINT NOT NULL DEFAULT 1;
ALTER TABLE policy_snapshots ADD COLUMN with_assignments BIGINT NOT NULL DEFAULT 0
    CHECK (with_assignments IN (0, 1));
ALTER TABLE policy_snapshots ADD COLUMN with_scope_tags BIGINT NOT NULL DEFAULT 0
    CHECK (with_scope_tags IN (0, 1));
-- Format 1 kept assignments at the top of the payload and scope tags in the policy only when
-- they were asked for: their presence says which options a stored snapshot was captured with.
UPDATE policy_snapshots SET with_assignments = 1 WHERE payload LIKE '%"assignments":%';
UPDATE policy_snapshots SET with_scope_tags = 1 WHERE payload LIKE '%"roleScopeTagIds":%';

-- Settings catalog setting definitions (display names, options), each stored once by its id,
-- apart from any policy's content: a name Microsoft changes never makes a policy look changed.
-- Definitions are Microsoft's catalog, the same in every tenant.
CREATE TABLE setting_definitions (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    -- The definition as Graph returned it (canonical JSON).
    definition TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
