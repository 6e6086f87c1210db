-- Reliability: no lock held across a publish, send slots that can be given back, and an
-- in-doubt job that keeps its lead.

-- A relay takes due rows by hiding them until `relay_until` and commits before it
-- publishes, so nothing waits on a row lock while the broker confirms. A relay that dies
-- leaves its rows to reappear then.
ALTER TABLE outbox ADD COLUMN relay_until timestamptz;

-- A send slot is taken at the gate and marked started just before POST /connect; one
-- whose POST never started (lease lost, store error, a crash in between) is given back.
ALTER TABLE account_sends ADD COLUMN post_started boolean NOT NULL DEFAULT true;

-- A job that may have sent an invitation keeps its lead even once it has ended: a second
-- event for the person must not become a second invitation.
-- Ended jobs that an earlier version left in doubt did not hold their lead; where another
-- job holds it now, they let it go rather than fail the new indexes.
UPDATE jobs j SET send_started_at = NULL
 WHERE j.status IN ('failed', 'profile_not_found', 'invalid') AND j.send_started_at IS NOT NULL
   AND EXISTS (SELECT 1 FROM jobs o WHERE o.id <> j.id AND o.account_id = j.account_id
               AND (o.profile_key = j.profile_key OR o.profile_urn = j.profile_urn)
               AND (o.status NOT IN ('failed', 'profile_not_found', 'invalid')
                    OR o.send_started_at IS NOT NULL));
DROP INDEX jobs_one_per_lead;
CREATE UNIQUE INDEX jobs_one_per_lead ON jobs (account_id, profile_key)
    WHERE profile_key IS NOT NULL
      AND (status NOT IN ('failed', 'profile_not_found', 'invalid') OR send_started_at IS NOT NULL);
DROP INDEX jobs_one_per_urn;
CREATE UNIQUE INDEX jobs_one_per_urn ON jobs (account_id, profile_urn)
    WHERE profile_urn IS NOT NULL
      AND (status NOT IN ('failed', 'profile_not_found', 'invalid') OR send_started_at IS NOT NULL);

-- A job that waits for its account, its CRM or the key to recover has no outbox row of its
-- own: `waits_on` names what it waits for, one timer per wait lets its oldest job try again
-- now and then, and the wait's end releases them all.
ALTER TABLE jobs ADD COLUMN waits_on text;
CREATE INDEX jobs_waiting ON jobs (waits_on, created_at) WHERE waits_on IS NOT NULL;
CREATE TABLE waits (
    waits_on     text PRIMARY KEY,
    next_try_at  timestamptz NOT NULL,
    every_ms     bigint      NOT NULL
);
