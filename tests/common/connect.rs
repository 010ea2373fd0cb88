//! A plain Connect JSON client, as any user would write with an HTTP library: POST the
//! request as JSON to `/<service>/<method>`, read JSON back. No project code involved.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// Sent as `Authorization: Bearer …` with every call, when set.
    bearer: Option<String>,
}

/// A Connect error as it arrives on the wire.
#[derive(Debug, Clone)]
pub struct RpcError {
    pub http_status: u16,
    pub code: String,
    pub message: String,
    pub reason: Option<String>,
    pub metadata: Value,
}

impl Client {
    pub fn new(base: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        Self {
            http,
            base: base.into(),
            bearer: None,
        }
    }

    /// The same client, sending `token` as the bearer of every call (an admin token).
    pub fn with_bearer(self, token: &str) -> Self {
        Self {
            bearer: Some(token.to_owned()),
            ..self
        }
    }

    pub async fn call(&self, method: &str, body: Value) -> Result<Value, RpcError> {
        self.call_with(method, body, &[]).await
    }

    /// A call with extra request headers (e.g. `connect-timeout-ms`).
    pub async fn call_with(
        &self,
        method: &str,
        body: Value,
        headers: &[(&str, String)],
    ) -> Result<Value, RpcError> {
        let url = format!("{}/{method}", self.base);
        let mut request = self.http.post(url).json(&body);
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| RpcError::transport(e.to_string()))?;
        let status = response.status().as_u16();
        let body: Value = response
            .json()
            .await
            .map_err(|e| RpcError::transport(e.to_string()))?;
        if status == 200 {
            return Ok(body);
        }
        let detail = body["details"]
            .get(0)
            .map(|d| d["debug"].clone())
            .unwrap_or(Value::Null);
        Err(RpcError {
            http_status: status,
            code: body["code"].as_str().unwrap_or_default().to_owned(),
            message: body["message"].as_str().unwrap_or_default().to_owned(),
            reason: detail["reason"].as_str().map(str::to_owned),
            metadata: detail,
        })
    }

    pub async fn health(&self) -> Result<Value, RpcError> {
        self.call("grpc.health.v1.Health/Check", json!({})).await
    }

    /// Waits until the node reports `status` for `service` (`""`: the node as a whole),
    /// at most until `deadline`.
    pub async fn await_health(&self, service: &str, status: &str, deadline: Instant) {
        loop {
            let answer = self
                .call("grpc.health.v1.Health/Check", json!({"service": service}))
                .await
                .map(|h| h["status"].clone())
                .unwrap_or_default();
            if answer == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{service} never became {status} (last {answer})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn create_campaign(
        &self,
        name: &str,
        total: i64,
        starts_at: &str,
    ) -> Result<Value, RpcError> {
        self.call(
            "coupon.v1.CampaignService/CreateCampaign",
            json!({"name": name, "totalCoupons": total, "startsAt": starts_at}),
        )
        .await
        .map(|r| r["campaign"].clone())
    }

    pub async fn get_campaign(
        &self,
        id: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<Value, RpcError> {
        self.call(
            "coupon.v1.CampaignService/GetCampaign",
            json!({"campaignId": id, "pageSize": page_size, "pageToken": page_token}),
        )
        .await
    }

    /// Every issued coupon of a campaign, following page tokens.
    pub async fn all_coupons(&self, id: &str) -> Vec<Value> {
        let mut coupons = Vec::new();
        let mut token = String::new();
        loop {
            let page = self.get_campaign(id, 0, &token).await.expect("GetCampaign");
            coupons.extend(page["coupons"].as_array().cloned().unwrap_or_default());
            token = page["nextPageToken"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if token.is_empty() {
                return coupons;
            }
        }
    }

    pub async fn issue(&self, campaign_id: &str, user_id: &str) -> Result<Value, RpcError> {
        self.call(
            "coupon.v1.CouponService/IssueCoupon",
            json!({"campaignId": campaign_id, "userId": user_id}),
        )
        .await
    }

    pub async fn result(&self, ticket_id: &str) -> Result<Value, RpcError> {
        self.call(
            "coupon.v1.CouponService/GetIssueResult",
            json!({"ticketId": ticket_id}),
        )
        .await
    }

    /// GetIssueResult with a wait; `deadline_ms` is the client's own deadline, sent as
    /// `connect-timeout-ms`.
    pub async fn long_poll(
        &self,
        ticket_id: &str,
        wait_ms: u64,
        deadline_ms: Option<u64>,
    ) -> Result<Value, RpcError> {
        let headers: Vec<(&str, String)> = deadline_ms
            .map(|ms| ("connect-timeout-ms", ms.to_string()))
            .into_iter()
            .collect();
        self.call_with(
            "coupon.v1.CouponService/GetIssueResult",
            json!({"ticketId": ticket_id, "waitMs": wait_ms}),
            &headers,
        )
        .await
    }

    /// The value of one Prometheus series on the node's `/metrics` (0 when absent),
    /// e.g. `coupon_result_reads_total{source="store"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until `count` long-polls wait on the node (its `coupon_long_polls_waiting`);
    /// panics after 30 s.
    pub async fn await_waiting(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.metric("coupon_long_polls_waiting").await < count as f64 {
            assert!(
                Instant::now() < deadline,
                "{count} long-polls never all waited"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls one ticket until it is final.
    pub async fn await_one(&self, ticket: &str, limit: Duration) -> Value {
        let tickets = [ticket.to_owned()];
        self.await_final(&tickets, limit)
            .await
            .remove(ticket)
            .expect("polled ticket")
    }

    /// Creates a campaign that has started, issues `user` a coupon of it and waits for
    /// the decision, which must be ISSUED: (campaign id, ticket id, final result).
    pub async fn issued_in_new_campaign(&self, name: &str, user: &str) -> (String, String, Value) {
        let campaign = self
            .create_campaign(name, 5, &rfc3339_in(chrono::TimeDelta::zero()))
            .await
            .expect("create");
        let id = campaign["id"].as_str().expect("id").to_owned();
        let ticket = self.issue(&id, user).await.expect("issue")["ticketId"]
            .as_str()
            .expect("ticket")
            .to_owned();
        let decided = self.await_one(&ticket, Duration::from_secs(60)).await;
        assert_eq!(decided["status"], "ISSUE_STATUS_ISSUED", "{decided}");
        (id, ticket, decided)
    }

    /// Polls every ticket until it is final; panics if one stays PENDING past `limit`.
    pub async fn await_final(&self, tickets: &[String], limit: Duration) -> HashMap<String, Value> {
        let deadline = Instant::now() + limit;
        let mut open: HashSet<String> = tickets.iter().cloned().collect();
        let mut done = HashMap::new();
        while !open.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{} tickets still PENDING after {limit:?}",
                open.len()
            );
            for ticket in open.clone() {
                let result = self.result(&ticket).await.expect("GetIssueResult");
                if result["status"] != "ISSUE_STATUS_PENDING" {
                    open.remove(&ticket);
                    done.insert(ticket, result);
                }
            }
            if !open.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        done
    }
}

impl RpcError {
    fn transport(message: String) -> Self {
        Self {
            http_status: 0,
            code: "transport".into(),
            message,
            reason: None,
            metadata: Value::Null,
        }
    }
}

/// An RFC 3339 instant `offset` from now.
pub fn rfc3339_in(offset: chrono::TimeDelta) -> String {
    (chrono::Utc::now() + offset).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// True for 10 symbols each a Hangul syllable or an ASCII digit (DESIGN §5.2), checked
/// independently of the project's own code.
pub fn is_well_formed_code(code: &str) -> bool {
    code.chars().count() == 10
        && code
            .chars()
            .all(|c| ('\u{AC00}'..='\u{D7A3}').contains(&c) || c.is_ascii_digit())
}
