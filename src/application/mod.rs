//! One use case per business requirement, each with its own `Input`, `Output`, error
//! and `execute`. They depend only on `domain`. The pipeline's two halves:
//! `accept_issue_request` puts a request into the log and answers with a ticket;
//! `decide_issue_requests` decides the log's requests, in order, into the store.

pub mod accept_issue_request;
pub mod audit_decisions;
pub mod campaign_cache;
pub mod create_campaign;
pub mod decide_issue_requests;
pub mod decided_offsets;
pub mod get_campaign;
pub mod get_issue_result;
pub mod holder_cache;
pub mod list_campaigns;
pub mod rewind_decisions;
pub mod ticket_reads;

pub use accept_issue_request::AcceptIssueRequest;
pub use audit_decisions::AuditDecisions;
pub use create_campaign::CreateCampaign;
pub use decide_issue_requests::DecideIssueRequests;
pub use decided_offsets::DecidedOffsets;
pub use get_campaign::GetCampaign;
pub use get_issue_result::GetIssueResult;
pub use list_campaigns::ListCampaigns;
pub use rewind_decisions::RewindDecisions;
