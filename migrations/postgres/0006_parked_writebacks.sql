-- Parked writebacks are few and wait for an operator: the status page lists them and the
-- metrics count them on every scrape, so both read this small index, never the table.
CREATE INDEX writebacks_parked ON writebacks (next_attempt_at DESC, id DESC) WHERE state = 'parked';
