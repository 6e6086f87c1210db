-- A lead known by its URN is the same lead whether an event names it by URN or by slug:
-- at most one open or successful job per account and URN too.
CREATE UNIQUE INDEX jobs_one_per_urn ON jobs (account_id, profile_urn)
    WHERE profile_urn IS NOT NULL AND status NOT IN ('failed', 'profile_not_found', 'invalid');
DROP INDEX jobs_by_urn;
