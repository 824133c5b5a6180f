-- Event shard, schema version 1.  One file per UTC month (or day).
-- Strings (event names, distinct_ids, property keys, short string values)
-- are dictionary-encoded in `dict`; an event row holds ids and a compact
-- binary property record (format in docs/STORAGE.md).
CREATE TABLE dict(
  id INTEGER PRIMARY KEY,       -- dense, from 1
  s  TEXT NOT NULL UNIQUE
);
CREATE TABLE events(
  t   INTEGER NOT NULL,         -- event time, ms since epoch, UTC
  seq INTEGER NOT NULL,         -- arrival order within the shard
  e   INTEGER NOT NULL,         -- dict id of the event name
  d   INTEGER NOT NULL,         -- dict id of the distinct_id
  k   INTEGER,                  -- dedup hash of (event, distinct_id, t, $insert_id); NULL = no $insert_id
  r   INTEGER NOT NULL,         -- receive time, ms since epoch (mp_processing_time_ms)
  p   BLOB NOT NULL,            -- encoded properties
  PRIMARY KEY(t, seq)
) WITHOUT ROWID;
CREATE INDEX events_dedup ON events(k) WHERE k IS NOT NULL;
CREATE TABLE stats(
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO stats VALUES('events', 0);
