//! Composition roots: each mode wires the same use cases to its own adapters.

pub mod distributed;
pub mod embedded;
pub mod shutdown;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use connectrpc_health::{StaticChecker, Status};
use tokio_util::sync::CancellationToken;

use tokio::net::TcpListener;

use crate::infra::metrics;
use crate::infra::telemetry::LogFormat;
use crate::interfaces::rpc::admin_auth::{self, AdminGuard, AdminToken};
use crate::interfaces::rpc::limits::{self, AdmissionLimits, RequestLimits};
use crate::interfaces::rpc::server::ConnectionLimits;
use crate::interfaces::rpc::user_auth::{UserAuth, UserAuthError};

use crate::application::{
    AcceptIssueRequest, CreateCampaign, DecidedOffsets, GetCampaign, GetIssueResult, ListCampaigns,
    accept_issue_request, get_issue_result,
};
use crate::domain::TicketSeal;
use crate::domain::ports::{CampaignRepository, IssueLog, TicketRepository};
use crate::interfaces::rpc::{CampaignApi, CouponApi, server};

/// Who may call `CampaignService` (both API binaries take these flags).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AdminArgs {
    /// File holding the admin bearer token required by CampaignService calls.
    #[arg(long, env = "COUPON_ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    pub admin_token_file: Option<PathBuf>,

    /// The admin bearer token itself, instead of a file.
    #[arg(long, env = "COUPON_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Serve admin calls without a token on a non-loopback address (never in production).
    #[arg(long)]
    pub insecure_no_admin_token: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminPolicyError {
    #[error(
        "refusing to serve CampaignService on {0} without an admin token: set --admin-token-file or \
         COUPON_ADMIN_TOKEN (or --insecure-no-admin-token)"
    )]
    NoToken(SocketAddr),
    #[error("cannot read admin token file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("the admin token must not be empty")]
    Empty,
    #[error(
        "admin token file {path} holds more than one line: put the token alone on its first \
         line (a trailing newline is fine)"
    )]
    MultiLine { path: String },
}

impl AdminArgs {
    /// Who may call `CampaignService` on a node listening on `listen`.
    pub fn guard_for(&self, listen: SocketAddr) -> Result<AdminGuard, AdminPolicyError> {
        Ok(match self.token_for(listen)? {
            Some(token) => AdminGuard::Token(token),
            None if listen.ip().is_loopback() => AdminGuard::LoopbackOnly,
            None => AdminGuard::Open,
        })
    }

    /// The token to require, or none: allowed only on a loopback address (or when the
    /// operator insisted), and said so at start.
    pub fn token_for(&self, listen: SocketAddr) -> Result<Option<AdminToken>, AdminPolicyError> {
        let token = match (&self.admin_token_file, &self.admin_token) {
            (Some(path), _) => Some(read_token_file(path)?),
            (None, token) => token.clone(),
        };
        match token {
            Some(token) if token.trim().is_empty() => Err(AdminPolicyError::Empty),
            Some(token) => Ok(Some(AdminToken::new(&token))),
            None if listen.ip().is_loopback() => {
                tracing::warn!(%listen, "no admin token: CampaignService is open to anyone who can reach this loopback address");
                Ok(None)
            }
            None if self.insecure_no_admin_token => {
                tracing::warn!(%listen, "no admin token and --insecure-no-admin-token: CampaignService is open to the network");
                Ok(None)
            }
            None => Err(AdminPolicyError::NoToken(listen)),
        }
    }
}

/// The token in `path`: one line, a trailing newline allowed. More lines are refused
/// rather than joined or cut: the operator meant one of them, and we cannot tell which.
fn read_token_file(path: &std::path::Path) -> Result<String, AdminPolicyError> {
    let text = std::fs::read_to_string(path).map_err(|source| AdminPolicyError::File {
        path: path.display().to_string(),
        source,
    })?;
    let line = text
        .strip_suffix('\n')
        .map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
    if line.contains(['\n', '\r']) {
        return Err(AdminPolicyError::MultiLine {
            path: path.display().to_string(),
        });
    }
    Ok(line.to_owned())
}

/// The longest any timeout flag may be (one hour): larger values are refused at start
/// instead of overflowing time arithmetic later.
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// How long an API node trusts a cached campaign (its issued count) in both modes.
pub const CAMPAIGN_TTL: Duration = Duration::from_millis(100);

/// How a process logs (every binary takes this flag).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TelemetryArgs {
    /// Log format on stderr; RUST_LOG sets the level (default info).
    #[arg(long, env = "COUPON_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Where one API node serves and what it lets its clients hold (both API binaries take
/// these flags).
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to serve the API on (Connect, gRPC, gRPC-Web; HTTP/1.1 and h2c).
    #[arg(long, env = "COUPON_LISTEN", default_value_t = ServeArgs::DEFAULT.listen)]
    pub listen: SocketAddr,

    /// Open client connections at most; more wait in the kernel's accept queue.
    #[arg(long, env = "COUPON_MAX_CONNECTIONS", default_value_t = ServeArgs::DEFAULT.max_connections,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Requests running at once at most; more wait their turn, first come first served.
    #[arg(long, env = "COUPON_MAX_IN_FLIGHT", default_value_t = ServeArgs::DEFAULT.max_in_flight,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,

    /// Requests waiting for a turn at most; beyond it a request is refused at once with
    /// `unavailable` (reason OVERLOADED) and nothing is accepted for it.
    #[arg(long, env = "COUPON_MAX_QUEUED", default_value_t = ServeArgs::DEFAULT.max_queued,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_queued: u32,

    /// How long a request may wait for a turn before it is refused (OVERLOADED): this
    /// bounds what overload adds to an accepted request's latency.
    #[arg(long, env = "COUPON_QUEUE_TIMEOUT_MS", default_value_t = ServeArgs::DEFAULT.queue_timeout_ms,
          value_parser = clap::value_parser!(u64).range(0..=MAX_TIMEOUT_MS))]
    pub queue_timeout_ms: u64,

    /// Time a request may take, reading its body included, before `deadline_exceeded`.
    #[arg(long, env = "COUPON_REQUEST_TIMEOUT_MS", default_value_t = ServeArgs::DEFAULT.request_timeout_ms,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_MS))]
    pub request_timeout_ms: u64,

    /// Time a client has to send a request's headers (also how long an idle
    /// keep-alive connection stays open).
    #[arg(long, env = "COUPON_HEADER_READ_TIMEOUT_MS", default_value_t = ServeArgs::DEFAULT.header_read_timeout_ms,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_MS))]
    pub header_read_timeout_ms: u64,

    /// Time a client has to send a request's whole body once its headers arrived; a
    /// body that does not arrive is refused (`deadline_exceeded`, nothing accepted)
    /// without ever taking one of the in-flight slots.
    #[arg(long, env = "COUPON_BODY_READ_TIMEOUT_MS", default_value_t = ServeArgs::DEFAULT.body_read_timeout_ms,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_MS))]
    pub body_read_timeout_ms: u64,

    /// A connection with no request running for this long is closed (HTTP/2: GOAWAY),
    /// so idle connections cannot hold every `--max-connections` slot.
    #[arg(long, env = "COUPON_IDLE_TIMEOUT_MS", default_value_t = ServeArgs::DEFAULT.idle_timeout_ms,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_MS))]
    pub idle_timeout_ms: u64,

    /// File holding a secret (at least 32 bytes) that signs end-user tokens. When set,
    /// IssueCoupon takes the user id from `Authorization: Bearer <JWT>` (HS256, `exp`
    /// required with 5 s of leeway, the subject is the user id) instead of trusting the request body.
    #[arg(long, env = "COUPON_USER_TOKEN_SECRET_FILE")]
    pub user_token_secret_file: Option<PathBuf>,

    /// Concurrent HTTP/2 streams per connection.
    #[arg(long, env = "COUPON_MAX_STREAMS_PER_CONNECTION", default_value_t = ServeArgs::DEFAULT.max_streams_per_connection,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_connection: u32,

    /// GetIssueResult long-polls (`wait_ms` > 0) waiting at once at most; a waiting
    /// long-poll gives its `--max-in-flight` slot back. Beyond it a long-poll is refused
    /// with `unavailable` (reason OVERLOADED). Each holds ~18-25 KiB while it waits, most
    /// of it the HTTP/2 and RPC stack's per-request state (docs/benchmarks.md).
    #[arg(long, env = "COUPON_MAX_WAITING_POLLS", default_value_t = ServeArgs::DEFAULT.max_waiting_polls,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_waiting_polls: u32,

    /// Final ticket results kept in memory, so a repeated poll of a decided ticket
    /// costs no database read (final results never change). About 300 bytes each.
    #[arg(long, env = "COUPON_RESULT_CACHE_ENTRIES", default_value_t = ServeArgs::DEFAULT.result_cache_entries,
          value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    pub result_cache_entries: u32,
}

impl ServeArgs {
    pub const DEFAULT: Self = Self {
        listen: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080)),
        max_connections: 10_000,
        max_in_flight: 512,
        max_queued: 4_096,
        queue_timeout_ms: 100,
        request_timeout_ms: 15_000,
        header_read_timeout_ms: 10_000,
        body_read_timeout_ms: 5_000,
        idle_timeout_ms: 60_000,
        user_token_secret_file: None,
        max_streams_per_connection: 256,
        max_waiting_polls: 20_000,
        result_cache_entries: 200_000,
    };

    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections as usize,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_streams_per_connection: self.max_streams_per_connection,
        }
    }

    /// Where IssueCoupon's user id comes from.
    pub fn user_auth(&self) -> Result<UserAuth, UserAuthError> {
        UserAuth::from_secret_file(self.user_token_secret_file.as_deref())
    }

    fn result_settings(&self) -> get_issue_result::Settings {
        get_issue_result::Settings {
            cache_entries: self.result_cache_entries as usize,
            max_waiting: self.max_waiting_polls as usize,
        }
    }

    fn request_limits(&self) -> RequestLimits {
        RequestLimits::new(AdmissionLimits {
            max_in_flight: self.max_in_flight as usize,
            max_queued: self.max_queued as usize,
            queue_timeout: Duration::from_millis(self.queue_timeout_ms),
            timeout: Duration::from_millis(self.request_timeout_ms),
            body_timeout: Duration::from_millis(self.body_read_timeout_ms),
        })
    }
}

impl Default for ServeArgs {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What an API node is wired with besides its store and its log.
pub struct ApiParts {
    /// What the node knows of how far the log is decided.
    pub decided: DecidedOffsets,
    pub seal: TicketSeal,
    pub accept: accept_issue_request::Settings,
    pub admin: AdminGuard,
    pub users: UserAuth,
}

/// The API both modes serve: every use case wired to one store and one log.
pub fn api<S, L>(
    store: S,
    log: L,
    parts: ApiParts,
    serve: &ServeArgs,
) -> (axum::Router, Arc<StaticChecker>)
where
    S: CampaignRepository + TicketRepository + Clone,
    L: IssueLog + Clone,
{
    let ApiParts {
        decided,
        seal,
        accept,
        admin,
        users,
    } = parts;
    let campaigns = CampaignApi {
        create_campaign: CreateCampaign::new(store.clone(), log.clone()),
        get_campaign: GetCampaign::new(store.clone()),
        list_campaigns: ListCampaigns::new(store.clone()),
        seal: seal.clone(),
    };
    let coupons = CouponApi {
        accept_issue_request: AcceptIssueRequest::new(store.clone(), log, seal.clone(), accept),
        users,
        get_issue_result: GetIssueResult::new(
            store,
            seal.clone(),
            decided,
            serve.result_settings(),
        ),
        seal,
    };
    let (app, health) = server::app(campaigns, coupons);
    let app = app.layer(admin_auth::RequireAdminLayer(admin));
    // Outermost: a request over the caps is refused before anything else runs.
    let app = app
        .merge(metrics::router())
        .layer(axum::middleware::from_fn_with_state(
            serve.request_limits(),
            limits::enforce,
        ));
    (app, health)
}

/// What a node's dependencies answered, for the health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The database: campaigns, tickets (and, embedded, the log's neighbour).
    pub store: bool,
    /// The issue log: what IssueCoupon needs to accept.
    pub log: bool,
}

impl Probe {
    /// Each health-checked service with whether it can serve: `CouponService` while the
    /// log accepts (known campaigns keep being served from memory), `CampaignService`
    /// while the database answers, the node as a whole ("") while both do.
    fn statuses(self) -> [(&'static str, bool); 3] {
        [
            ("", self.store && self.log),
            ("coupon.v1.CampaignService", self.store),
            ("coupon.v1.CouponService", self.log),
        ]
    }
}

/// Keeps `grpc.health.v1` truthful: every second `probe` says which of the node's
/// dependencies answer, and each service reports SERVING or NOT_SERVING.
pub fn watch_health<P, F>(health: Arc<StaticChecker>, probe: P, shutdown: CancellationToken)
where
    P: Fn() -> F + Send + 'static,
    F: Future<Output = Probe> + Send,
{
    tokio::spawn(async move {
        let mut last = Probe {
            store: true,
            log: true,
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let now = probe().await;
            if now == last {
                continue;
            }
            tracing::warn!(store = now.store, log = now.log, "health changed");
            for (service, serving) in now.statuses() {
                let status = if serving {
                    Status::Serving
                } else {
                    Status::NotServing
                };
                let _ = health.set_status(service, status);
            }
            last = now;
        }
    });
}

/// Answers every waiting long-poll (PENDING) once shutdown begins, so none of them
/// holds the drain up.
pub fn answer_waiters_on_shutdown(decided: DecidedOffsets, shutdown: CancellationToken) {
    tokio::spawn(async move {
        shutdown.cancelled().await;
        decided.close();
    });
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct ListenError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Binds a listener; returns it with the address it actually got (port 0).
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ListenError> {
    let bound = async {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        Ok((listener, local))
    };
    bound.await.map_err(|source| ListenError { addr, source })
}
