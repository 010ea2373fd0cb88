//! rusqlite read connections for the API's reads. A point read (a ticket, a campaign)
//! runs inline on the calling task: it takes microseconds, less than handing it to sqlx's
//! connection thread and back, which costs context switches on every request. In WAL
//! mode readers never wait for the writer, so the inline call does not block on it.
//! Long reads (a page of 10,000 coupons) go to tokio's blocking pool instead.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::domain::ports::StoreError;
use crate::infra::sql_error::sqlite_error;

/// Idle connections kept; more may be open at once under load, then closed.
const MAX_IDLE: usize = 8;

pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// Readers of an existing file, for tools that must not create one (`audit`).
    pub(crate) fn of_existing(path: &Path) -> Result<Arc<Self>, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Unavailable(format!(
                "{} does not exist",
                path.display()
            )));
        }
        Ok(Self::new(path))
    }

    pub(crate) fn new(path: &Path) -> Arc<Self> {
        Arc::new(Self {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Runs `read` on an idle connection (opening one if none is idle), on this thread.
    pub(crate) fn with<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = read(&conn);
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        result
    }

    /// Runs `read` on tokio's blocking pool: for reads too long to run inline.
    pub(crate) async fn with_blocking<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.clone();
        tokio::task::spawn_blocking(move || readers.with(read))
            .await
            .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // A panic while holding the lock leaves a plain Vec of connections: still usable.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite_error)?;
        // Only WAL recovery after a crash makes a reader wait; never for long.
        conn.busy_timeout(Duration::from_secs(1))
            .map_err(sqlite_error)?;
        // Every commit by the writer empties a reader's page cache; mapped pages make
        // re-reading them a memory access instead of a read() call.
        conn.pragma_update(None, "mmap_size", 256 * 1024 * 1024_i64)
            .map_err(sqlite_error)?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(conn)
    }
}
