//! `coupon-bench`: drives any deployment of the coupon service through its public
//! Connect API, measures it against the server's own health check, and verifies the
//! invariants of DESIGN §5 from the answers alone.

pub mod charts;
pub mod client;
pub mod control;
pub mod load;
pub mod metrics_scrape;
pub mod poll_storm;
pub mod replay;
pub mod report;
pub mod rss;
pub mod run;
pub mod stats;
pub mod timeline;
pub mod verify;
