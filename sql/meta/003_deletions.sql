-- Project meta database, schema version 3: privacy deletions carried out
-- (POST /api/app/data-deletions/v3.0/), so their status can be read back.
CREATE TABLE deletions(
  task_id         TEXT PRIMARY KEY,
  compliance_type TEXT NOT NULL,   -- GDPR or CCPA
  distinct_ids    TEXT NOT NULL,   -- JSON array: the ids asked for and every id merged with them
  requested_ms    INTEGER NOT NULL,
  completed_ms    INTEGER NOT NULL,
  events          INTEGER NOT NULL, -- events deleted
  profiles        INTEGER NOT NULL, -- user profiles deleted
  links           INTEGER NOT NULL  -- identity links deleted
);
