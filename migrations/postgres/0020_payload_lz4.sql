-- A stored version's payload (its canonical JSON, several kilobytes) is compressed as it is
-- written. PostgreSQL's default, pglz, took about a quarter of the database's CPU while a
-- 10,000-item run stored its versions (benches/runs.rs, perf); lz4 compresses several times
-- faster. Versions stored before keep pglz: PostgreSQL reads either.
-- A server without lz4 (built without it, or older than PostgreSQL 14) keeps pglz; the
-- statement is dynamic so that an older server's parser never sees it.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE policy_snapshots ALTER COLUMN payload SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    RAISE NOTICE 'policy_snapshots.payload stays compressed with pglz: %', SQLERRM;
END
$$;
