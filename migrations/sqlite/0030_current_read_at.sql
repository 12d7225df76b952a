-- When the read that found each policy's current version started (Unix ms; `current_read_at`),
-- so that a capture recorded after another but read before it (two runs of different kinds or
-- targets capturing one policy at once) no longer moves the current version back to older
-- content. NULL: unknown (every row before this migration, or a current version read from
-- another Graph object), which any read replaces.
ALTER TABLE policies ADD COLUMN current_read_at BIGINT;
