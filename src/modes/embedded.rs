//! The embedded mode: API and issuing worker in one process, on SQLite files in a data
//! dir (state, log, secret key). Nothing to install.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::application::{IssueCoupons, issue_coupon};
use crate::domain::ports::StoreError;
use crate::domain::{CodeGenerator, TicketSeal};
use crate::infra::embedded_log::{self, EmbeddedLog};
use crate::infra::secret_file::{self, SecretFileError};
use crate::infra::sqlite::SqliteStore;
use crate::interfaces::rpc::server;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub admin: super::AdminArgs,
    pub serve: super::ServeArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Secret(#[from] SecretFileError),
    #[error(transparent)]
    Admin(#[from] super::AdminPolicyError),
    #[error(transparent)]
    UserAuth(#[from] crate::interfaces::rpc::user_auth::UserAuthError),
    #[error("cannot open storage: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started server; `stop` shuts it down gracefully.
pub struct Running {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    worker: JoinHandle<()>,
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

pub async fn start(config: Config) -> Result<Running, StartError> {
    let admin = config.admin.guard_for(config.listen)?;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let secret = secret_file::load_or_create(&config.data_dir.join("secret.key"))?;
    let store = SqliteStore::open(&config.data_dir.join("coupon.sqlite")).await?;
    let log = EmbeddedLog::open(&config.data_dir.join("log.sqlite")).await?;

    let (app, health) = super::api(
        store.clone(),
        log.clone(),
        TicketSeal::new(&secret),
        issue_coupon::Settings {
            campaign_ttl: Duration::from_millis(100),
            // The API and the log share this process's clock.
            clock_skew_allowance: TimeDelta::zero(),
        },
        admin,
        config.serve.user_auth()?,
        &config.serve,
    );
    let (listener, addr) =
        super::bind(config.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.listen,
                source,
            })?;
    let shutdown = CancellationToken::new();
    let probe_store = store.clone();
    super::watch_health(
        health,
        move || {
            let store = probe_store.clone();
            async move {
                // One SQLite-backed process: the log lives beside the store.
                let up = store.ping().await.is_ok();
                super::Probe { store: up, log: up }
            }
        },
        shutdown.clone(),
    );
    let issue = Arc::new(IssueCoupons::new(
        store.clone(),
        CodeGenerator::new(&secret),
    ));
    let worker = tokio::spawn(embedded_log::run_worker(
        log,
        store,
        issue,
        shutdown.clone(),
    ));
    let server = tokio::spawn(server::serve(
        listener,
        app,
        config.serve.connection_limits(),
        shutdown.clone(),
    ));
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "coupon service (embedded) listening");
    Ok(Running {
        addr,
        shutdown,
        server,
        worker,
    })
}
