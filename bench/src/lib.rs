//! `coupon-bench`: drives any deployment of the coupon service through its public
//! Connect API, measures it against the server's own health check, and verifies the
//! invariants of DESIGN §5 from the answers alone.

pub mod client;
pub mod load;
pub mod report;
pub mod run;
pub mod stats;
pub mod verify;
