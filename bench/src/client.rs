//! The public Connect JSON API as any client sees it: POST JSON, read JSON or a
//! Connect error. Nothing of the server's code is used.

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    /// Sent as a bearer token with CampaignService calls.
    admin_token: Option<String>,
}

/// A refusal as the wire shows it: the Connect code and, when present, the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: String,
    pub reason: Option<String>,
}

impl Refusal {
    /// `code` or `code/REASON`, for counting.
    pub fn label(&self) -> String {
        match &self.reason {
            Some(reason) => format!("{}/{reason}", self.code),
            None => self.code.clone(),
        }
    }

    fn transport(e: &reqwest::Error) -> Self {
        Self {
            code: "transport".into(),
            reason: Some(kind(e).into()),
        }
    }

    fn unparsable(what: &str) -> Self {
        Self {
            code: "unparsable".into(),
            reason: Some(what.into()),
        }
    }
}

// The answers, typed with only the fields the bench reads (serde skips the rest, and
// skipping is much cheaper than building a `serde_json::Value` of a 10,000-coupon page).
// Proto3 JSON leaves out fields at their default, hence the `default`s.

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Campaign {
    pub id: String,
    pub starts_at: Option<String>,
    /// uint64: a JSON string.
    pub issued_coupons: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CampaignAnswer {
    pub campaign: Campaign,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Coupon {
    pub code: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CampaignPage {
    pub campaign: Campaign,
    pub coupons: Vec<Coupon>,
    pub next_page_token: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Ticket {
    pub ticket_id: String,
    pub accepted_at: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct IssueResult {
    /// Absent (UNSPECIFIED) never happens for a known ticket.
    pub status: Option<String>,
    pub coupon: Option<IssuedCoupon>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct IssuedCoupon {
    pub code: String,
}

impl Api {
    /// `http2` speaks h2c (prior knowledge): many streams on one connection.
    pub fn new(
        base: &str,
        http2: bool,
        admin_token: Option<String>,
    ) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true);
        if http2 {
            builder = builder.http2_prior_knowledge();
        }
        Ok(Self {
            http: builder.build()?,
            base: base.trim_end_matches('/').to_owned(),
            admin_token,
        })
    }

    /// Sends one call and returns the whole answer's bytes once the last one arrived,
    /// or the refusal. Latencies are taken around this: decoding is the client's work.
    pub async fn fetch(&self, method: &str, body: &Value) -> Result<bytes::Bytes, Refusal> {
        let mut request = self
            .http
            .post(format!("{}/{method}", self.base))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        if let Some(token) = self
            .admin_token
            .as_deref()
            .filter(|_| method.starts_with("coupon.v1.CampaignService/"))
        {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| Refusal::transport(&e))?;
        let ok = response.status().is_success();
        let bytes = response.bytes().await.map_err(|e| Refusal::transport(&e))?;
        if ok {
            return Ok(bytes);
        }
        let error: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Err(Refusal {
            code: error["code"].as_str().unwrap_or("unknown").to_owned(),
            reason: error["details"][0]["debug"]["reason"]
                .as_str()
                .map(str::to_owned),
        })
    }

    /// `fetch`, decoded into the answer's type.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        body: &Value,
    ) -> Result<T, Refusal> {
        let bytes = self.fetch(method, body).await?;
        decode(&bytes)
    }

    pub async fn health(&self) -> Result<(), Refusal> {
        self.fetch("grpc.health.v1.Health/Check", &json!({}))
            .await
            .map(drop)
    }

    pub async fn create_campaign(
        &self,
        name: &str,
        total: u64,
        starts_at: &str,
    ) -> Result<CampaignAnswer, Refusal> {
        let body = json!({"name": name, "totalCoupons": total, "startsAt": starts_at});
        self.call("coupon.v1.CampaignService/CreateCampaign", &body)
            .await
    }

    /// The page's bytes: the caller times the transfer and decodes with [`decode`].
    pub async fn get_campaign(&self, id: &str, page_token: &str) -> Result<bytes::Bytes, Refusal> {
        let body = json!({"campaignId": id, "pageToken": page_token});
        self.fetch("coupon.v1.CampaignService/GetCampaign", &body)
            .await
    }

    pub async fn issue(&self, campaign_id: &str, user_id: &str) -> Result<Ticket, Refusal> {
        let body = json!({"campaignId": campaign_id, "userId": user_id});
        self.call("coupon.v1.CouponService/IssueCoupon", &body)
            .await
    }

    pub async fn result(&self, ticket_id: &str) -> Result<IssueResult, Refusal> {
        self.call(
            "coupon.v1.CouponService/GetIssueResult",
            &json!({"ticketId": ticket_id}),
        )
        .await
    }
}

/// Decodes a successful answer; a body that is not the expected JSON is a refusal of
/// its own kind, counted like any other.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(bytes).map_err(|e| Refusal::unparsable(&e.to_string()))
}

fn kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "TIMEOUT"
    } else if e.is_connect() {
        "CONNECT"
    } else {
        "IO"
    }
}
