//! Per-request bounds, applied before a request's body is read: a cap on requests in
//! flight (beyond it a request is refused at once, cheaply, instead of queueing without
//! bound) and a deadline covering the body read and the handler (a slow client cannot
//! hold a slot forever).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::header::CONTENT_TYPE;
use tokio::sync::Semaphore;

use super::errors;

/// Paths an operator must reach even while the node sheds load.
const EXEMPT_PATHS: [&str; 1] = ["/metrics"];

#[derive(Clone)]
pub struct RequestLimits {
    in_flight: Arc<Semaphore>,
    timeout: Duration,
}

impl RequestLimits {
    pub fn new(max_in_flight: usize, timeout: Duration) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            timeout,
        }
    }
}

pub async fn enforce(
    State(limits): State<RequestLimits>,
    request: Request,
    next: Next,
) -> Response {
    if EXEMPT_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let Ok(_permit) = limits.in_flight.try_acquire() else {
        metrics::counter!("coupon_rpc_shed_total", "reason" => "in_flight_cap").increment(1);
        return errors::response(request.headers().get(CONTENT_TYPE), &errors::overloaded());
    };
    // A cheap (reference-counted) copy, for the timeout's answer.
    let content_type = request.headers().get(CONTENT_TYPE).cloned();
    match tokio::time::timeout(limits.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("coupon_rpc_shed_total", "reason" => "request_timeout").increment(1);
            errors::response(content_type.as_ref(), &errors::request_timed_out())
        }
    }
}
