-- Facts about the log itself; today `secret_key_fingerprint`, the fingerprint of the key
-- its requests were accepted with (infra/key_fingerprint): tickets are sealed and codes
-- derived with that key, so a start with another one is refused. A log of an earlier
-- version has no row and adopts the key it starts with.
CREATE TABLE meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
