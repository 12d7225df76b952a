-- The sign-in throttle's budgets (server::auth::throttle), shared by every instance on the
-- database: one row per key that spent part of its budget recently ('account:<e-mail>',
-- 'address:<IPv4 or IPv6 /64>'), with its GCRA "next free" time in Unix milliseconds. A time in
-- the past is the same as no row; the throttle's timer deletes such rows.
CREATE TABLE sign_in_budgets (
    key TEXT NOT NULL PRIMARY KEY,
    next_free BIGINT NOT NULL
);
