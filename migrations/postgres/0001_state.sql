-- State of the distributed mode: the same tables as migrations/sqlite/0001_state.sql in
-- native PostgreSQL types. Constraints are named because a unique violation reaches the
-- application as StoreError::Conflict(<constraint name>).
-- Times are timestamptz; the domain keeps them to the millisecond, which it stores exactly.
-- Counts, offsets and partitions are bigint: u32 partitions and u64 offsets do not fit int4.

CREATE TABLE campaigns (
    id               uuid        NOT NULL,
    name             text        NOT NULL,
    total_coupons    bigint      NOT NULL,
    issued_coupons   bigint      NOT NULL DEFAULT 0,
    starts_at        timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    -- Log position of the creation event: what the coupon codes are derived from.
    origin_partition bigint      NOT NULL,
    origin_offset    bigint      NOT NULL,
    CONSTRAINT campaigns_pkey PRIMARY KEY (id),
    CONSTRAINT campaigns_total_positive CHECK (total_coupons > 0),
    -- Backstop of §5.1: never more issued than the campaign holds.
    CONSTRAINT campaigns_issued_within_total CHECK (issued_coupons BETWEEN 0 AND total_coupons),
    CONSTRAINT campaigns_origin_key UNIQUE (origin_partition, origin_offset)
);

CREATE TABLE coupons (
    code        text        NOT NULL,
    campaign_id uuid        NOT NULL,
    ordinal     bigint      NOT NULL,
    user_id     text        NOT NULL,
    ticket_id   uuid        NOT NULL,
    issued_at   timestamptz NOT NULL,
    CONSTRAINT coupons_pkey PRIMARY KEY (code),                          -- backstop of §5.2: unique across campaigns
    CONSTRAINT coupons_campaign_fkey FOREIGN KEY (campaign_id) REFERENCES campaigns (id),
    CONSTRAINT coupons_campaign_user_key UNIQUE (campaign_id, user_id),  -- backstop of §5.5: one coupon per user
    CONSTRAINT coupons_campaign_ordinal_key UNIQUE (campaign_id, ordinal) -- issue order, and GetCampaign's pages
);

CREATE TABLE ticket_results (
    ticket_id     uuid     NOT NULL,
    campaign_id   uuid     NOT NULL,
    user_id       text     NOT NULL,
    status        smallint NOT NULL,  -- IssueStatus::code(); never renumbered
    coupon_code   text,
    log_partition bigint   NOT NULL,
    log_offset    bigint   NOT NULL,
    CONSTRAINT ticket_results_pkey PRIMARY KEY (ticket_id)
);

-- How far each log partition is decided; moved in the same transaction as the
-- decisions, and compared-and-set so that a stale worker cannot commit.
CREATE TABLE partition_offsets (
    log_partition bigint NOT NULL,
    next_offset   bigint NOT NULL,
    CONSTRAINT partition_offsets_pkey PRIMARY KEY (log_partition)
);
