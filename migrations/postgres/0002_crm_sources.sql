-- CRM sources: jobs that learn their lead from the CRM, and writebacks chosen per job.

-- The CRM object the record is (HubSpot `contact`, Salesforce `Lead` or `Contact`).
ALTER TABLE jobs ADD COLUMN record_object text;
-- The lead's LinkedIn URL and fields are still to be read from the CRM (the event carried
-- only ids); the connect stage does that before anything else.
ALTER TABLE jobs ADD COLUMN enrich boolean NOT NULL DEFAULT false;
-- Where this job's status changes go. Jobs from before this migration that were written
-- back went to the callback, the only target there was.
ALTER TABLE jobs ADD COLUMN writeback_targets text[] NOT NULL DEFAULT '{}';
UPDATE jobs SET writeback_targets = '{callback}'
    WHERE EXISTS (SELECT 1 FROM writebacks w WHERE w.job_id = jobs.id AND w.target = 'callback');

-- A CRM record has at most one open job: further events attach to it, and the database
-- settles concurrent deliveries for one record (HubSpot sends up to 10 requests at once).
CREATE UNIQUE INDEX jobs_open_by_record ON jobs (source, record_id)
    WHERE source IN ('hubspot', 'salesforce')
      AND status NOT IN ('sent', 'already_connected', 'invitation_pending',
                         'profile_not_found', 'failed', 'invalid');

-- A CRM whose credentials stopped working: its writebacks and reads wait until a call
-- works again. One row per CRM while paused, for people to see.
CREATE TABLE crm_pauses (
    crm        text PRIMARY KEY,
    reason     text        NOT NULL,
    paused_at  timestamptz NOT NULL
);
