//! The business rules, free of any storage, log or wire type.

pub mod campaign;
pub mod coupon_code;
pub mod issuance;
pub mod log;
pub mod ports;
pub mod secret;
pub mod ticket;
pub mod user;

pub use campaign::{
    Campaign, CampaignId, CampaignListing, CampaignName, CampaignState, ListPosition, NewCampaign,
    RequestId, TotalCoupons,
};
pub use coupon_code::{CodeAlphabet, CodeGenerator, CouponCode};
pub use issuance::{CampaignLedger, Coupon, Decision, IssueRequest};
pub use log::{LogEvent, LogPosition, LogRecord, Placement};
pub use secret::SecretKey;
pub use ticket::{IssueStatus, OpenedTicket, TicketId, TicketResult, TicketSeal};
pub use user::UserId;
