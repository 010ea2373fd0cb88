//! `coupon.v1.CouponService`: parse, call the use case, map.

use buffa::{EnumValue, MessageField};
use connectrpc::{RequestContext, Response, ServiceRequest, ServiceResult};

use super::convert;
use super::errors::invalid_field;
use super::limits::Admission;
use super::long_poll;
use super::proto::coupon::v1::*;
use super::user_auth::UserAuth;
use crate::application::{
    AcceptIssueRequest, GetIssueResult, accept_issue_request, get_issue_result,
};
use crate::domain::ports::{CampaignRepository, IssueLog};
use crate::domain::{self, CampaignId, TicketSeal};

pub struct CouponApi<R, L> {
    pub accept_issue_request: AcceptIssueRequest<R, L>,
    pub users: UserAuth,
    pub get_issue_result: GetIssueResult,
    pub seal: TicketSeal,
}

impl<R: CampaignRepository, L: IssueLog> CouponService for CouponApi<R, L> {
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
        ctx: RequestContext,
        request: ServiceRequest<'_, GetIssueResultRequest>,
    ) -> ServiceResult<GetIssueResultResponse> {
        if request.ticket_id.is_empty() {
            return Err(invalid_field("ticket_id", "is required"));
        }
        let wait = long_poll::wait(&ctx, request.wait_ms)?;
        if !wait.is_zero() {
            // Waiting holds a place among the long-polls, not a slot of the work queue.
            if let Some(admission) = ctx.extensions().get::<Admission>() {
                admission.wait_without_slot(wait);
            }
        }
        let input = get_issue_result::Input {
            ticket: request.ticket_id.to_owned(),
            wait,
        };
        let output = self.get_issue_result.execute(input).await?;
        Ok(Response::new(
            self.result_response(request.ticket_id, output),
        ))
    }
}

impl<R, L> CouponApi<R, L> {
    fn result_response(
        &self,
        ticket: &str,
        output: get_issue_result::Output,
    ) -> GetIssueResultResponse {
        let mut response = GetIssueResultResponse {
            ticket_id: ticket.to_owned(),
            ..Default::default()
        };
        match output {
            get_issue_result::Output::Pending {
                position,
                retry_after,
                ..
            } => {
                response.status = EnumValue::from(IssueStatus::ISSUE_STATUS_PENDING);
                response.position = position.map(|ahead| i64::try_from(ahead).unwrap_or(i64::MAX));
                response.retry_after_ms =
                    i32::try_from(retry_after.as_millis()).unwrap_or(i32::MAX);
            }
            get_issue_result::Output::Decided(decided) => {
                response.status = EnumValue::from(wire_status(decided.status));
                if let Some(coupon) = decided.coupon {
                    response.coupon = MessageField::some(convert::coupon(&coupon, &self.seal));
                }
            }
        }
        response
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
