-- The embedded store: the end state of migrations/postgres, for SQLite.
-- Types: uuid is a 16-byte BLOB, times are TEXT as sqlx writes DateTime<Utc> (RFC 3339,
-- UTC, so text order is time order), json and lists are TEXT holding JSON, booleans are
-- INTEGER. No time column has a default: every time is bound from Rust, and a forgotten
-- bind fails on NOT NULL instead of writing a local-time text that sorts wrongly.
-- AUTOINCREMENT: an id a stale message names is never given to a new row.

CREATE TABLE jobs (
    id                 BLOB NOT NULL PRIMARY KEY,
    source             TEXT    NOT NULL,
    record_id          TEXT    NOT NULL,
    account_id         TEXT    NOT NULL,
    profile_key        TEXT,
    profile_id         TEXT,
    profile_urn        TEXT,
    message            TEXT,
    lead               TEXT    NOT NULL,
    status             TEXT    NOT NULL,
    error              TEXT,
    hold_until         TEXT,
    retry_at           TEXT,
    attempts           INTEGER NOT NULL DEFAULT 0,
    sequence           INTEGER NOT NULL DEFAULT 0,
    changed_at         TEXT    NOT NULL,
    due_at             TEXT,
    lease_owner        TEXT,
    lease_until        TEXT,
    send_started_at    TEXT,
    created_at         TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL,
    record_object      TEXT,
    enrich             INTEGER NOT NULL DEFAULT 0,
    writeback_targets  TEXT    NOT NULL DEFAULT '[]',
    waits_on           TEXT
) STRICT;
CREATE UNIQUE INDEX jobs_one_per_lead ON jobs (account_id, profile_key)
    WHERE profile_key IS NOT NULL
      AND (status NOT IN ('failed', 'profile_not_found', 'invalid') OR send_started_at IS NOT NULL);
CREATE UNIQUE INDEX jobs_one_per_urn ON jobs (account_id, profile_urn)
    WHERE profile_urn IS NOT NULL
      AND (status NOT IN ('failed', 'profile_not_found', 'invalid') OR send_started_at IS NOT NULL);
CREATE UNIQUE INDEX jobs_open_by_record ON jobs (source, record_id)
    WHERE source IN ('hubspot', 'salesforce')
      AND status NOT IN ('sent', 'already_connected', 'invitation_pending',
                         'profile_not_found', 'failed', 'invalid');
CREATE INDEX jobs_by_record ON jobs (record_id, created_at);
CREATE INDEX jobs_by_account_status ON jobs (account_id, status, created_at);
CREATE INDEX jobs_by_status ON jobs (status, created_at);
CREATE INDEX jobs_waiting ON jobs (waits_on, created_at) WHERE waits_on IS NOT NULL;

CREATE TABLE job_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id  BLOB    NOT NULL REFERENCES jobs (id),
    at      TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    status  TEXT,
    detail  TEXT    NOT NULL DEFAULT '{}'
) STRICT;
CREATE INDEX job_events_by_job ON job_events (job_id, id);

CREATE TABLE idempotency_keys (
    source      TEXT NOT NULL,
    key         TEXT NOT NULL,
    job_id      BLOB NOT NULL REFERENCES jobs (id),
    created_at  TEXT NOT NULL,
    PRIMARY KEY (source, key)
) STRICT;

CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    topic        TEXT NOT NULL,
    ref          TEXT NOT NULL,
    due_at       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    relay_until  TEXT
) STRICT;
CREATE INDEX outbox_due ON outbox (due_at, id);
CREATE INDEX outbox_ref ON outbox (topic, ref);

CREATE TABLE job_records (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id             BLOB    NOT NULL REFERENCES jobs (id),
    source             TEXT    NOT NULL,
    record_id          TEXT    NOT NULL,
    record_object      TEXT,
    writeback_targets  TEXT    NOT NULL,
    joined_at          TEXT    NOT NULL,
    UNIQUE (job_id, source, record_id)
) STRICT;
CREATE INDEX job_records_by_record ON job_records (record_id, source);

CREATE TABLE writebacks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id           BLOB    NOT NULL REFERENCES jobs (id),
    target           TEXT    NOT NULL,
    sequence         INTEGER NOT NULL,
    payload          TEXT    NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    next_attempt_at  TEXT    NOT NULL,
    lease_until      TEXT,
    created_at       TEXT    NOT NULL,
    delivered_at     TEXT,
    job_record_id    INTEGER NOT NULL REFERENCES job_records (id),
    failing_since    TEXT
) STRICT;
CREATE INDEX writebacks_by_job ON writebacks (job_id, target, sequence);
CREATE INDEX writebacks_by_record ON writebacks (job_record_id, target, sequence);
CREATE INDEX writebacks_parked ON writebacks (next_attempt_at DESC, id DESC) WHERE state = 'parked';

CREATE TABLE account_limits (
    account_id   TEXT NOT NULL,
    action       TEXT NOT NULL,
    "limit"      INTEGER,
    used         INTEGER,
    remaining    INTEGER,
    reset_at     TEXT,
    observed_at  TEXT NOT NULL,
    source       TEXT NOT NULL DEFAULT 'headers',
    PRIMARY KEY (account_id, action)
) STRICT;

CREATE TABLE accounts (
    account_id         TEXT NOT NULL PRIMARY KEY,
    hold_until         TEXT,
    blocked_until      TEXT,
    reason             TEXT,
    updated_at         TEXT NOT NULL,
    disabled_reason    TEXT,
    status_checked_at  TEXT,
    sending_job        BLOB,
    sending_until      TEXT
) STRICT;

CREATE TABLE account_sends (
    account_id    TEXT    NOT NULL,
    job_id        BLOB    NOT NULL,
    at            TEXT    NOT NULL,
    post_started  INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (job_id, at)
) STRICT;
CREATE INDEX account_sends_by_account ON account_sends (account_id, at);

CREATE TABLE api_calls (
    scope  TEXT NOT NULL,
    at     TEXT NOT NULL
) STRICT;
CREATE INDEX api_calls_by_scope ON api_calls (scope, at);

CREATE TABLE api_key_state (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    paused         INTEGER NOT NULL DEFAULT 0,
    reason         TEXT,
    paused_at      TEXT,
    next_probe_at  TEXT
) STRICT;
INSERT INTO api_key_state (id) VALUES (1);

CREATE TABLE crm_pauses (
    crm        TEXT NOT NULL PRIMARY KEY,
    reason     TEXT NOT NULL,
    paused_at  TEXT NOT NULL
) STRICT;

CREATE TABLE waits (
    waits_on     TEXT NOT NULL PRIMARY KEY,
    next_try_at  TEXT    NOT NULL,
    every_ms     INTEGER NOT NULL
) STRICT;
