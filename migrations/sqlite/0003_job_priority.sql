-- A job's priority (higher first) and its place in its account's backlog: created_at less
-- a day per point of priority (`job::rank_at`), so that age counts too.
ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
-- SQLite adds a NOT NULL column only with a default; every row gets its own value below.
ALTER TABLE jobs ADD COLUMN rank_at TEXT NOT NULL DEFAULT '';
UPDATE jobs SET rank_at = created_at;
CREATE INDEX jobs_by_account_rank ON jobs (account_id, rank_at, id);
