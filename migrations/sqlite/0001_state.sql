-- State of the embedded mode. The log lives in its own file (infra/embedded_log), so
-- accepting requests and deciding them never wait on each other's write lock.
-- Times are milliseconds since the Unix epoch (the log's clock has no finer grain).

CREATE TABLE campaigns (
    id               TEXT    PRIMARY KEY NOT NULL,
    name             TEXT    NOT NULL,
    total_coupons    INTEGER NOT NULL CHECK (total_coupons > 0),
    issued_coupons   INTEGER NOT NULL DEFAULT 0 CHECK (issued_coupons BETWEEN 0 AND total_coupons),
    starts_at_ms     INTEGER NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    -- Log position of the creation event: what the coupon codes are derived from.
    origin_partition INTEGER NOT NULL,
    origin_offset    INTEGER NOT NULL,
    UNIQUE (origin_partition, origin_offset)
) STRICT;

CREATE TABLE coupons (
    code         TEXT    PRIMARY KEY NOT NULL,  -- backstop of §5.2: unique across campaigns
    campaign_id  TEXT    NOT NULL REFERENCES campaigns (id),
    ordinal      INTEGER NOT NULL,
    user_id      TEXT    NOT NULL,
    ticket_id    TEXT    NOT NULL,
    issued_at_ms INTEGER NOT NULL,
    UNIQUE (campaign_id, user_id),              -- backstop of §5.5: one coupon per user
    UNIQUE (campaign_id, ordinal)               -- issue order, and GetCampaign's pages
) STRICT;

CREATE TABLE ticket_results (
    ticket_id     TEXT    PRIMARY KEY NOT NULL,
    campaign_id   TEXT    NOT NULL,
    user_id       TEXT    NOT NULL,
    status        INTEGER NOT NULL,
    coupon_code   TEXT,
    log_partition INTEGER NOT NULL,
    log_offset    INTEGER NOT NULL
) STRICT;

-- How far each log partition is decided; moved in the same transaction as the
-- decisions, and compared-and-set so that a stale worker cannot commit.
CREATE TABLE partition_offsets (
    log_partition INTEGER PRIMARY KEY NOT NULL,
    next_offset   INTEGER NOT NULL
) STRICT;
