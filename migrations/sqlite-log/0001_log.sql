-- The embedded mode's durable log: append-only, one partition (0), offsets from 0.
-- `appended_at_ms` is the writer's clock at the commit that made the record durable:
-- the one clock that decides whether a request came before a campaign's start.
CREATE TABLE log_records (
    log_offset     INTEGER PRIMARY KEY NOT NULL,
    appended_at_ms INTEGER NOT NULL,
    payload        TEXT    NOT NULL
) STRICT;
