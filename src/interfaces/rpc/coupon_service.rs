//! `coupon.v1.CouponService`: parse, call the use case, map.

use buffa::{EnumValue, MessageField};
use connectrpc::{RequestContext, Response, ServiceRequest, ServiceResult};

use super::convert;
use super::errors::invalid_field;
use super::proto::coupon::v1::*;
use super::user_auth::UserAuth;
use crate::application::{
    AcceptIssueRequest, GetIssueResult, accept_issue_request, get_issue_result,
};
use crate::domain::ports::{CampaignRepository, IssueLog, TicketRepository};
use crate::domain::{self, CampaignId, TicketSeal};

pub struct CouponApi<R, L, T> {
    pub accept_issue_request: AcceptIssueRequest<R, L>,
    pub users: UserAuth,
    pub get_issue_result: GetIssueResult<T>,
    pub seal: TicketSeal,
}

impl<R: CampaignRepository, L: IssueLog, T: TicketRepository> CouponService for CouponApi<R, L, T> {
    async fn issue_coupon(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, IssueCouponRequest>,
    ) -> ServiceResult<IssueCouponResponse> {
        let input = accept_issue_request::Input {
            campaign_id: CampaignId::parse(request.campaign_id)
                .map_err(|e| invalid_field("campaign_id", e))?,
            user_id: self.users.user_id(ctx.headers(), request.user_id)?,
        };
        let output = self.accept_issue_request.execute(input).await?;
        Ok(Response::new(IssueCouponResponse {
            ticket_id: output.ticket,
            accepted_at: convert::timestamp(output.accepted_at),
            ..Default::default()
        }))
    }

    async fn get_issue_result(
        &self,
        _ctx: RequestContext,
        request: ServiceRequest<'_, GetIssueResultRequest>,
    ) -> ServiceResult<GetIssueResultResponse> {
        if request.ticket_id.is_empty() {
            return Err(invalid_field("ticket_id", "is required"));
        }
        let input = get_issue_result::Input {
            ticket: request.ticket_id.to_owned(),
        };
        let (status, coupon) = match self.get_issue_result.execute(input).await? {
            get_issue_result::Output::Pending { .. } => (IssueStatus::ISSUE_STATUS_PENDING, None),
            get_issue_result::Output::Decided { status, coupon, .. } => {
                (wire_status(status), coupon)
            }
        };
        Ok(Response::new(GetIssueResultResponse {
            ticket_id: request.ticket_id.to_owned(),
            status: EnumValue::from(status),
            coupon: coupon
                .map(|c| MessageField::some(convert::coupon(&c, &self.seal)))
                .unwrap_or_default(),
            ..Default::default()
        }))
    }
}

fn wire_status(status: domain::IssueStatus) -> IssueStatus {
    match status {
        domain::IssueStatus::Issued => IssueStatus::ISSUE_STATUS_ISSUED,
        domain::IssueStatus::SoldOut => IssueStatus::ISSUE_STATUS_SOLD_OUT,
        domain::IssueStatus::NotStarted => IssueStatus::ISSUE_STATUS_NOT_STARTED,
        domain::IssueStatus::AlreadyIssued => IssueStatus::ISSUE_STATUS_ALREADY_ISSUED,
    }
}
