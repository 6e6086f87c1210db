-- Account safety: the account's health, one send at a time per account, our sends per day,
-- and where each quota reading came from.

-- Set while GET /account/status reports the account disabled or in error.
ALTER TABLE accounts ADD COLUMN disabled_reason text;
ALTER TABLE accounts ADD COLUMN status_checked_at timestamptz;
-- The job whose send holds the account now; sends of one account never overlap, across
-- every worker. A worker that dies leaves it to expire.
ALTER TABLE accounts ADD COLUMN sending_job uuid;
ALTER TABLE accounts ADD COLUMN sending_until timestamptz;

-- `headers` (X-RateLimit-* of a response) or `endpoint` (GET /account/{id}/quota).
ALTER TABLE account_limits ADD COLUMN source text NOT NULL DEFAULT 'headers';

-- Each connection request leadlink made, for the daily cap and the spacing between sends.
CREATE TABLE account_sends (
    account_id  text        NOT NULL,
    job_id      uuid        NOT NULL,
    at          timestamptz NOT NULL,
    PRIMARY KEY (job_id, at)
);
CREATE INDEX account_sends_by_account ON account_sends (account_id, at);

-- API calls per scope (the key, an account's writes, reads, /account calls) in the last
-- minute, so every worker together stays under ConnectSafely's per-minute limits.
CREATE TABLE api_calls (
    scope  text        NOT NULL,
    at     timestamptz NOT NULL
);
CREATE INDEX api_calls_by_scope ON api_calls (scope, at);
