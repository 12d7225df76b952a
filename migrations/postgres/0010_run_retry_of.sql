-- A run that retries the failed items of another run (or resumes a cancelled one) names it, so
-- each of the two run pages links to the other. No foreign key: a run outlives what it names.
ALTER TABLE runs ADD COLUMN retry_of BIGINT;
CREATE INDEX runs_retry_of ON runs (retry_of);
