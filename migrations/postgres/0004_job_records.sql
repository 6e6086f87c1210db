-- Writebacks per CRM record: every record that joined a job hears its changes, an older
-- job never overwrites a newer one on the same record, and transient failures are retried
-- for a set time.

-- Each record a job answers to: the one that created it and every record that named the
-- same lead later (a second HubSpot contact, a Salesforce Contact beside its Lead, another
-- events `recordId`). `id` orders a record's jobs: a higher id joined later, and its state
-- is the one the record must keep.
CREATE TABLE job_records (
    id                 bigserial PRIMARY KEY,
    job_id             uuid        NOT NULL REFERENCES jobs (id),
    source             text        NOT NULL,
    record_id          text        NOT NULL,
    record_object      text,
    writeback_targets  text[]      NOT NULL,
    joined_at          timestamptz NOT NULL,
    UNIQUE (job_id, source, record_id)
);
CREATE INDEX job_records_by_record ON job_records (record_id, source);
INSERT INTO job_records (job_id, source, record_id, record_object, writeback_targets, joined_at)
    SELECT id, source, record_id, record_object, writeback_targets, created_at
    FROM jobs ORDER BY created_at, id;

-- The record a writeback is for.
ALTER TABLE writebacks ADD COLUMN job_record_id bigint REFERENCES job_records (id);
UPDATE writebacks w SET job_record_id = r.id FROM job_records r WHERE r.job_id = w.job_id;
ALTER TABLE writebacks ALTER COLUMN job_record_id SET NOT NULL;
CREATE INDEX writebacks_by_record ON writebacks (job_record_id, target, sequence);
-- When its transient failures began; it is parked once they have lasted
-- `writeback.retry.give_up_after`.
ALTER TABLE writebacks ADD COLUMN failing_since timestamptz;
