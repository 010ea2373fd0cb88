//! Per-request admission:
//! - a request's body is read first, capped at [`MAX_BODY_BYTES`] and under its own
//!   short deadline, *before* the request takes a slot: a client that sends headers and
//!   no body (or a body that trickles) holds a connection or a stream, never one of the
//!   slots every other client needs;
//! - at most `max_in_flight` requests run at once (the rest would only lengthen the
//!   log's queue, and with it every accepted request's latency);
//! - a request beyond that waits, first come first served, at most `queue_timeout`,
//!   and only while fewer than `max_queued` wait; otherwise it is refused at once with
//!   `unavailable`/OVERLOADED and nothing is accepted for it;
//! - a request (reading its body included) ends after `timeout` with
//!   `deadline_exceeded`; a long-poll's wait (`Admission::wait_without_slot`) is not
//!   work and does not count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use connectrpc::ConnectError;
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Version};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::errors;

/// Paths an operator must reach even while the node sheds load.
const EXEMPT_PATHS: [&str; 1] = ["/metrics"];

/// gRPC server reflection: one bidirectional stream per tool session, whose body ends
/// only when the tool hangs up, so it cannot be read whole first. Its messages are small
/// and capped by the reflection service itself (16 KiB each).
const STREAMING_PREFIX: &str = "/grpc.reflection.";

/// The largest request body read, the same as connectrpc's default message limit.
pub const MAX_BODY_BYTES: usize = connectrpc::service::DEFAULT_MAX_REQUEST_BODY_SIZE;

#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    pub max_in_flight: usize,
    pub max_queued: usize,
    pub queue_timeout: Duration,
    pub timeout: Duration,
    /// How long a client has to send a request's whole body once its headers came.
    pub body_timeout: Duration,
}

#[derive(Clone)]
pub struct RequestLimits {
    in_flight: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
    limits: AdmissionLimits,
}

/// Why a body was not read; the request is refused without running.
#[derive(Debug)]
enum BodyRefusal {
    TooLarge,
    TimedOut(Duration),
    /// The client broke the framing (e.g. malformed chunked encoding) or went away.
    Malformed(String),
}

impl BodyRefusal {
    fn error(&self) -> ConnectError {
        match self {
            BodyRefusal::TooLarge => errors::body_too_large(MAX_BODY_BYTES),
            BodyRefusal::TimedOut(limit) => errors::body_timed_out(*limit),
            BodyRefusal::Malformed(detail) => errors::malformed_body(detail),
        }
    }
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
    async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.in_flight.clone().try_acquire_owned() {
            return Some(permit);
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.limits.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let waited = tokio::time::timeout(
            self.limits.queue_timeout,
            self.in_flight.clone().acquire_owned(),
        )
        .await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        waited.ok()?.ok()
    }

    /// The request with its whole body in memory, read within the body deadline (and
    /// the request's own); an announced body over the cap is refused before reading.
    async fn read_body(&self, request: Request) -> Result<Request, BodyRefusal> {
        let announced = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
            return Err(BodyRefusal::TooLarge);
        }
        let limit = self.limits.body_timeout.min(self.limits.timeout);
        let (parts, body) = request.into_parts();
        let read = Limited::new(body, MAX_BODY_BYTES).collect();
        let collected = tokio::time::timeout(limit, read)
            .await
            .map_err(|_| BodyRefusal::TimedOut(limit))?
            .map_err(|error| match error.downcast::<LengthLimitError>() {
                Ok(_) => BodyRefusal::TooLarge,
                Err(other) => BodyRefusal::Malformed(other.to_string()),
            })?;
        Ok(Request::from_parts(parts, Body::from(collected.to_bytes())))
    }
}

pub async fn enforce(
    State(limits): State<RequestLimits>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if EXEMPT_PATHS.contains(&path) || path.starts_with(STREAMING_PREFIX) {
        return next.run(request).await;
    }
    let arrived = Instant::now();
    // Cheap (reference-counted) copies, for answers given without the handler.
    let content_type = request.headers().get(CONTENT_TYPE).cloned();
    let version = request.version();
    // Boxed: the body read's state would otherwise stay inline in this future for as
    // long as the request runs (a waiting long-poll), ~1.5 KiB each.
    let request = match Box::pin(limits.read_body(request)).await {
        Ok(request) => request,
        Err(refusal) => {
            if let BodyRefusal::TimedOut(_) = refusal {
                metrics::counter!("coupon_rpc_shed_total", "reason" => "body_timeout").increment(1);
            }
            tracing::debug!(?refusal, "request body refused");
            let response = errors::response(content_type.as_ref(), &refusal.error());
            // The rest of the body is still on the wire: the connection cannot carry
            // another request, and an HTTP/1 client must be told so.
            return closing(response, version);
        }
    };
    let admitted = limits.admit().await;
    metrics::histogram!("coupon_admission_wait_seconds").record(arrived.elapsed().as_secs_f64());
    let Some(permit) = admitted else {
        metrics::counter!("coupon_rpc_shed_total", "reason" => "overloaded").increment(1);
        return errors::response(content_type.as_ref(), &errors::overloaded());
    };
    let remaining = limits.limits.timeout.saturating_sub(arrived.elapsed());
    let admission = Admission {
        slot: Arc::new(Mutex::new(Some(permit))),
        deadline: Arc::new(watch::Sender::new(Instant::now() + remaining)),
    };
    let mut request = request;
    request.extensions_mut().insert(admission.clone());
    match until_deadline(next.run(request), &admission).await {
        Some(response) => response,
        None => {
            metrics::counter!("coupon_rpc_shed_total", "reason" => "request_timeout").increment(1);
            errors::response(content_type.as_ref(), &errors::request_timed_out())
        }
    }
}

/// Runs `work` until it ends or the request's deadline passes (`None`); the deadline
/// may move later meanwhile (a long-poll's wait).
async fn until_deadline<F: Future>(work: F, admission: &Admission) -> Option<F::Output> {
    let mut deadline = admission.deadline.subscribe();
    tokio::pin!(work);
    loop {
        let at = *deadline.borrow_and_update();
        tokio::select! {
            output = &mut work => return Some(output),
            () = tokio::time::sleep_until(at.into()) => {
                if *deadline.borrow() <= Instant::now() {
                    return None;
                }
            }
            _ = deadline.changed() => {}
        }
    }
}

/// A running request's admission, in its extensions: its in-flight slot, and when it
/// must end. A long-poll gives the slot back while it only waits (waiting long-polls
/// have a bound of their own), so that waiters never starve work, and its wait moves
/// the deadline: `--request-timeout-ms` bounds the work, not the wait.
#[derive(Clone)]
pub struct Admission {
    slot: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
    /// The request is answered `deadline_exceeded` at this instant.
    deadline: Arc<watch::Sender<Instant>>,
}

impl Admission {
    /// Gives the in-flight slot back for a wait of at most `wait`, which the request's
    /// deadline is moved by; the request keeps running.
    pub fn wait_without_slot(&self, wait: Duration) {
        let permit = self
            .slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        drop(permit);
        self.deadline.send_modify(|deadline| *deadline += wait);
    }
}

/// Marks an HTTP/1 response as the connection's last (HTTP/2 has no such header: a
/// refused stream does not affect its connection).
fn closing(mut response: Response, version: Version) -> Response {
    if version <= Version::HTTP_11 {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
