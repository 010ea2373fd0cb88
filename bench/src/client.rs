//! The public Connect JSON API as any client sees it: POST JSON, read JSON or a
//! Connect error. Nothing of the server's code is used.

use std::time::Duration;

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

    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, Refusal> {
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
        let response = request.send().await.map_err(|e| Refusal {
            code: "transport".into(),
            reason: Some(kind(&e).into()),
        })?;
        let ok = response.status().is_success();
        let bytes = response.bytes().await.map_err(|e| Refusal {
            code: "transport".into(),
            reason: Some(kind(&e).into()),
        })?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if ok {
            return Ok(value);
        }
        Err(Refusal {
            code: value["code"].as_str().unwrap_or("unknown").to_owned(),
            reason: value["details"][0]["debug"]["reason"]
                .as_str()
                .map(str::to_owned),
        })
    }

    pub async fn health(&self) -> Result<Value, Refusal> {
        self.call("grpc.health.v1.Health/Check", &json!({})).await
    }

    pub async fn create_campaign(
        &self,
        name: &str,
        total: u64,
        starts_at: &str,
    ) -> Result<Value, Refusal> {
        let body = json!({"name": name, "totalCoupons": total, "startsAt": starts_at});
        self.call("coupon.v1.CampaignService/CreateCampaign", &body)
            .await
    }

    pub async fn get_campaign(&self, id: &str, page_token: &str) -> Result<Value, Refusal> {
        let body = json!({"campaignId": id, "pageToken": page_token});
        self.call("coupon.v1.CampaignService/GetCampaign", &body)
            .await
    }

    pub async fn issue(&self, campaign_id: &str, user_id: &str) -> Result<Value, Refusal> {
        let body = json!({"campaignId": campaign_id, "userId": user_id});
        self.call("coupon.v1.CouponService/IssueCoupon", &body)
            .await
    }

    pub async fn result(&self, ticket_id: &str) -> Result<Value, Refusal> {
        self.call(
            "coupon.v1.CouponService/GetIssueResult",
            &json!({"ticketId": ticket_id}),
        )
        .await
    }
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
