-- Where each coupon's winning request sits in the log, so that a coupon names its ticket
-- exactly as IssueCoupon handed it out (`<uuid>.<partition>.<offset>.<tag>`, issue 13).
-- Coupons issued before this change keep NULL here: their tickets were handed out in the
-- first form (`<uuid>.<tag>`), which is what they keep being listed as.
ALTER TABLE coupons ADD COLUMN ticket_partition INTEGER;
ALTER TABLE coupons ADD COLUMN ticket_offset INTEGER;
