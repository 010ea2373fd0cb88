//! One use case per business requirement, each with its own `Input`, `Output`, error
//! and `execute`. They depend only on `domain`.

pub mod campaign_cache;
pub mod create_campaign;
pub mod get_campaign;
pub mod get_issue_result;
pub mod issue_coupon;
pub mod issue_coupons;

pub use create_campaign::CreateCampaign;
pub use get_campaign::GetCampaign;
pub use get_issue_result::GetIssueResult;
pub use issue_coupon::IssueCoupon;
pub use issue_coupons::IssueCoupons;
