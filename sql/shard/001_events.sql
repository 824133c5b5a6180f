-- Event shard, schema version 1.  One file per UTC month (or day).
-- Strings (event names, distinct_ids, property keys, short string values)
-- are dictionary-encoded in `dict`; an event row holds ids and a compact
-- binary property record (format in docs/STORAGE.md).
-- Each string appears once.  There is no unique index: the project's one
-- writer keeps the whole dictionary of an open shard in memory and appends
-- only strings it does not hold (an index would cost a random page write
-- per new string).
CREATE TABLE dict(
  id INTEGER PRIMARY KEY,       -- dense, from 1
  s  TEXT NOT NULL
);
-- id = (event time in ms since epoch, UTC) << 20 | slot.  Rows are thus
-- clustered by time (range scans need no index, appends stay at the right
-- edge of the b-tree) and the slot (0..2^20-1) is chosen by hashing
-- (event, distinct_id, $insert_id) with linear probing inside the
-- millisecond, so finding a duplicate is one point lookup.
CREATE TABLE events(
  id INTEGER PRIMARY KEY,
  e  INTEGER NOT NULL,          -- dict id of the event name
  d  INTEGER NOT NULL,          -- dict id of the distinct_id
  r  INTEGER NOT NULL,          -- receive time minus event time, ms
  p  BLOB NOT NULL              -- encoded properties
);
-- Recent events, in arrival order.  Live events arrive with seconds of
-- jitter, so inserting each straight into `events` would dirty one page of
-- the recent time window per event; the writer appends them here instead
-- (a page or two per commit) and moves them into `events` in id order every
-- few tens of thousands, touching each page of the window once.  A row's
-- `id` is final (dedup and slot probing consider both tables); readers read
-- both tables (`UNION ALL ... ORDER BY id`).
CREATE TABLE stage(
  seq INTEGER PRIMARY KEY,      -- arrival order
  id  INTEGER NOT NULL,         -- its id in `events`, as above
  e   INTEGER NOT NULL,
  d   INTEGER NOT NULL,
  r   INTEGER NOT NULL,
  p   BLOB NOT NULL
);
CREATE TABLE stats(
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO stats VALUES('events', 0);
