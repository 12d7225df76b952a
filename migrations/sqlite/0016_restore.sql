-- Defensive restore. Per run item of a `restore.preview`: the plan (`restore_plan`: create,
-- update, unchanged or blocked), the live content hash the preview saw (`live_hash`, which an
-- execute checks again right before writing) and the safety checks' notes as JSON (blocked
-- reasons, warnings, removals). Per item of a `restore.execute`: what it did (`restore_action`)
-- and the Graph id of a policy it created (`created_graph_id`). Per run: what blocks a whole
-- restore (`blocked`: a missing application permission, named). Per policy: the version its
-- last capture found (`current_snapshot_id`), so a policy restored to an older version shows
-- that version as current. No foreign keys: a run's record outlives the versions it names.
ALTER TABLE run_items ADD COLUMN restore_plan TEXT CHECK (restore_plan IN ('create', 'update', 'unchanged', 'blocked'));
ALTER TABLE run_items ADD COLUMN restore_action TEXT CHECK (restore_action IN ('created', 'updated', 'unchanged'));
ALTER TABLE run_items ADD COLUMN live_hash TEXT;
ALTER TABLE run_items ADD COLUMN restore_notes TEXT;
ALTER TABLE run_items ADD COLUMN created_graph_id TEXT;
ALTER TABLE runs ADD COLUMN blocked TEXT;
ALTER TABLE policies ADD COLUMN current_snapshot_id BIGINT;
