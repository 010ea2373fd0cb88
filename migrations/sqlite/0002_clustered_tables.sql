-- Per issued coupon the worker used to write six B-trees: the coupons rowid table, its
-- `code` key (random order: codes are encrypted), two unique indexes, and the ticket
-- results' rowid table and key. Every commit rewrites each page it touched into the WAL,
-- and a random key touches a page of its own per coupon, so the code key alone cost a
-- 4 KiB page write per coupon. Now:
--   * coupons are clustered by (campaign_id, ordinal): issue order, GetCampaign's pages;
--   * ticket results are clustered by their ticket id (UUIDv7: time-ordered);
--   * the code key is gone. It was a backstop of §5.2, which holds by construction: a
--     code is FF1 (a permutation) of its campaign's log origin and its ordinal, origins
--     are unique (campaigns' UNIQUE (origin_partition, origin_offset)) and so are
--     (campaign_id, ordinal) (the primary key below). Lookups of a ticket's coupon go
--     through (campaign_id, user_id), one coupon per user and campaign.

CREATE TABLE coupons_clustered (
    campaign_id  TEXT    NOT NULL REFERENCES campaigns (id),
    ordinal      INTEGER NOT NULL,
    code         TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    ticket_id    TEXT    NOT NULL,
    issued_at_ms INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, ordinal),
    UNIQUE (campaign_id, user_id)               -- backstop of §5.5: one coupon per user
) STRICT, WITHOUT ROWID;

INSERT INTO coupons_clustered (campaign_id, ordinal, code, user_id, ticket_id, issued_at_ms)
    SELECT campaign_id, ordinal, code, user_id, ticket_id, issued_at_ms FROM coupons;
DROP TABLE coupons;
ALTER TABLE coupons_clustered RENAME TO coupons;

CREATE TABLE ticket_results_clustered (
    ticket_id     TEXT    PRIMARY KEY NOT NULL,
    campaign_id   TEXT    NOT NULL,
    user_id       TEXT    NOT NULL,
    status        INTEGER NOT NULL,
    coupon_code   TEXT,
    log_partition INTEGER NOT NULL,
    log_offset    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

INSERT INTO ticket_results_clustered
    SELECT ticket_id, campaign_id, user_id, status, coupon_code, log_partition, log_offset
    FROM ticket_results;
DROP TABLE ticket_results;
ALTER TABLE ticket_results_clustered RENAME TO ticket_results;
