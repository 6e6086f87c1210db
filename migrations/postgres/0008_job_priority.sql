-- A job's priority (higher first) and its place in its account's backlog: created_at less
-- a day per point of priority (`job::rank_at`), so that age counts too. `priority_seen_at`:
-- when the source said the priority, so that an older word never overwrites a newer one.
ALTER TABLE jobs ADD COLUMN priority integer NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN priority_seen_at timestamptz;
ALTER TABLE jobs ADD COLUMN rank_at timestamptz;
UPDATE jobs SET rank_at = created_at;
ALTER TABLE jobs ALTER COLUMN rank_at SET NOT NULL;
-- A process of the previous version, still running while this one starts, inserts jobs
-- without a rank: they rank by age, as they did.
CREATE FUNCTION jobs_rank_by_age() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.rank_at IS NULL THEN
        NEW.rank_at := NEW.created_at;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER jobs_rank_by_age BEFORE INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_rank_by_age();
CREATE INDEX jobs_by_account_rank ON jobs (account_id, rank_at, id);
