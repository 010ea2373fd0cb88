//! Requirement: an admin creates a campaign that starts by itself at its start instant.
//!
//! The campaign exists once its creation is in the log: the log is the source of truth
//! and gives the campaign its origin. The row readers use follows (written here, or by
//! the issuing worker when it decides the record). With a request id the creation is
//! idempotent: the id names the campaign, so a retry, on any node, returns the same one.

use chrono::{DateTime, Utc};

use crate::domain::ports::{CampaignRepository, IssueLog, LogError, StoreError};
use crate::domain::{
    Campaign, CampaignId, CampaignName, CodeAlphabet, LogEvent, LogPosition, NewCampaign,
    Placement, RequestId, TotalCoupons,
};

pub struct Input {
    pub name: CampaignName,
    pub total_coupons: TotalCoupons,
    pub starts_at: DateTime<Utc>,
    /// A client-chosen key: creations with the same key make one campaign.
    pub request_id: Option<RequestId>,
    /// The symbols of its codes.
    pub alphabet: CodeAlphabet,
}

pub struct Output {
    pub campaign: Campaign,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key already made a campaign with other terms.
    #[error("request_id already created campaign {0} with other terms")]
    RequestIdReused(CampaignId),
    /// The store refused the campaign's row: another campaign holds its log position, so
    /// the store belongs to another log (the start-time check of the topic missed it).
    /// Never answered as created: nothing could serve the campaign.
    #[error(
        "campaign {campaign} was appended at {position:?} but the store refused it ({constraint}): the store holds another log's campaigns"
    )]
    NotStored {
        campaign: CampaignId,
        position: LogPosition,
        constraint: String,
    },
}

pub struct CreateCampaign<R, L> {
    campaigns: R,
    log: L,
}

impl<R: CampaignRepository, L: IssueLog> CreateCampaign<R, L> {
    pub fn new(campaigns: R, log: L) -> Self {
        Self { campaigns, log }
    }

    pub async fn execute(&self, input: Input) -> Result<Output, Error> {
        let mut new = NewCampaign::new(input.name, input.total_coupons, input.starts_at)
            .with_alphabet(input.alphabet);
        if let Some(key) = &input.request_id {
            new = new.with_id(CampaignId::for_request(key));
            // A store that cannot answer fails the call before anything is appended:
            // "nothing created" is then true.
            if let Some(existing) = self.campaigns.find_campaign(new.id).await? {
                return Self::repeated(new, existing);
            }
        }
        let appended = self
            .log
            .append(LogEvent::CampaignCreated(new.clone()), Placement::Spread)
            .await?;
        let campaign = new.placed_at(appended.position);
        // Appended: the campaign exists whatever happens to this insert.
        match self.campaigns.insert_campaign(&campaign).await {
            Ok(()) => {}
            Err(StoreError::Conflict(constraint)) => {
                return Err(Error::NotStored {
                    campaign: campaign.id,
                    position: campaign.origin,
                    constraint,
                });
            }
            Err(error) => {
                tracing::warn!(%error, campaign_id = %campaign.id,
                    "campaign appended but not stored yet; the issuing worker will store it");
                return Ok(Output { campaign });
            }
        }
        tracing::info!(campaign_id = %campaign.id, total = campaign.total_coupons.get(),
            starts_at = %campaign.starts_at, "campaign created");
        if input.request_id.is_some() {
            // Two concurrent creations with one key: answer the one that was stored.
            if let Some(stored) = self.campaigns.find_campaign(campaign.id).await? {
                return Ok(Output { campaign: stored });
            }
        }
        Ok(Output { campaign })
    }

    fn repeated(new: NewCampaign, existing: Campaign) -> Result<Output, Error> {
        if !new.same_terms(&existing) {
            return Err(Error::RequestIdReused(existing.id));
        }
        Ok(Output { campaign: existing })
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::ports::CampaignRepository;
    use crate::infra::embedded_log::EmbeddedLog;
    use crate::infra::sqlite::SqliteStore;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn input(name: &str) -> Result<Input, Box<dyn std::error::Error>> {
        Ok(Input {
            name: CampaignName::parse(name)?,
            total_coupons: TotalCoupons::parse(10)?,
            starts_at: Utc::now(),
            request_id: None,
            alphabet: CodeAlphabet::Readable,
        })
    }

    /// A store that holds another log's campaigns: the new campaign's log position is
    /// taken, its row cannot be written, and it must not be answered as created.
    #[tokio::test]
    async fn a_campaign_the_store_refuses_is_not_answered_as_created() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("coupon.sqlite")).await?;
        let log = EmbeddedLog::open(&dir.path().join("log.sqlite")).await?;
        let other_logs = NewCampaign::new(
            CampaignName::parse("of another log")?,
            TotalCoupons::parse(5)?,
            Utc::now(),
        )
        .placed_at(LogPosition {
            partition: 0,
            offset: 0,
        });
        store.insert_campaign(&other_logs).await?;

        let create = CreateCampaign::new(store.clone(), log);
        match create.execute(input("new")?).await {
            Err(Error::NotStored { position, .. }) => assert_eq!(position, other_logs.origin),
            other => panic!("expected NotStored, got {:?}", other.map(|o| o.campaign.id)),
        }
        // The next one, at a free position, is created.
        let created = create.execute(input("next")?).await?;
        assert!(store.find_campaign(created.campaign.id).await?.is_some());
        Ok(())
    }
}
