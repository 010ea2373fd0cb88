//! The HTTP server: Connect (JSON and binary), gRPC and gRPC-Web on one port, plus
//! `grpc.health.v1.Health/Check`, the benchmarks' no-op baseline.
//!
//! `axum::serve` exposes no connection settings, so this module runs its own accept
//! loop on hyper: a cap on open connections, a header read timeout (which also closes
//! idle HTTP/1 keep-alive connections), an idle timeout for both protocols (HTTP/2
//! connections answer PINGs forever otherwise), HTTP/2 stream and header-size limits,
//! and a drain on shutdown that closes idle connections at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use connectrpc_health::StaticChecker;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use super::observe::RpcMetrics;
use super::proto::coupon::v1::{CampaignServiceExt, CouponServiceExt};
use super::{CampaignApi, CouponApi};
use crate::domain::ports::{CampaignRepository, IssueLog};

pub const SERVICE_NAMES: [&str; 2] = ["coupon.v1.CampaignService", "coupon.v1.CouponService"];

/// How long in-flight requests may take to finish once shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection told to close (idle, or shutting down) may stay open once it
/// runs no request: long enough for the GOAWAY to reach the peer.
const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// Back-off after a failed accept (e.g. out of file descriptors), so the loop does
/// not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Request header bytes per connection (HTTP/1 read buffer, HTTP/2 header list).
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Bounds on what one node lets its clients hold.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at most; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
    /// A client must send a request's headers within this time, also between requests
    /// on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// A connection running no request for this long is closed (HTTP/2: GOAWAY).
    pub idle_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection.
    pub max_streams_per_connection: u32,
}

/// Waits (at most `limit`) until the client has sent enough for hyper to tell HTTP/1
/// from the HTTP/2 preface; false if it did not, or closed the connection.
async fn protocol_bytes_arrive(stream: &TcpStream, limit: Duration) -> bool {
    const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let wait = async {
        let mut buffer = [0u8; H2_PREFACE.len()];
        loop {
            match stream.peek(&mut buffer).await {
                Ok(0) | Err(_) => return false,
                Ok(n) if n == buffer.len() || !H2_PREFACE.starts_with(&buffer[..n]) => {
                    return true;
                }
                // A preface arriving in pieces: rare, so a short poll is fine.
                Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    };
    tokio::time::timeout(limit, wait).await.unwrap_or(false)
}

/// The axum app with every service mounted, and the health checker's handle.
pub fn app<R, L>(
    campaigns: CampaignApi<R, L>,
    coupons: CouponApi<R, L>,
) -> (axum::Router, Arc<StaticChecker>)
where
    R: CampaignRepository,
    L: IssueLog,
{
    let router = Arc::new(coupons).register(connectrpc::Router::new());
    let router = Arc::new(campaigns).register(router);
    let (router, health) = connectrpc_health::install_static(router, SERVICE_NAMES);
    let router = with_reflection(router);
    let service = router.into_axum_service().with_interceptor(RpcMetrics);
    let app = crate::interfaces::console::router().fallback_service(service);
    (app, health)
}

/// The services' schema, compiled by build.rs from `proto/`.
const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/coupon.fds.bin"));

/// gRPC server reflection (`grpc.reflection.v1` and `v1alpha`), so that grpcurl, buf curl,
/// Postman and grpcui list and call the services without the proto files. It lists the
/// `coupon.v1` services and itself (health is served, but its schema is not in the set). A descriptor
/// set the build made but that does not load is logged, and the API serves without it.
fn with_reflection(router: connectrpc::Router) -> connectrpc::Router {
    match connectrpc_reflection::Reflector::from_descriptor_set_bytes(DESCRIPTOR_SET) {
        Ok(reflector) => connectrpc_reflection::install(router, reflector),
        Err(error) => {
            tracing::error!(%error, "the built descriptor set does not load: no server reflection");
            router
        }
    }
}

/// Serves until `shutdown` is cancelled, then stops accepting, closes idle connections
/// at once and lets in-flight requests finish (for at most [`DRAIN_TIMEOUT`]).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let builder = Arc::new(connection_builder(&limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
        };
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accept failed; backing off");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Responses are small and latency matters more than packet count.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let connection = Connection {
            builder: Arc::clone(&builder),
            app: app.clone(),
            limits,
            shutdown: shutdown.clone(),
        };
        connections.spawn(async move {
            connection.serve(stream).await;
            drop(permit);
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?DRAIN_TIMEOUT, "connections still open after the drain timeout; closing them");
    }
    Ok(())
}

fn connection_builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams_per_connection)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(limits.header_read_timeout);
    builder
}

/// One accepted client connection, either protocol.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: axum::Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
}

impl Connection {
    /// Serves the connection until the client closes it, it stays idle for the idle
    /// timeout, or shutdown begins; then lets its running requests finish.
    async fn serve(self, stream: TcpStream) {
        // hyper's header timeout starts once it knows the protocol; until then a
        // silent client would hold its connection (and slot) forever.
        let arrived = tokio::select! {
            arrived = protocol_bytes_arrive(&stream, self.limits.header_read_timeout) => arrived,
            () = self.shutdown.cancelled() => false,
        };
        if !arrived {
            return;
        }
        let activity = Activity::default();
        let service = counted_service(self.app, activity.clone());
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service);
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => return log_end(result),
            () = activity.idle_for(self.limits.idle_timeout) => {}
            () = self.shutdown.cancelled() => {}
        }
        // GOAWAY on HTTP/2, close after the current response on HTTP/1: running
        // requests finish, no new one starts. A peer that keeps an idle connection
        // open past that is cut off, so idle clients never delay shutdown.
        connection.as_mut().graceful_shutdown();
        tokio::select! {
            result = connection.as_mut() => log_end(result),
            () = activity.idle_for(CLOSE_GRACE) => {}
        }
    }
}

fn log_end<E: std::fmt::Display>(result: Result<(), E>) {
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// The app, counting the requests it is running on one connection.
fn counted_service(
    app: axum::Router,
    activity: Activity,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |request| {
        let running = activity.begin();
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await;
            drop(running);
            response
        }
    })
}

/// The requests running on one connection, and how long it has had none.
#[derive(Clone, Default)]
struct Activity(Arc<watch::Sender<usize>>);

/// One running request; dropping it ends it.
struct Running(Activity);

impl Activity {
    fn begin(&self) -> Running {
        self.0.send_modify(|running| *running += 1);
        Running(self.clone())
    }

    /// Returns once no request has run on the connection for `limit`.
    async fn idle_for(&self, limit: Duration) {
        let mut changes = self.0.subscribe();
        loop {
            if changes.wait_for(|running| *running == 0).await.is_err() {
                return; // unreachable while `self` holds the sender; idle either way
            }
            if tokio::time::timeout(limit, changes.changed())
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0
            .0
            .send_modify(|running| *running = running.saturating_sub(1));
    }
}
