-- A job's priority (higher first) and its place in its account's backlog: created_at less
-- a day per point of priority (`job::rank_at`), so that age counts too. `priority_seen_at`:
-- when the source said the priority, so that an older word never overwrites a newer one.
ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN priority_seen_at TEXT;
-- SQLite adds a NOT NULL column only with a default. That default is never a rank: the
-- rows there are given theirs below, and the trigger gives an insert without one its age,
-- as PostgreSQL's does, rather than let '' sort before every time.
ALTER TABLE jobs ADD COLUMN rank_at TEXT NOT NULL DEFAULT '';
UPDATE jobs SET rank_at = created_at;
CREATE TRIGGER jobs_rank_by_age AFTER INSERT ON jobs WHEN NEW.rank_at = ''
BEGIN
    UPDATE jobs SET rank_at = NEW.created_at WHERE id = NEW.id;
END;
CREATE INDEX jobs_by_account_rank ON jobs (account_id, rank_at, id);
