//! The public Connect JSON API as any client sees it: POST JSON, read JSON or a
//! Connect error. Nothing of the server's code is used.

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// What a long-poll's deadline (`connect-timeout-ms`) adds to its wait.
pub const LONG_POLL_GRACE: Duration = Duration::from_secs(5);

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

    /// The server's overload refusal (`unavailable`, reason OVERLOADED): nothing was
    /// done, a client retries after a short pause.
    pub fn is_overload(&self) -> bool {
        self.code == "unavailable" && self.reason.as_deref() == Some("OVERLOADED")
    }

    /// The answer was lost on the way: the server may or may not have acted.
    pub fn is_transport(&self) -> bool {
        self.code == "transport"
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
#[serde(rename_all = "camelCase", default)]
pub struct IssueResult {
    /// Absent (UNSPECIFIED) never happens for a known ticket.
    pub status: Option<String>,
    pub coupon: Option<IssuedCoupon>,
    /// PENDING only: undecided records ahead in the partition. int64, so proto3 JSON
    /// writes it as a string; a number is accepted too.
    #[serde(deserialize_with = "int_or_string")]
    pub position: Option<i64>,
    /// PENDING only: suggested pause before a poll without a wait (absent when 0).
    #[serde(deserialize_with = "int_or_string")]
    pub retry_after_ms: Option<i64>,
}

/// Proto3 JSON integers: a number, or a string holding one (how int64 is written).
fn int_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Number(i64),
        Text(String),
    }
    match Option::<Wire>::deserialize(d)? {
        None => Ok(None),
        Some(Wire::Number(n)) => Ok(Some(n)),
        Some(Wire::Text(text)) => text.parse().map(Some).map_err(serde::de::Error::custom),
    }
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
        Self::exchange(self.request(method, body)).await
    }

    fn request(&self, method: &str, body: &Value) -> reqwest::RequestBuilder {
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
        request
    }

    async fn exchange(request: reqwest::RequestBuilder) -> Result<bytes::Bytes, Refusal> {
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

    /// GetIssueResult as a long-poll: the server may hold the answer up to `wait` while
    /// the ticket is PENDING. `connect-timeout-ms` tells it the client's deadline (the
    /// wait plus [`LONG_POLL_GRACE`]); the client gives up a second after that. A zero
    /// wait is a plain poll, [`Api::result`].
    pub async fn result_wait(
        &self,
        ticket_id: &str,
        wait: Duration,
    ) -> Result<IssueResult, Refusal> {
        if wait.is_zero() {
            return self.result(ticket_id).await;
        }
        let wait_ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        let deadline = wait + LONG_POLL_GRACE;
        let body = json!({"ticketId": ticket_id, "waitMs": wait_ms});
        let request = self
            .request("coupon.v1.CouponService/GetIssueResult", &body)
            .header("connect-timeout-ms", deadline.as_millis().to_string())
            .timeout(deadline + Duration::from_secs(1));
        decode(&Self::exchange(request).await?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_answer_decodes_position_from_a_string() {
        let body = br#"{"ticketId":"t1","status":"ISSUE_STATUS_PENDING","position":"123","retryAfterMs":40}"#;
        let answer: IssueResult = decode(body).expect("decodes");
        assert_eq!(answer.status.as_deref(), Some("ISSUE_STATUS_PENDING"));
        assert_eq!(answer.position, Some(123));
        assert_eq!(answer.retry_after_ms, Some(40));
        assert!(answer.coupon.is_none());
    }

    #[test]
    fn position_as_a_number_and_absent_fields_decode() {
        let answer: IssueResult =
            decode(br#"{"status":"ISSUE_STATUS_PENDING","position":7}"#).expect("decodes");
        assert_eq!((answer.position, answer.retry_after_ms), (Some(7), None));
        let answer: IssueResult = decode(br#"{"ticketId":"t"}"#).expect("decodes");
        assert_eq!((answer.status, answer.position), (None, None));
    }

    #[test]
    fn a_final_answer_decodes_its_coupon() {
        let body = r#"{"ticketId":"t","status":"ISSUE_STATUS_ISSUED","coupon":{"code":"가나다라마바사아자0","campaignId":"c"}}"#;
        let answer: IssueResult = decode(body.as_bytes()).expect("decodes");
        assert_eq!(answer.status.as_deref(), Some("ISSUE_STATUS_ISSUED"));
        assert_eq!(
            answer.coupon.map(|c| c.code).as_deref(),
            Some("가나다라마바사아자0")
        );
        assert_eq!(answer.position, None);
    }

    /// Answers one HTTP/1.1 request with `answer` (JSON) and returns the request's text.
    async fn answer_once(answer: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&seen).contains("}") {
                let n = socket.read(&mut buf).await.expect("read");
                assert!(n > 0, "the client closed before its body");
                seen.extend_from_slice(&buf[..n]);
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                answer.len()
            );
            socket.write_all(reply.as_bytes()).await.expect("write");
            String::from_utf8_lossy(&seen).into_owned()
        });
        (base, server)
    }

    #[tokio::test]
    async fn a_long_poll_sends_its_wait_and_its_deadline() {
        let (base, server) =
            answer_once(r#"{"status":"ISSUE_STATUS_PENDING","position":"9","retryAfterMs":40}"#)
                .await;
        let api = Api::new(&base, false, None).expect("client");
        let answer = api
            .result_wait("t-1", Duration::from_millis(20_000))
            .await
            .expect("answer");
        assert_eq!(
            (answer.position, answer.retry_after_ms),
            (Some(9), Some(40))
        );
        let request = server.await.expect("join").to_ascii_lowercase();
        assert!(request.contains("connect-timeout-ms: 25000"), "{request}");
        assert!(request.contains(r#""waitms":20000"#), "{request}");
        assert!(
            request.contains("/coupon.v1.couponservice/getissueresult"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn a_poll_without_a_wait_sends_no_deadline() {
        let (base, server) = answer_once(r#"{"status":"ISSUE_STATUS_SOLD_OUT"}"#).await;
        let api = Api::new(&base, false, None).expect("client");
        let answer = api
            .result_wait("t-1", Duration::ZERO)
            .await
            .expect("answer");
        assert_eq!(answer.status.as_deref(), Some("ISSUE_STATUS_SOLD_OUT"));
        let request = server.await.expect("join").to_ascii_lowercase();
        assert!(!request.contains("connect-timeout-ms"), "{request}");
        assert!(!request.contains("waitms"), "{request}");
    }

    #[test]
    fn a_position_that_is_not_a_number_is_unparsable() {
        let refusal = decode::<IssueResult>(br#"{"position":"many"}"#).expect_err("refused");
        assert_eq!(refusal.code, "unparsable");
    }
}
