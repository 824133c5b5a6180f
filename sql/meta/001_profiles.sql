-- Project meta database, schema version 1: user and group profiles.
CREATE TABLE profiles(
  distinct_id TEXT PRIMARY KEY,
  props       TEXT NOT NULL,    -- JSON object of profile properties
  updated_ms  INTEGER NOT NULL
);
CREATE TABLE group_profiles(
  group_key  TEXT NOT NULL,
  group_id   TEXT NOT NULL,
  props      TEXT NOT NULL,
  updated_ms INTEGER NOT NULL,
  PRIMARY KEY(group_key, group_id)
);
