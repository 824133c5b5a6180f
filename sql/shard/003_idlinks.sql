-- Event shard, schema version 3: identity links (Simplified ID Merge).
-- One row per ($device:D, U) pair seen on an event of this shard that
-- carried both $device_id D and $user_id U, with the earliest such event
-- time.  The query engine picks, per device, the pair with the earliest
-- time over all shards (docs/IDENTITY.md); keeping the pairs rather than a
-- decision makes the outcome independent of arrival order.
CREATE TABLE idlinks(
  a INTEGER NOT NULL,           -- dict id of "$device:D"
  b INTEGER NOT NULL,           -- dict id of U
  t INTEGER NOT NULL,           -- earliest event time, ms
  PRIMARY KEY(a, b)
) WITHOUT ROWID;
