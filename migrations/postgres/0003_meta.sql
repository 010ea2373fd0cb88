-- Facts about the deployment's data; today `secret_key_fingerprint`, the fingerprint of
-- the key every node must share (infra/key_fingerprint). The first node to start records
-- it (INSERT … ON CONFLICT DO NOTHING), every node compares and refuses on a mismatch. A
-- database of an earlier version has no row and adopts the key of the first node to start.
CREATE TABLE meta (
    name  text NOT NULL,
    value text NOT NULL,
    CONSTRAINT meta_pkey PRIMARY KEY (name)
);
