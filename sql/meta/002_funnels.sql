-- Project meta database, schema version 2: saved funnels
-- (POST /api/2.0/funnels/create, GET /api/2.0/funnels/list).
CREATE TABLE funnels(
  id         INTEGER PRIMARY KEY,   -- funnel_id
  name       TEXT NOT NULL,
  definition TEXT NOT NULL,         -- JSON: {"steps":[{"event":..,"where":..}],"length":N,"length_unit":".."}
  created_ms INTEGER NOT NULL
);
