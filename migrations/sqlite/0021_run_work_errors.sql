-- How many claims of a run ended in an error of the work itself (a database error, a panic),
-- and the last one's sanitized text: after a bounded number the run ends `failed` instead of
-- being claimed again forever. A takeover after the owner died is not counted here.
ALTER TABLE runs ADD COLUMN work_errors BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN last_work_error TEXT;
