-- Restore: when the inventory first learned of a policy (milliseconds since the epoch). A claim
-- taking a `restore.execute` over, or a preview after a create whose answer was lost, looks for
-- the policy that create made among the policies Intune holds with the backup's name: one the
-- inventory held before the create was announced (`run_items.create_sent_at`) is someone
-- else's, one it learned of since (a sync in between) may be the restore's own.
-- The inventory's upsert does not name the column: its default stamps each new row with the
-- database's clock, and an upsert's update leaves it. Rows older than this migration are
-- stamped 0, known before every create, as every inventory row was before.
ALTER TABLE policies ADD COLUMN first_seen_at BIGINT;
UPDATE policies SET first_seen_at = 0;
ALTER TABLE policies ALTER COLUMN first_seen_at
    SET DEFAULT (floor(extract(epoch FROM clock_timestamp()) * 1000))::BIGINT;

-- Restore: when a claim of a `restore.execute` announced it was sending an item's update in
-- place, as `create_sent_at` for a create: a claim taking the run over that finds the policy
-- matching neither the preview nor the backup records it as partly written, not untouched.
ALTER TABLE run_items ADD COLUMN update_sent_at BIGINT;
