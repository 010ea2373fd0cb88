-- Facts about the data itself; today `secret_key_fingerprint`, the fingerprint of the
-- key this state was decided with (infra/key_fingerprint): a start with another key is
-- refused. A database of an earlier version has no row and adopts the key it starts with.
CREATE TABLE meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
