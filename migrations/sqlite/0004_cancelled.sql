-- `cancelled`: a job called off before anything was sent (by an operator, or by the CRM).
-- It replaces `failed` "cancelled by operator", and like `failed` it lets its lead go.
-- The indexes go first: under their old predicates a cancelled job still held its lead, and
-- an operator-cancelled job whose lead has a newer job would collide with it.
DROP INDEX jobs_one_per_lead;
DROP INDEX jobs_one_per_urn;
DROP INDEX jobs_open_by_record;
UPDATE jobs SET status = 'cancelled'
 WHERE status = 'failed' AND error = 'cancelled by operator' AND send_started_at IS NULL;
CREATE UNIQUE INDEX jobs_one_per_lead ON jobs (account_id, profile_key)
    WHERE profile_key IS NOT NULL
      AND (status NOT IN ('failed', 'profile_not_found', 'invalid', 'cancelled')
           OR send_started_at IS NOT NULL);
CREATE UNIQUE INDEX jobs_one_per_urn ON jobs (account_id, profile_urn)
    WHERE profile_urn IS NOT NULL
      AND (status NOT IN ('failed', 'profile_not_found', 'invalid', 'cancelled')
           OR send_started_at IS NOT NULL);
CREATE UNIQUE INDEX jobs_open_by_record ON jobs (source, record_id)
    WHERE source IN ('hubspot', 'salesforce')
      AND status NOT IN ('sent', 'already_connected', 'invitation_pending',
                         'profile_not_found', 'failed', 'invalid', 'cancelled');
-- A job called off while a send of it may have gone out: once the relationship check finds
-- that nothing did, it ends `cancelled` instead of sending.
ALTER TABLE jobs ADD COLUMN called_off_at TEXT;
