//! Per-request admission, decided before a request's body is read, so a refusal costs
//! almost nothing:
//! - at most `max_in_flight` requests run at once (the rest would only lengthen the
//!   log's queue, and with it every accepted request's latency);
//! - a request beyond that waits, first come first served, at most `queue_timeout`,
//!   and only while fewer than `max_queued` wait; otherwise it is refused at once with
//!   `unavailable`/OVERLOADED and nothing is accepted for it;
//! - a running request (reading its body included) ends after `timeout` with
//!   `deadline_exceeded`, so a slow client cannot hold a slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::header::CONTENT_TYPE;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::errors;

/// Paths an operator must reach even while the node sheds load.
const EXEMPT_PATHS: [&str; 1] = ["/metrics"];

#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    pub max_in_flight: usize,
    pub max_queued: usize,
    pub queue_timeout: Duration,
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct RequestLimits {
    in_flight: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
    limits: AdmissionLimits,
}

impl RequestLimits {
    pub fn new(limits: AdmissionLimits) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            queued: Arc::new(AtomicUsize::new(0)),
            limits,
        }
    }

    /// A slot to run in, or `None` when the request must be shed.
    async fn admit(&self) -> Option<SemaphorePermit<'_>> {
        if let Ok(permit) = self.in_flight.try_acquire() {
            return Some(permit);
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.limits.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let waited =
            tokio::time::timeout(self.limits.queue_timeout, self.in_flight.acquire()).await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        waited.ok()?.ok()
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
    let arrived = std::time::Instant::now();
    let admitted = limits.admit().await;
    metrics::histogram!("coupon_admission_wait_seconds").record(arrived.elapsed().as_secs_f64());
    let Some(_permit) = admitted else {
        metrics::counter!("coupon_rpc_shed_total", "reason" => "overloaded").increment(1);
        return errors::response(request.headers().get(CONTENT_TYPE), &errors::overloaded());
    };
    // A cheap (reference-counted) copy, for the timeout's answer.
    let content_type = request.headers().get(CONTENT_TYPE).cloned();
    match tokio::time::timeout(limits.limits.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("coupon_rpc_shed_total", "reason" => "request_timeout").increment(1);
            errors::response(content_type.as_ref(), &errors::request_timed_out())
        }
    }
}
