//! Every error the API returns is decided here: use-case errors and invalid fields
//! become Connect codes with a `google.rpc.ErrorInfo` whose `reason` machines can
//! match on. Internal details are logged, never sent.

use axum::response::{IntoResponse, Response};
use connectrpc::{ConnectError, ErrorCode, ErrorDetail};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::proto::google::rpc::ErrorInfo;
use crate::application::{
    accept_issue_request, create_campaign, get_campaign, get_issue_result, list_campaigns,
};
use crate::domain::ports::{LogError, StoreError};

const DOMAIN: &str = "coupon.v1";

/// Machine-readable reasons, stable API.
pub mod reason {
    pub const INVALID_FIELD: &str = "INVALID_FIELD";
    pub const CAMPAIGN_NOT_FOUND: &str = "CAMPAIGN_NOT_FOUND";
    pub const TICKET_NOT_FOUND: &str = "TICKET_NOT_FOUND";
    pub const CAMPAIGN_NOT_STARTED: &str = "CAMPAIGN_NOT_STARTED";
    pub const CAMPAIGN_SOLD_OUT: &str = "CAMPAIGN_SOLD_OUT";
    pub const LOG_UNAVAILABLE: &str = "LOG_UNAVAILABLE";
    pub const OVERLOADED: &str = "OVERLOADED";
    pub const STORE_UNAVAILABLE: &str = "STORE_UNAVAILABLE";
    pub const REQUEST_ID_REUSED: &str = "REQUEST_ID_REUSED";
    pub const CAMPAIGN_NOT_STORED: &str = "CAMPAIGN_NOT_STORED";
    pub const USER_TOKEN_INVALID: &str = "USER_TOKEN_INVALID";
    pub const USER_ID_MISMATCH: &str = "USER_ID_MISMATCH";
    pub const OUTCOME_UNKNOWN: &str = "OUTCOME_UNKNOWN";
    pub const BODY_TIMEOUT: &str = "BODY_TIMEOUT";
    pub const BODY_TOO_LARGE: &str = "BODY_TOO_LARGE";
    pub const MALFORMED_BODY: &str = "MALFORMED_BODY";
}

fn error(
    code: ErrorCode,
    reason: &str,
    message: String,
    metadata: &[(&str, String)],
) -> ConnectError {
    let info = ErrorInfo {
        reason: reason.to_owned(),
        domain: DOMAIN.to_owned(),
        metadata: metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        ..Default::default()
    };
    let mut detail = ErrorDetail::from_message("google.rpc.ErrorInfo", &info);
    let mut debug = serde_json::Map::new();
    debug.insert("reason".into(), reason.into());
    for (k, v) in metadata {
        debug.insert((*k).to_owned(), v.clone().into());
    }
    detail.debug = Some(serde_json::Value::Object(debug));
    ConnectError::new(code, message).with_detail(detail)
}

/// `field` is the proto field name, so clients can point at the input.
pub fn invalid_field(field: &str, why: impl std::fmt::Display) -> ConnectError {
    error(
        ErrorCode::InvalidArgument,
        reason::INVALID_FIELD,
        format!("{field}: {why}"),
        &[("field", field.to_owned())],
    )
}

/// Refused before any work: the node has as many requests in flight as it may take.
pub fn overloaded() -> ConnectError {
    error(
        ErrorCode::Unavailable,
        reason::OVERLOADED,
        "too many requests waiting; nothing was accepted, retry later".into(),
        &[],
    )
}

/// The request's body did not arrive in time; the request never ran.
pub fn body_timed_out(limit: std::time::Duration) -> ConnectError {
    error(
        ErrorCode::DeadlineExceeded,
        reason::BODY_TIMEOUT,
        format!(
            "the request body did not arrive within {} ms; nothing was accepted, retry",
            limit.as_millis()
        ),
        &[],
    )
}

/// The request's body is (or was announced) larger than the server reads.
pub fn body_too_large(limit: usize) -> ConnectError {
    error(
        ErrorCode::ResourceExhausted,
        reason::BODY_TOO_LARGE,
        format!("the request body is larger than the size limit of {limit} bytes"),
        &[("limit_bytes", limit.to_string())],
    )
}

/// The client broke the body's framing (e.g. malformed chunked encoding).
pub fn malformed_body(detail: &str) -> ConnectError {
    error(
        ErrorCode::InvalidArgument,
        reason::MALFORMED_BODY,
        format!("the request body could not be read: {detail}"),
        &[],
    )
}

/// The request (reading its body included) outlived the server's request timeout.
pub fn request_timed_out() -> ConnectError {
    ConnectError::new(
        ErrorCode::DeadlineExceeded,
        "the request took longer than the server allows; if it was IssueCoupon it may have been accepted: retry, a retry is answered with your ticket or your coupon",
    )
}

/// An admin call without a token configured, naming a host that is not loopback (a
/// browser page whose DNS name was rebound to this address).
pub fn not_a_loopback_host() -> ConnectError {
    ConnectError::new(
        ErrorCode::PermissionDenied,
        "without an admin token, admin calls are served only to requests for a loopback host \
         (localhost, 127.0.0.1, [::1])",
    )
}

/// IssueCoupon in token mode without a valid user token.
pub fn user_token_invalid(why: &str) -> ConnectError {
    error(
        ErrorCode::Unauthenticated,
        reason::USER_TOKEN_INVALID,
        format!("IssueCoupon needs a valid user token: {why}"),
        &[],
    )
}

/// A body `user_id` naming someone other than the token's subject.
pub fn user_id_mismatch() -> ConnectError {
    error(
        ErrorCode::PermissionDenied,
        reason::USER_ID_MISMATCH,
        "user_id: differs from the user token's subject (leave it empty)".into(),
        &[("field", "user_id".to_owned())],
    )
}

pub fn unauthenticated() -> ConnectError {
    ConnectError::new(
        ErrorCode::Unauthenticated,
        "admin calls need a valid bearer token",
    )
}

/// Renders an error raised outside the RPC handlers (HTTP middleware) in the caller's
/// protocol: a trailers-only response for gRPC and gRPC-Web, a JSON body for Connect.
/// `content_type` is the request's.
pub fn response(content_type: Option<&HeaderValue>, error: &ConnectError) -> Response {
    let content_type = content_type
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("application/grpc") {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(content_type) {
            headers.insert(header::CONTENT_TYPE, value);
        }
        headers.insert("grpc-status", HeaderValue::from(error.code.grpc_code()));
        let message = grpc_percent_encode(error.message.as_deref().unwrap_or_default());
        if let Ok(message) = HeaderValue::from_str(&message) {
            headers.insert("grpc-message", message);
        }
        return (StatusCode::OK, headers).into_response();
    }
    (
        error.http_status(),
        [(header::CONTENT_TYPE, "application/json")],
        error.to_json(),
    )
        .into_response()
}

/// `grpc-message` is percent-encoded: everything outside printable ASCII, and `%`.
fn grpc_percent_encode(message: &str) -> String {
    let mut encoded = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn log_error(e: LogError) -> ConnectError {
    match e {
        LogError::Overloaded => overloaded(),
        LogError::Unavailable(detail) => {
            tracing::warn!(%detail, "log unavailable");
            error(
                ErrorCode::Unavailable,
                reason::LOG_UNAVAILABLE,
                "the issue log cannot accept requests now; nothing was accepted, retry".into(),
                &[],
            )
        }
        LogError::OutcomeUnknown(detail) => {
            tracing::warn!(%detail, "log did not confirm an append");
            error(
                ErrorCode::Unavailable,
                reason::OUTCOME_UNKNOWN,
                "the issue log did not confirm the request in time; it may have been accepted: \
                 retry, a retry is answered with your ticket or your coupon"
                    .into(),
                &[],
            )
        }
    }
}

fn store_error(e: StoreError) -> ConnectError {
    match e {
        StoreError::Unavailable(detail) => {
            tracing::warn!(%detail, "database unavailable");
            error(
                ErrorCode::Unavailable,
                reason::STORE_UNAVAILABLE,
                "the database is unavailable; retry".into(),
                &[],
            )
        }
        other => {
            tracing::error!(error = %other, "storage error");
            ConnectError::new(ErrorCode::Internal, "internal error")
        }
    }
}

fn campaign_not_found(id: impl std::fmt::Display) -> ConnectError {
    error(
        ErrorCode::NotFound,
        reason::CAMPAIGN_NOT_FOUND,
        format!("campaign {id} not found"),
        &[("campaign_id", id.to_string())],
    )
}

impl From<create_campaign::Error> for ConnectError {
    fn from(e: create_campaign::Error) -> Self {
        match e {
            create_campaign::Error::Log(e) => log_error(e),
            create_campaign::Error::Store(e) => store_error(e),
            create_campaign::Error::RequestIdReused(id) => error(
                ErrorCode::AlreadyExists,
                reason::REQUEST_ID_REUSED,
                format!(
                    "request_id already created campaign {id} with another name, total or start"
                ),
                &[("campaign_id", id.to_string())],
            ),
            e @ create_campaign::Error::NotStored { .. } => {
                tracing::error!(error = %e, "a created campaign could not be stored");
                error(
                    ErrorCode::Internal,
                    reason::CAMPAIGN_NOT_STORED,
                    "the campaign could not be stored; it was not created".into(),
                    &[],
                )
            }
        }
    }
}

impl From<get_campaign::Error> for ConnectError {
    fn from(e: get_campaign::Error) -> Self {
        match e {
            get_campaign::Error::NotFound(id) => campaign_not_found(id),
            get_campaign::Error::Store(e) => store_error(e),
        }
    }
}

impl From<list_campaigns::Error> for ConnectError {
    fn from(e: list_campaigns::Error) -> Self {
        match e {
            list_campaigns::Error::Store(e) => store_error(e),
        }
    }
}

impl From<accept_issue_request::Error> for ConnectError {
    fn from(e: accept_issue_request::Error) -> Self {
        match e {
            accept_issue_request::Error::NotFound(id) => campaign_not_found(id),
            accept_issue_request::Error::NotStarted { starts_at } => {
                let starts_at = starts_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                error(
                    ErrorCode::FailedPrecondition,
                    reason::CAMPAIGN_NOT_STARTED,
                    format!("campaign has not started; it starts at {starts_at}"),
                    &[("starts_at", starts_at.clone())],
                )
            }
            accept_issue_request::Error::SoldOut => error(
                ErrorCode::ResourceExhausted,
                reason::CAMPAIGN_SOLD_OUT,
                "campaign is sold out".into(),
                &[],
            ),
            accept_issue_request::Error::Log(e) => log_error(e),
            accept_issue_request::Error::Store(e) => store_error(e),
        }
    }
}

impl From<get_issue_result::Error> for ConnectError {
    fn from(e: get_issue_result::Error) -> Self {
        match e {
            get_issue_result::Error::NotFound => error(
                ErrorCode::NotFound,
                reason::TICKET_NOT_FOUND,
                "ticket not found".into(),
                &[],
            ),
            get_issue_result::Error::TooManyWaiting => {
                metrics::counter!("coupon_rpc_shed_total", "reason" => "long_polls").increment(1);
                overloaded()
            }
            get_issue_result::Error::Store(e) => store_error(e),
        }
    }
}
