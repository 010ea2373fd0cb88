//! Fails fast while PostgreSQL is known to be unreachable (a circuit breaker on getting
//! a connection). Without it every call during an outage waits the pool's whole acquire
//! timeout: each unknown campaign, poll and GetCampaign five seconds, while callers pile
//! up. Once getting a connection fails, the breaker opens: every call fails at once,
//! and a background task keeps trying to connect; its first success closes it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::domain::ports::StoreError;
use crate::infra::sql_error::store_error;

/// Pause between two failed connection attempts of the background probe (each attempt
/// itself lasts up to the pool's acquire timeout while the server does not answer).
const PROBE_PAUSE: Duration = Duration::from_millis(100);

pub(super) struct Breaker {
    pool: PgPool,
    outage: Mutex<Option<Outage>>,
}

struct Outage {
    since: Instant,
    last_error: String,
}

impl Breaker {
    pub(super) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            outage: Mutex::new(None),
        }
    }

    /// Runs `connect` (getting a connection or beginning a transaction) unless the
    /// database is known to be down.
    pub(super) async fn call<T>(
        self: &Arc<Self>,
        connect: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        if let Some(outage) = &*self.outage() {
            return Err(StoreError::Unavailable(format!(
                "PostgreSQL unreachable for {:.1} s ({}); failing fast until it answers again",
                outage.since.elapsed().as_secs_f64(),
                outage.last_error
            )));
        }
        let result = connect.await;
        if let Err(error) = &result
            && is_unreachable(error)
        {
            self.open(error);
        }
        result.map_err(store_error)
    }

    fn open(self: &Arc<Self>, error: &sqlx::Error) {
        let mut outage = self.outage();
        if outage.is_some() {
            return; // another call opened it; its probe is running
        }
        tracing::warn!(%error, "PostgreSQL unreachable: failing fast until a connection succeeds");
        metrics::gauge!("coupon_db_unreachable").set(1.0);
        *outage = Some(Outage {
            since: Instant::now(),
            last_error: error.to_string(),
        });
        tokio::spawn(self.clone().probe());
    }

    /// Tries to connect until it can, then closes the breaker.
    async fn probe(self: Arc<Self>) {
        loop {
            match self.pool.acquire().await {
                Ok(_connection) => break,
                Err(error) => {
                    if let Some(outage) = &mut *self.outage() {
                        outage.last_error = error.to_string();
                    }
                    tokio::time::sleep(PROBE_PAUSE).await;
                }
            }
        }
        if let Some(outage) = self.outage().take() {
            tracing::info!(
                after_s = outage.since.elapsed().as_secs_f64(),
                "PostgreSQL reachable again"
            );
        }
        metrics::gauge!("coupon_db_unreachable").set(0.0);
    }

    fn outage(&self) -> MutexGuard<'_, Option<Outage>> {
        // Plain data, consistent after any panic.
        self.outage.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Errors that say the database could not be reached at all, as opposed to an answer
/// (a constraint, a timeout of one statement) from a database that is up.
fn is_unreachable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::postgres::PgPoolOptions;

    use super::*;

    /// A pool whose server never answers (nothing listens on port 1).
    fn unreachable_pool() -> PgPool {
        PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(200))
            .connect_lazy("postgres://coupon@127.0.0.1:1/none")
            .expect("a lazy pool needs no server")
    }

    #[tokio::test]
    async fn once_unreachable_every_call_fails_at_once() {
        let pool = unreachable_pool();
        let breaker = Arc::new(Breaker::new(pool.clone()));
        let first = breaker.call(pool.acquire()).await.err();
        assert!(matches!(first, Some(StoreError::Unavailable(_))));
        // Open: refused without trying (a call that tried would take the 200 ms).
        let started = Instant::now();
        let refused = breaker.call(std::future::pending::<Result<(), _>>()).await;
        let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("PostgreSQL unreachable for"), "{message}");
        assert!(started.elapsed() < Duration::from_millis(100));
    }

    #[tokio::test]
    async fn an_answer_from_a_database_that_is_up_keeps_it_closed() {
        let breaker = Arc::new(Breaker::new(unreachable_pool()));
        let answered = breaker
            .call(async { Err::<(), _>(sqlx::Error::RowNotFound) })
            .await;
        assert!(answered.is_err());
        assert!(breaker.call(async { Ok(()) }).await.is_ok());
    }
}
