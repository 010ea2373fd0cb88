-- The coupons' primary key was their code: encrypted, so random, and every issued coupon
-- dirtied a page of its own in that index (and a full-page image in the WAL after each
-- checkpoint). It was a backstop of §5.2, which holds by construction: a code is FF1 (a
-- permutation) of its campaign's log origin and its ordinal, origins are unique
-- (campaigns_origin_key) and so are (campaign_id, ordinal), now the primary key. Lookups
-- of a ticket's coupon go through (campaign_id, user_id): one coupon per user and campaign.
ALTER TABLE coupons
    DROP CONSTRAINT coupons_pkey,
    DROP CONSTRAINT coupons_campaign_ordinal_key,
    ADD CONSTRAINT coupons_pkey PRIMARY KEY (campaign_id, ordinal);
