-- Project meta database, schema version 4: saved cohorts
-- (POST /api/2.0/cohorts/create; docs/QUERIES.md "Cohorts").  body is the
-- cohort as JSON: {"name":..,"description":..,"is_visible":0|1,"definition":{..}}.
CREATE TABLE cohorts(
  id         INTEGER PRIMARY KEY,
  body       TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
);
