//! The embedded mode: API and issuing worker in one process, on SQLite files in a data
//! dir (state, log, secret key). Nothing to install.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use chrono::TimeDelta;
use connectrpc_health::StaticChecker;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::application::{
    AuditDecisions, DecideIssueRequests, DecidedOffsets, RewindDecisions, accept_issue_request,
};
use crate::domain::ports::StoreError;
use crate::domain::{CodeGenerator, SecretKey, TicketSeal};
use crate::infra::data_dir::{self, DataDirError, DataDirLock};
use crate::infra::embedded_log::{EmbeddedLog, LogFile};
use crate::infra::key_fingerprint::{self, KeyMismatch};
use crate::infra::log_binding::{self, LogMismatch};
use crate::infra::secret_file::{self, SecretFileError};
use crate::infra::sqlite::{SqliteStore, StateFile, meta};
use crate::interfaces::log_worker;
use crate::interfaces::operator::{self, audit::AuditArgs, rewind::RewindArgs};
use crate::interfaces::rpc::server;

/// The data dir's files (besides `data_dir::LOCK_FILE`).
const STATE_FILE: &str = "coupon.sqlite";
const LOG_FILE: &str = "log.sqlite";
const KEY_FILE: &str = "secret.key";

/// The embedded mode's flags: the whole service in one process (`coupon`).
#[derive(clap::Args, Debug, Clone)]
pub struct EmbeddedArgs {
    /// Directory for the database, the log and the secret key (created if missing).
    /// Back it up as a whole: the key is what makes codes reproducible.
    #[arg(long, env = "COUPON_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    #[command(flatten)]
    pub admin: super::AdminArgs,

    #[command(flatten)]
    pub serve: super::ServeArgs,

    #[command(flatten)]
    pub telemetry: super::TelemetryArgs,
}

/// `coupon audit`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct EmbeddedAuditArgs {
    /// The data dir to audit. Only read: the service may keep running on it.
    #[arg(long, env = "COUPON_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    #[command(flatten)]
    pub audit: AuditArgs,

    #[command(flatten)]
    pub telemetry: super::TelemetryArgs,
}

/// `coupon rewind`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct EmbeddedRewindArgs {
    /// The data dir to rewind; the service must be stopped (the dir is locked while it runs).
    #[arg(long, env = "COUPON_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    #[command(flatten)]
    pub rewind: RewindArgs,

    #[command(flatten)]
    pub telemetry: super::TelemetryArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(transparent)]
    Secret(#[from] SecretFileError),
    #[error(transparent)]
    Key(#[from] KeyMismatch),
    #[error(transparent)]
    Log(#[from] LogMismatch),
    #[error(transparent)]
    Admin(#[from] super::AdminPolicyError),
    #[error(transparent)]
    UserAuth(#[from] crate::interfaces::rpc::user_auth::UserAuthError),
    #[error("cannot open storage: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Listen(#[from] super::ListenError),
}

/// A started server; `stop` shuts it down gracefully.
pub struct Running {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    worker: JoinHandle<()>,
    /// The data dir's lock, released when this is dropped or the process exits.
    _lock: DataDirLock,
}

impl Running {
    /// The token that stops the server when cancelled (e.g. by a signal).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the server stopped (after its shutdown token was cancelled).
    pub async fn wait(self) -> std::io::Result<()> {
        let served = self
            .server
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        // The server is done: the worker finishes its batch and stops too.
        self.shutdown.cancel();
        if let Err(error) = self.worker.await {
            tracing::error!(%error, "issuing worker panicked");
        }
        served
    }

    pub async fn stop(self) -> std::io::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

pub async fn start(args: EmbeddedArgs) -> Result<Running, StartError> {
    let admin = args.admin.guard_for(args.serve.listen)?;
    let data = DataDir::open(&args.data_dir).await?;
    let accept = accept_issue_request::Settings {
        campaign_ttl: super::CAMPAIGN_TTL,
        // The API and the log share this process's clock.
        clock_skew_allowance: TimeDelta::zero(),
    };
    let decided = DecidedOffsets::default();
    let parts = super::ApiParts {
        decided: decided.clone(),
        seal: TicketSeal::new(&data.secret),
        accept,
        admin,
        users: args.serve.user_auth()?,
    };
    let (app, health) = super::api(data.store.clone(), data.log.clone(), parts, &args.serve);
    let (listener, addr) = super::bind(args.serve.listen).await?;
    let shutdown = CancellationToken::new();
    watch_health(health, data.store.clone(), shutdown.clone());
    super::answer_waiters_on_shutdown(decided.clone(), shutdown.clone());
    let decide = Arc::new(DecideIssueRequests::new(
        data.store,
        CodeGenerator::new(&data.secret),
    ));
    let worker = tokio::spawn(log_worker::embedded::run(
        data.log,
        decide,
        decided,
        shutdown.clone(),
    ));
    let server = tokio::spawn(server::serve(
        listener,
        app,
        args.serve.connection_limits(),
        shutdown.clone(),
    ));
    tracing::info!(%addr, data_dir = %args.data_dir.display(), "coupon service (embedded) listening");
    Ok(Running {
        addr,
        shutdown,
        server,
        worker,
        _lock: data.lock,
    })
}

/// `coupon audit`: the data dir's log decided again in memory, compared with its state.
pub async fn audit(args: EmbeddedAuditArgs) -> ExitCode {
    match open_for_audit(&args.data_dir) {
        Ok(audit) => operator::audit::run(audit, &args.audit).await,
        Err(error) => operator::could_not_run("audit", &error),
    }
}

/// Both files and the key, read-only: no lock, no migration, nothing recorded.
fn open_for_audit(dir: &Path) -> Result<AuditDecisions<StateFile, LogFile>, StartError> {
    const REMEDY: &str = "audit with the data dir's own secret.key";
    let secret = secret_file::load(&dir.join(KEY_FILE))?;
    let fingerprint = secret.fingerprint();
    for file in [STATE_FILE, LOG_FILE] {
        let path = dir.join(file);
        let recorded = meta::key_fingerprint(&path)?;
        key_fingerprint::check(
            recorded.as_deref(),
            &fingerprint,
            &path.display().to_string(),
            REMEDY,
        )?;
    }
    // Read only: a log of an earlier version has no identity yet, and passes.
    if let Some(identity) = meta::log_identity(&dir.join(LOG_FILE))? {
        let state = dir.join(STATE_FILE);
        let recorded = meta::log_identity(&state)?;
        let state = state.display().to_string();
        log_binding::check(recorded.as_deref(), &identity, &state, LOG_REMEDY)?;
    }
    let state = StateFile::open_read_only(&dir.join(STATE_FILE))?;
    let log = LogFile::open_read_only(&dir.join(LOG_FILE))?;
    Ok(AuditDecisions::new(state, log, CodeGenerator::new(&secret)))
}

/// `coupon rewind`: the state's decided offset moved back; the next start decides from
/// there. Holds the data dir's lock meanwhile, so it refuses while the service runs.
pub async fn rewind(args: EmbeddedRewindArgs) -> ExitCode {
    match open_for_rewind(&args.data_dir).await {
        Ok((rewind, _lock)) => operator::rewind::run(rewind, &args.rewind).await,
        Err(error) => operator::could_not_run("rewind", &error),
    }
}

async fn open_for_rewind(
    dir: &Path,
) -> Result<(RewindDecisions<SqliteStore, LogFile>, DataDirLock), StartError> {
    for file in [STATE_FILE, LOG_FILE] {
        if !dir.join(file).is_file() {
            return Err(StoreError::Unavailable(format!(
                "{} does not exist",
                dir.join(file).display()
            ))
            .into());
        }
    }
    let lock = data_dir::lock(dir)?;
    let store = SqliteStore::open(&dir.join(STATE_FILE)).await?;
    let log = LogFile::open_read_only(&dir.join(LOG_FILE))?;
    Ok((RewindDecisions::new(store, log), lock))
}

/// A data dir opened by this process: locked, both files open, the key checked.
struct DataDir {
    lock: DataDirLock,
    store: SqliteStore,
    log: EmbeddedLog,
    secret: SecretKey,
}

impl DataDir {
    async fn open(dir: &Path) -> Result<Self, StartError> {
        data_dir::create(dir)?;
        let lock = data_dir::lock(dir)?;
        let store = SqliteStore::open(&dir.join(STATE_FILE)).await?;
        let log = EmbeddedLog::open(&dir.join(LOG_FILE)).await?;
        // Before anything is recorded: recording the key and the log fills `meta`, which
        // counts as data.
        let state_holds_data = store.holds_data()?;
        let rebuilding = !state_holds_data && *log.end().borrow() > 0;
        let secret = load_key(dir, &store, &log)?;
        bind_log(dir, &store, &log, state_holds_data)?;
        if rebuilding {
            // A new or emptied state file beside a log with records (restored from a
            // backup of the log alone, or the state file was deleted): deciding the log
            // from its start rebuilds every outcome and code.
            tracing::warn!(state = %dir.join(STATE_FILE).display(), log_records = *log.end().borrow(),
                "the state file holds no decisions but the log has records: rebuilding the state from the log");
        }
        Ok(Self {
            lock,
            store,
            log,
            secret,
        })
    }
}

/// Health follows the store; one SQLite-backed process: the log lives beside it.
fn watch_health(health: Arc<StaticChecker>, store: SqliteStore, shutdown: CancellationToken) {
    super::watch_health(
        health,
        move || {
            let store = store.clone();
            async move {
                let up = store.ping().await.is_ok();
                super::Probe { store: up, log: up }
            }
        },
        shutdown,
    );
}

/// What to do about a state file of another log.
const LOG_REMEDY: &str = "the two files of a data dir belong together: put back the log.sqlite \
    this state was decided from (from the same backup), or move coupon.sqlite away to rebuild \
    the state from this log";

/// Refuses a state file decided from another log file (the log deleted or replaced
/// while the state stayed). A state file without a recorded log (new, or of an earlier
/// version: `holds_data`, as found before the start recorded anything) records this one.
fn bind_log(
    dir: &Path,
    store: &SqliteStore,
    log: &EmbeddedLog,
    holds_data: bool,
) -> Result<(), StartError> {
    let identity = log.identity()?;
    let state = dir.join(STATE_FILE).display().to_string();
    log_binding::check(
        store.log_identity()?.as_deref(),
        &identity,
        &state,
        LOG_REMEDY,
    )?;
    if store.record_log_identity(&identity)? {
        log_binding::log_recorded(&state, &identity, holds_data);
    }
    Ok(())
}

/// The data dir's key, checked against the fingerprints recorded in both files. A key
/// is created only on a dir that holds no data; a lost or replaced one is refused. Both
/// files are checked before either records anything, so a refused key leaves no trace.
fn load_key(dir: &Path, store: &SqliteStore, log: &EmbeddedLog) -> Result<SecretKey, StartError> {
    const REMEDY: &str = "restore this data dir's original secret.key from your backup \
        (its data cannot be read with another key)";
    let holds_data = store.holds_data()? || log.holds_data()?;
    let secret = secret_file::load_for_data_dir(&dir.join(KEY_FILE), holds_data)?;
    let fingerprint = secret.fingerprint();
    let state = dir.join(STATE_FILE).display().to_string();
    let log_file = dir.join(LOG_FILE).display().to_string();
    key_fingerprint::check(
        store.key_fingerprint()?.as_deref(),
        &fingerprint,
        &state,
        REMEDY,
    )?;
    key_fingerprint::check(
        log.key_fingerprint()?.as_deref(),
        &fingerprint,
        &log_file,
        REMEDY,
    )?;
    if store.record_key_fingerprint(&fingerprint)? {
        key_fingerprint::log_recorded(&state, &fingerprint, holds_data);
    }
    if log.record_key_fingerprint(&fingerprint)? {
        key_fingerprint::log_recorded(&log_file, &fingerprint, holds_data);
    }
    Ok(secret)
}
