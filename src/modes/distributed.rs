//! The distributed mode: `producer` nodes (the API) and `consumer` nodes (issuing
//! workers) on Apache Kafka and PostgreSQL, any number of each. Flags and env vars are
//! defined here so the two binaries stay a few lines each.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::application::{
    AuditDecisions, DecideIssueRequests, DecidedOffsets, RewindDecisions, accept_issue_request,
};
use crate::domain::ports::StoreError;
use crate::domain::secret::SecretKeyError;
use crate::domain::{CodeGenerator, SecretKey, TicketSeal};
use crate::infra::kafka::{
    self, AppendSettings, KafkaLog, KafkaReplay, KafkaSetupError, TopicSettings, WorkerSettings,
};
use crate::infra::key_fingerprint::{self, KeyMismatch};
use crate::infra::log_binding::{self, LogMismatch};
use crate::infra::metrics;
use crate::infra::postgres::{PgStore, Publish, SessionLimits, follow_decided_offsets};
use crate::infra::secret_file::{self, SecretFileError};
use crate::interfaces::log_worker;
use crate::interfaces::operator::{self, audit::AuditArgs, rewind::RewindArgs};
use crate::interfaces::rpc::server;

/// Flags both node kinds share.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Kafka bootstrap servers, comma-separated.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:59092")]
    pub kafka_brokers: String,

    /// PostgreSQL URL; migrations run at start (safe with several nodes starting).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://coupon:coupon@127.0.0.1:55432/coupon"
    )]
    pub database_url: String,

    /// The issue log's topic.
    #[arg(long, env = "COUPON_TOPIC", default_value = "coupon.issue-log")]
    pub topic: String,

    /// Partitions of the topic when this node has to create it. Campaigns are spread
    /// over partitions; one partition is decided by one consumer at a time.
    #[arg(long, env = "COUPON_PARTITIONS", default_value_t = 16,
          value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions: i32,

    /// Replication factor of the topic when this node has to create it. Default: 3 on a
    /// cluster of 3 brokers or more (a broker can die without losing an acknowledged
    /// ticket), else 1.
    #[arg(long, env = "COUPON_REPLICATION_FACTOR",
          value_parser = clap::value_parser!(i32).range(1..=100))]
    pub replication_factor: Option<i32>,

    /// Replicas that must hold a record before a ticket is answered (the topic's
    /// `min.insync.replicas`), when this node creates the topic. Default: 2 when the
    /// factor is 3 or more, else 1. With fewer replicas alive IssueCoupon answers
    /// `unavailable` rather than accept what one crash could lose.
    #[arg(long, env = "COUPON_MIN_INSYNC_REPLICAS",
          value_parser = clap::value_parser!(i32).range(1..=100))]
    pub min_insync_replicas: Option<i32>,

    /// File holding the deployment's secret key (64 hex characters). Every node must
    /// have the same key: it makes codes reproducible and authenticates tickets.
    #[arg(long, env = "COUPON_SECRET_KEY_FILE", conflicts_with = "secret_key")]
    pub secret_key_file: Option<PathBuf>,

    /// The secret key itself (64 hex characters), instead of a file.
    #[arg(long, env = "COUPON_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,

    /// Most database connections this node opens.
    #[arg(long, env = "COUPON_DB_MAX_CONNECTIONS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub db_max_connections: u32,

    #[command(flatten)]
    pub telemetry: super::TelemetryArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ProducerArgs {
    /// How long IssueCoupon waits for the broker's acknowledgement before answering
    /// `unavailable`.
    #[arg(long, env = "COUPON_ACK_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..=super::MAX_TIMEOUT_MS))]
    pub ack_timeout_ms: u64,

    /// How long an accepted request may wait for others to share its produce request
    /// to the broker. Longer: fewer, larger requests (less broker CPU per request), each
    /// request answered up to this much later.
    #[arg(long, env = "COUPON_KAFKA_LINGER_MS", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(0..=1_000))]
    pub kafka_linger_ms: u64,

    /// Requests earlier than the start by more than this (by this node's clock) are
    /// refused at once; closer ones go to the log, whose append clock decides.
    #[arg(long, env = "COUPON_CLOCK_SKEW_ALLOWANCE_MS", default_value_t = 500,
          value_parser = clap::value_parser!(i64).range(0..=super::MAX_TIMEOUT_MS as i64))]
    pub clock_skew_allowance_ms: i64,

    #[command(flatten)]
    pub admin: super::AdminArgs,

    #[command(flatten)]
    pub serve: super::ServeArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ConsumerArgs {
    /// Consumer group; workers of one group share the partitions.
    #[arg(long, env = "COUPON_GROUP", default_value = "coupon-issuers")]
    pub group: String,

    /// How long a silent worker keeps its partitions before the group moves them.
    #[arg(long, env = "COUPON_SESSION_TIMEOUT_MS", default_value_t = 6_000,
          value_parser = clap::value_parser!(u64).range(1_000..=super::MAX_TIMEOUT_MS))]
    pub session_timeout_ms: u64,

    /// Serve Prometheus metrics (`GET /metrics`) on this address; off when unset.
    #[arg(long, env = "COUPON_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// PostgreSQL ends this worker's transaction (and session) when it sits idle this
    /// long inside it: a frozen worker's row lock, which its partition's next owner
    /// waits for, lasts no longer. Keep it at or below the session timeout.
    #[arg(long, env = "COUPON_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", default_value_t = 3_000,
        value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub db_idle_in_transaction_timeout_ms: u64,

    /// Longest wait for a row lock (another worker's batch of the same partition);
    /// the batch is then retried.
    #[arg(long, env = "COUPON_DB_LOCK_TIMEOUT_MS", default_value_t = 3_000,
        value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub db_lock_timeout_ms: u64,

    /// Longest statement of a decision batch; the batch is then retried.
    #[arg(long, env = "COUPON_DB_STATEMENT_TIMEOUT_MS", default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub db_statement_timeout_ms: u64,

    /// Seconds of silence before PostgreSQL probes this worker's connection (3 probes
    /// 1 s apart), so a vanished host's session and locks go away.
    #[arg(long, env = "COUPON_DB_KEEPALIVE_IDLE_S", default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(1..=7_200))]
    pub db_keepalive_idle_s: u64,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// `consumer audit`'s flags: where the log and the store are, and the key.
#[derive(Args, Debug, Clone)]
pub struct ConsumerAuditArgs {
    #[command(flatten)]
    pub audit: AuditArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// `consumer rewind`'s flags: where the log and the store are, and where to rewind to.
#[derive(Args, Debug, Clone)]
pub struct ConsumerRewindArgs {
    #[command(flatten)]
    pub rewind: RewindArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "a secret key is required: --secret-key-file or COUPON_SECRET_KEY (64 hex characters, the same on every node)"
    )]
    NoSecret,
    #[error(transparent)]
    Admin(#[from] super::AdminPolicyError),
    #[error(transparent)]
    UserAuth(#[from] crate::interfaces::rpc::user_auth::UserAuthError),
    #[error("secret key: {0}")]
    BadSecret(#[from] SecretKeyError),
    #[error(transparent)]
    SecretFile(#[from] SecretFileError),
    #[error(transparent)]
    Key(#[from] KeyMismatch),
    #[error(transparent)]
    Log(#[from] LogMismatch),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Kafka(#[from] KafkaSetupError),
    #[error("kafka client: {0}")]
    KafkaClient(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Worker(#[from] log_worker::kafka::WorkerError),
    #[error(transparent)]
    Listen(#[from] super::ListenError),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

impl CommonArgs {
    fn secret(&self) -> Result<SecretKey, StartError> {
        match (&self.secret_key_file, &self.secret_key) {
            (Some(path), _) => Ok(secret_file::load(path)?),
            (None, Some(hex)) => Ok(SecretKey::from_hex(hex)?),
            (None, None) => Err(StartError::NoSecret),
        }
    }

    fn topic(&self) -> TopicSettings {
        TopicSettings {
            brokers: self.kafka_brokers.clone(),
            topic: self.topic.clone(),
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            min_insync_replicas: self.min_insync_replicas,
        }
    }
}

impl ConsumerArgs {
    fn session_limits(&self) -> SessionLimits {
        SessionLimits {
            statement: Duration::from_millis(self.db_statement_timeout_ms),
            lock: Duration::from_millis(self.db_lock_timeout_ms),
            idle_in_transaction: Duration::from_millis(self.db_idle_in_transaction_timeout_ms),
            keepalive_idle: Duration::from_secs(self.db_keepalive_idle_s),
        }
    }
}

/// A started API node.
pub struct RunningProducer {
    pub addr: SocketAddr,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningProducer {
    pub async fn wait(self) -> Result<(), StartError> {
        self.server
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(StartError::Serve)
    }
}

/// Starts an API node; it serves until `shutdown` is cancelled.
pub async fn start_producer(
    args: ProducerArgs,
    shutdown: CancellationToken,
) -> Result<RunningProducer, StartError> {
    let admin = args.admin.guard_for(args.serve.listen)?;
    let secret = args.common.secret()?;
    let topic = args.common.topic();
    kafka::ensure_topic(&topic).await?;
    let store = PgStore::connect(&args.common.database_url, args.common.db_max_connections).await?;
    check_key(&store, &secret).await?;
    check_log(&store, &topic).await?;
    let append = AppendSettings {
        replicas_needed: kafka::min_insync_replicas(&topic).await?,
        ack_timeout: Duration::from_millis(args.ack_timeout_ms),
        linger: Duration::from_millis(args.kafka_linger_ms),
    };
    let log = KafkaLog::new(&topic, append, &secret.fingerprint())?;
    let accept = accept_issue_request::Settings {
        campaign_ttl: super::CAMPAIGN_TTL,
        clock_skew_allowance: TimeDelta::milliseconds(args.clock_skew_allowance_ms),
    };
    let decided = DecidedOffsets::default();
    let parts = super::ApiParts {
        decided: decided.clone(),
        seal: TicketSeal::new(&secret),
        accept,
        admin,
        users: args.serve.user_auth()?,
    };
    let (app, health) = super::api(store.clone(), log.clone(), parts, &args.serve);
    follow_decisions(&store, decided, &shutdown);
    super::watch_health(
        health,
        move || {
            let (store, log) = (store.clone(), log.clone());
            async move {
                let (store, log) = tokio::join!(store.ping(), log.ping());
                super::Probe {
                    store: store.is_ok(),
                    log,
                }
            }
        },
        shutdown.clone(),
    );
    let (listener, addr) = super::bind(args.serve.listen).await?;
    tracing::info!(%addr, topic = %topic.topic, "coupon producer (API) listening");
    let server = tokio::spawn(server::serve(
        listener,
        app,
        args.serve.connection_limits(),
        shutdown,
    ));
    Ok(RunningProducer { addr, server })
}

/// Keeps the node's decided offsets current from the consumers' notices, and answers
/// its waiting long-polls once shutdown begins.
fn follow_decisions(store: &PgStore, decided: DecidedOffsets, shutdown: &CancellationToken) {
    super::answer_waiters_on_shutdown(decided.clone(), shutdown.clone());
    tokio::spawn(follow_decided_offsets(
        store.clone(),
        decided,
        shutdown.clone(),
    ));
}

impl Publish for DecidedOffsets {
    fn decided(&self, partition: u32, next: u64) {
        self.publish(partition, next);
    }

    fn all_published(&self) {
        self.all_partitions_published();
    }
}

/// Runs an issuing worker until `shutdown` is cancelled.
pub async fn run_consumer(
    args: ConsumerArgs,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let secret = args.common.secret()?;
    let topic = args.common.topic();
    kafka::ensure_topic(&topic).await?;
    let store = PgStore::connect_worker(
        &args.common.database_url,
        args.common.db_max_connections,
        // The pid tells this worker's sessions apart in `pg_stat_activity`.
        &format!("coupon-consumer-{}", std::process::id()),
        &args.session_limits(),
    )
    .await?;
    check_key(&store, &secret).await?;
    check_log(&store, &topic).await?;
    let decide = Arc::new(DecideIssueRequests::new(
        store.clone(),
        CodeGenerator::new(&secret),
    ));
    if let Some(listen) = args.metrics_listen {
        serve_metrics(listen, shutdown.clone()).await?;
    }
    let settings = WorkerSettings {
        group: args.group,
        session_timeout: Duration::from_millis(args.session_timeout_ms),
        key_fingerprint: secret.fingerprint(),
    };
    log_worker::kafka::run(topic, settings, store, decide, shutdown).await?;
    Ok(())
}

/// `consumer audit`: the topic decided again in memory, compared with PostgreSQL. Reads
/// only: no migration, no group, nothing recorded.
pub async fn audit(args: ConsumerAuditArgs) -> ExitCode {
    match open_for_audit(&args.common).await {
        Ok(audit) => operator::audit::run(audit, &args.audit).await,
        Err(error) => operator::could_not_run("audit", &error),
    }
}

async fn open_for_audit(
    args: &CommonArgs,
) -> Result<AuditDecisions<PgStore, KafkaReplay>, StartError> {
    const REMEDY: &str = "audit with the deployment's key (--secret-key-file or COUPON_SECRET_KEY)";
    let secret = args.secret()?;
    let store = PgStore::connect_read_only(&args.database_url).await?;
    let database = database_label(&store).await?;
    let recorded = store.key_fingerprint().await?;
    key_fingerprint::check(
        recorded.as_deref(),
        &secret.fingerprint(),
        &database,
        REMEDY,
    )?;
    check_log_read_only(&store, &args.topic()).await?;
    let log = KafkaReplay::new(
        &args.kafka_brokers,
        &args.topic,
        Some(&secret.fingerprint()),
    )?;
    Ok(AuditDecisions::new(store, log, CodeGenerator::new(&secret)))
}

/// `consumer rewind`: decided offsets moved back in PostgreSQL; the workers decide from
/// there. Needs no key: it reads no record, only offsets and append times.
pub async fn rewind(args: ConsumerRewindArgs) -> ExitCode {
    let opened = async {
        let store = PgStore::connect(&args.common.database_url, 2).await?;
        check_log_read_only(&store, &args.common.topic()).await?;
        let log = KafkaReplay::new(&args.common.kafka_brokers, &args.common.topic, None)?;
        Ok::<_, StartError>(RewindDecisions::new(store, log))
    };
    match opened.await {
        Ok(rewind) => operator::rewind::run(rewind, &args.rewind).await,
        Err(error) => operator::could_not_run("rewind", &error),
    }
}

/// Refuses a node whose key is not the deployment's: the first node to start records
/// its key's fingerprint in PostgreSQL, every node (producer or consumer) compares.
async fn check_key(store: &PgStore, secret: &SecretKey) -> Result<(), StartError> {
    const REMEDY: &str = "every node must run with the deployment's original key \
        (--secret-key-file or COUPON_SECRET_KEY): restore it on this node";
    let fingerprint = secret.fingerprint();
    let database = database_label(store).await?;
    let holds_data = store.holds_data().await?;
    if store.record_key_fingerprint(&fingerprint).await? {
        key_fingerprint::log_recorded(&database, &fingerprint, holds_data);
    }
    let recorded = store.key_fingerprint().await?;
    key_fingerprint::check(recorded.as_deref(), &fingerprint, &database, REMEDY)?;
    Ok(())
}

/// What to do about a database of another topic.
const LOG_REMEDY: &str = "a database belongs to the topic it was first used with: point this \
    node at that topic (--kafka-brokers, --topic), or give the new topic a new database \
    (--database-url)";

/// Refuses a node whose topic is not the one the database's decisions belong to: the
/// first node to start records its topic (name and cluster id), every node compares.
async fn check_log(store: &PgStore, topic: &TopicSettings) -> Result<(), StartError> {
    let log = kafka::log_identity(topic).await?;
    if store.record_log_identity(&log).await? {
        let database = database_label(store).await?;
        log_binding::log_recorded(&database, &log, store.holds_data().await?);
    }
    compare_log(store, &log).await
}

/// For the operator's commands, which record nothing: the topic they read must be the
/// database's, when it names one.
async fn check_log_read_only(store: &PgStore, topic: &TopicSettings) -> Result<(), StartError> {
    compare_log(store, &kafka::log_identity(topic).await?).await
}

async fn compare_log(store: &PgStore, log: &str) -> Result<(), StartError> {
    let recorded = store.log_identity().await?;
    let database = database_label(store).await?;
    log_binding::check(recorded.as_deref(), log, &database, LOG_REMEDY)?;
    Ok(())
}

/// The database as errors and logs name it (without the URL's password).
async fn database_label(store: &PgStore) -> Result<String, StartError> {
    Ok(format!(
        "PostgreSQL database {}",
        store.database_name().await?
    ))
}

/// The consumer has no API: it serves only `/metrics`, on its own address.
async fn serve_metrics(listen: SocketAddr, shutdown: CancellationToken) -> Result<(), StartError> {
    let (listener, addr) = super::bind(listen).await?;
    tracing::info!(%addr, "metrics listening");
    let limits = super::ServeArgs::DEFAULT.connection_limits();
    tokio::spawn(async move {
        if let Err(error) = server::serve(listener, metrics::router(), limits, shutdown).await {
            tracing::error!(%error, "metrics server failed");
        }
    });
    Ok(())
}
