-- What capture runs found. Per item: the version the capture stored or reused (`snapshot_id`),
-- the version it was compared with (`base_snapshot_id`: the backup's for a drift check, the
-- policy's previous newest for a capture), and how the two compare (`drift`, with the number of
-- changed settings). Per run: a one-line summary of the result ("12 of 240 policies changed
-- since this backup"), written when the run concludes and used by its notification. No foreign
-- keys: a run's record outlives the versions it names.
ALTER TABLE run_items ADD COLUMN snapshot_id BIGINT;
ALTER TABLE run_items ADD COLUMN base_snapshot_id BIGINT;
ALTER TABLE run_items ADD COLUMN drift TEXT CHECK (drift IN ('unchanged', 'changed', 'deleted', 'new'));
ALTER TABLE run_items ADD COLUMN changed_settings BIGINT;
ALTER TABLE runs ADD COLUMN summary TEXT;
