-- Project meta database, schema version 5: saved reports ("bookmarks") and
-- dashboards (POST /api/2.0/bookmarks/create, dashboards/create, ...).
CREATE TABLE bookmarks(
  id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- bookmark_id (never reused)
  name        TEXT NOT NULL,
  type        TEXT NOT NULL,        -- insights, funnels, retention, flows, formula, kpi
  description TEXT NOT NULL,
  params      TEXT NOT NULL,        -- JSON object: the report's query parameters
  created_ms  INTEGER NOT NULL,
  updated_ms  INTEGER NOT NULL
);
CREATE TABLE dashboards(
  id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- dashboard_id (never reused)
  name        TEXT NOT NULL,
  description TEXT NOT NULL,
  created_ms  INTEGER NOT NULL,
  updated_ms  INTEGER NOT NULL
);
-- A dashboard's layout: its reports in order (pos ascending; gaps allowed),
-- each a cell of the grid.  Deleting a bookmark deletes its cells.
CREATE TABLE dashboard_items(
  dashboard_id INTEGER NOT NULL,
  pos          INTEGER NOT NULL,
  bookmark_id  INTEGER NOT NULL,
  x INTEGER NOT NULL, y INTEGER NOT NULL, w INTEGER NOT NULL, h INTEGER NOT NULL,
  PRIMARY KEY(dashboard_id, pos)
);
CREATE INDEX dashboard_items_bookmark ON dashboard_items(bookmark_id);
