-- A job's priority (higher first) and its place in its account's backlog: created_at less
-- a day per point of priority (`job::rank_at`), so that age counts too.
ALTER TABLE jobs ADD COLUMN priority integer NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN rank_at timestamptz;
UPDATE jobs SET rank_at = created_at;
ALTER TABLE jobs ALTER COLUMN rank_at SET NOT NULL;
CREATE INDEX jobs_by_account_rank ON jobs (account_id, rank_at, id);
