-- A shadow-mode turn: counted like a send by pacing and against the week, though nothing
-- went out, so a quota reading (which does not know of it) is lowered by it.
ALTER TABLE account_sends ADD COLUMN shadow boolean NOT NULL DEFAULT false;
