-- Restore: when a claim of a `restore.execute` announced it was sending an item's create, written
-- and committed before the POST and only while that claim holds the run. A claim that takes the
-- run over after a crash looks for the policy an earlier claim may have created only for the
-- items with this mark; the others are created without looking, so a policy that existed
-- before is never taken for the restore's own.
ALTER TABLE run_items ADD COLUMN create_sent_at BIGINT;
