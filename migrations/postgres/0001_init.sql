-- The source of truth: every job, its history, and everything still to be published.

CREATE TABLE jobs (
    id               uuid PRIMARY KEY,
    source           text        NOT NULL,
    record_id        text        NOT NULL,
    account_id       text        NOT NULL,
    -- The lead's identity for this account: the canonical vanity slug or the URN.
    -- NULL only for leads that never had a usable profile reference (status invalid).
    profile_key      text,
    profile_id       text,
    profile_urn      text,
    message          text,
    lead             jsonb       NOT NULL,
    status           text        NOT NULL,
    error            text,
    hold_until       timestamptz,
    retry_at         timestamptz,
    attempts         integer     NOT NULL DEFAULT 0,
    sequence         integer     NOT NULL DEFAULT 0,
    changed_at       timestamptz NOT NULL,
    -- When a waiting job may next be tried; NULL once it has ended.
    due_at           timestamptz,
    lease_owner      text,
    lease_until      timestamptz,
    -- Set just before POST /connect and cleared with its outcome: a value left behind by
    -- a dead worker means "an invitation may have gone out", checked before any resend.
    send_started_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- One open or successful job per lead and account: the database refuses a second one.
CREATE UNIQUE INDEX jobs_one_per_lead ON jobs (account_id, profile_key)
    WHERE profile_key IS NOT NULL AND status NOT IN ('failed', 'profile_not_found', 'invalid');
-- The same for the URN: a lead named by URN is the same lead whether an event names it by
-- URN or by slug.
CREATE UNIQUE INDEX jobs_one_per_urn ON jobs (account_id, profile_urn)
    WHERE profile_urn IS NOT NULL AND status NOT IN ('failed', 'profile_not_found', 'invalid');
CREATE INDEX jobs_by_record ON jobs (record_id, created_at);
CREATE INDEX jobs_by_account_status ON jobs (account_id, status, created_at);
CREATE INDEX jobs_by_status ON jobs (status, created_at);

CREATE TABLE job_events (
    id      bigserial PRIMARY KEY,
    job_id  uuid        NOT NULL REFERENCES jobs (id),
    at      timestamptz NOT NULL,
    kind    text        NOT NULL,
    status  text,
    detail  jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX job_events_by_job ON job_events (job_id, id);

CREATE TABLE idempotency_keys (
    source      text        NOT NULL,
    key         text        NOT NULL,
    job_id      uuid        NOT NULL REFERENCES jobs (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, key)
);

-- Everything that must reach the broker: fresh jobs, parked jobs (due later), writebacks.
-- A row is deleted once its message is confirmed by the broker.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    topic       text        NOT NULL,
    ref         text        NOT NULL,
    due_at      timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_due ON outbox (due_at, id);
CREATE INDEX outbox_ref ON outbox (topic, ref);

CREATE TABLE writebacks (
    id               bigserial PRIMARY KEY,
    job_id           uuid        NOT NULL REFERENCES jobs (id),
    target           text        NOT NULL,
    sequence         integer     NOT NULL,
    payload          jsonb       NOT NULL,
    state            text        NOT NULL DEFAULT 'pending',
    attempts         integer     NOT NULL DEFAULT 0,
    last_error       text,
    next_attempt_at  timestamptz NOT NULL,
    lease_until      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
CREATE INDEX writebacks_by_job ON writebacks (job_id, target, sequence);

-- The X-RateLimit-* headers last seen, per account and action.
CREATE TABLE account_limits (
    account_id   text        NOT NULL,
    action       text        NOT NULL,
    "limit"      integer,
    used         integer,
    remaining    integer,
    reset_at     timestamptz,
    observed_at  timestamptz NOT NULL,
    PRIMARY KEY (account_id, action)
);

-- What the API told us about an account's connection requests.
CREATE TABLE accounts (
    account_id    text PRIMARY KEY,
    hold_until    timestamptz,
    blocked_until timestamptz,
    reason        text,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The ConnectSafely key: paused after a 401 until a probe succeeds. One row.
CREATE TABLE api_key_state (
    id             integer PRIMARY KEY CHECK (id = 1),
    paused         boolean     NOT NULL DEFAULT false,
    reason         text,
    paused_at      timestamptz,
    next_probe_at  timestamptz
);
INSERT INTO api_key_state (id) VALUES (1);
