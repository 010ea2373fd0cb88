//! `coupon.v1.CampaignService`: parse, call the use case, map.

use std::time::Instant;

use buffa::MessageField;
use chrono::{DateTime, Utc};
use connectrpc::{ConnectError, RequestContext, Response, ServiceRequest, ServiceResult};

use super::convert::{
    self, list_token, page_token, parse_alphabet, parse_list_token, parse_page_token,
};
use super::errors::invalid_field;
use super::proto::coupon::v1::*;
use crate::application::{
    CreateCampaign, GetCampaign, ListCampaigns, create_campaign, get_campaign, list_campaigns,
};
use crate::domain::ports::{CampaignRepository, IssueLog};
use crate::domain::{CampaignId, CampaignName, RequestId, TicketSeal, TotalCoupons};

pub struct CampaignApi<R, L> {
    pub create_campaign: CreateCampaign<R, L>,
    pub get_campaign: GetCampaign<R>,
    pub list_campaigns: ListCampaigns<R>,
    pub seal: TicketSeal,
}

impl<R: CampaignRepository, L: IssueLog> CampaignService for CampaignApi<R, L> {
    async fn create_campaign(
        &self,
        _ctx: RequestContext,
        request: ServiceRequest<'_, CreateCampaignRequest>,
    ) -> ServiceResult<CreateCampaignResponse> {
        let input = create_campaign::Input {
            name: CampaignName::parse(request.name).map_err(|e| invalid_field("name", e))?,
            total_coupons: TotalCoupons::parse(request.total_coupons)
                .map_err(|e| invalid_field("total_coupons", e))?,
            starts_at: parse_starts_at(request.starts_at.as_option())?,
            request_id: RequestId::parse(request.request_id)
                .map_err(|e| invalid_field("request_id", e))?,
            alphabet: parse_alphabet(request.code_alphabet).ok_or_else(|| {
                invalid_field(
                    "code_alphabet",
                    format!("unknown alphabet {}", request.code_alphabet.to_i32()),
                )
            })?,
        };
        let output = self.create_campaign.execute(input).await?;
        Ok(Response::new(CreateCampaignResponse {
            campaign: MessageField::some(convert::campaign(&output.campaign, None)),
            ..Default::default()
        }))
    }

    async fn get_campaign(
        &self,
        _ctx: RequestContext,
        request: ServiceRequest<'_, GetCampaignRequest>,
    ) -> ServiceResult<GetCampaignResponse> {
        let input = get_campaign::Input {
            campaign_id: CampaignId::parse(request.campaign_id)
                .map_err(|e| invalid_field("campaign_id", e))?,
            after_ordinal: parse_page_token(request.page_token).ok_or_else(|| {
                invalid_field(
                    "page_token",
                    "not a token from a previous page of this campaign",
                )
            })?,
            page_size: parse_page_size(request.page_size)?,
        };
        let started = Instant::now();
        let output = self.get_campaign.execute(input).await?;
        let read = started.elapsed();
        let coupons = convert::coupons(&output.coupons, &self.seal);
        // Where a slow page's time went (issue 18: the first read after a drop).
        tracing::debug!(
            coupons = coupons.len(),
            read_ms = read.as_secs_f64() * 1e3,
            convert_ms = (started.elapsed() - read).as_secs_f64() * 1e3,
            "GetCampaign page built"
        );
        Ok(Response::new(GetCampaignResponse {
            campaign: MessageField::some(convert::campaign(&output.campaign, output.sold_out_at)),
            coupons,
            next_page_token: output
                .next_after_ordinal
                .map(page_token)
                .unwrap_or_default(),
            ..Default::default()
        }))
    }

    async fn list_campaigns(
        &self,
        _ctx: RequestContext,
        request: ServiceRequest<'_, ListCampaignsRequest>,
    ) -> ServiceResult<ListCampaignsResponse> {
        let input = list_campaigns::Input {
            after: parse_list_token(request.page_token).ok_or_else(|| {
                invalid_field(
                    "page_token",
                    "not a token from a previous page of this list",
                )
            })?,
            page_size: parse_page_size(request.page_size)?,
        };
        let output = self.list_campaigns.execute(input).await?;
        Ok(Response::new(ListCampaignsResponse {
            campaigns: output
                .campaigns
                .iter()
                .map(|c| convert::campaign(&c.campaign, c.sold_out_at))
                .collect(),
            next_page_token: output.next_after.map(list_token).unwrap_or_default(),
            ..Default::default()
        }))
    }
}

/// Both admin lists: 0 is the default, above the cap is capped, below 0 is refused.
fn parse_page_size(raw: i32) -> Result<u32, ConnectError> {
    u32::try_from(raw).map_err(|_| invalid_field("page_size", "must not be negative"))
}

fn parse_starts_at(
    starts_at: Option<&buffa_types::google::protobuf::TimestampView<'_>>,
) -> Result<DateTime<Utc>, ConnectError> {
    let view = starts_at.ok_or_else(|| invalid_field("starts_at", "is required"))?;
    let nanos = u32::try_from(view.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000);
    nanos
        .and_then(|n| DateTime::from_timestamp(view.seconds, n))
        .filter(|t| (1970..=9999).contains(&chrono::Datelike::year(t)))
        .ok_or_else(|| invalid_field("starts_at", "is not a valid time between 1970 and 9999"))
}
