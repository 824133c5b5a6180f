-- Event shard, schema version 2: a change counter.  The writer adds 1 to
-- stats 'gen' in every transaction that changes the shard, so a reader can
-- tell whether a copy it made (the query engine's projection file) is still
-- current, across restarts.
INSERT INTO stats VALUES('gen', 0);
