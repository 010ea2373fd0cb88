//! How an API node learns, without a query per poll, how far each partition is decided:
//! consumers NOTIFY `coupon_decided` with `<partition>:<next offset>` inside each batch
//! transaction; every producer LISTENs on one connection of its own and hands each
//! (partition, next offset) to `Publish` (its `DecidedOffsets`, which answers PENDING
//! polls and wakes long-polls).
//!
//! A notice is lost only with its connection. After every (re)connection, once LISTEN
//! is in place, the stored offsets are read again, so nothing decided meanwhile is
//! missed; a slower re-read every few seconds is the belt to those braces.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio_util::sync::CancellationToken;

use super::PgStore;
use crate::domain::ports::StoreError;
use crate::infra::sql_error::store_error;
use crate::infra::sql_values::{to_partition, to_u64};

pub const DECIDED_CHANNEL: &str = "coupon_decided";
/// The listening session's name in `pg_stat_activity`.
pub const LISTENER_APPLICATION_NAME: &str = "coupon-decided-listener";
const RELOAD_EVERY: Duration = Duration::from_secs(5);
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

pub fn decided_notice(partition: u32, next: u64) -> String {
    format!("{partition}:{next}")
}

fn parse_notice(payload: &str) -> Option<(u32, u64)> {
    let (partition, next) = payload.split_once(':')?;
    Some((partition.parse().ok()?, next.parse().ok()?))
}

/// Where decided offsets go.
pub trait Publish: Send + Sync + 'static {
    /// `partition` is decided up to `next` (its first undecided offset).
    fn decided(&self, partition: u32, next: u64);
    /// Every partition with a stored offset was just handed over: any other has
    /// decided nothing yet.
    fn all_published(&self);
}

/// Hands every decided offset to `publish` until `shutdown`; reconnects by itself.
pub async fn follow_decided_offsets(
    store: PgStore,
    decided: impl Publish,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        if let Err(error) = follow_once(&store, &decided, &shutdown).await {
            tracing::warn!(%error, "listening for decided offsets failed; reconnecting");
            metrics::counter!("coupon_decided_listener_reconnects_total").increment(1);
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(RECONNECT_PAUSE) => {}
            }
        }
    }
}

/// One listening connection, until it fails or `shutdown`.
async fn follow_once(
    store: &PgStore,
    decided: &impl Publish,
    shutdown: &CancellationToken,
) -> Result<(), StoreError> {
    let mut listener = listen(store).await?;
    reload(store, decided).await?;
    let mut reload_timer = tokio::time::interval(RELOAD_EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = reload_timer.tick() => reload(store, decided).await?,
            notice = listener.try_recv() => match notice.map_err(store_error)? {
                Some(notice) => match parse_notice(notice.payload()) {
                    Some((partition, next)) => decided.decided(partition, next),
                    None => tracing::warn!(payload = notice.payload(), "unreadable decided-offset notice"),
                },
                // Lost, and already listening again on a new connection: what was
                // decided meanwhile is read from the table.
                None => {
                    metrics::counter!("coupon_decided_listener_reconnects_total").increment(1);
                    reload(store, decided).await?;
                }
            },
        }
    }
}

/// A listener on a connection of its own (not one of the pool's request connections).
async fn listen(store: &PgStore) -> Result<PgListener, StoreError> {
    let options = store
        .pool
        .connect_options()
        .as_ref()
        .clone()
        .application_name(LISTENER_APPLICATION_NAME);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options);
    let mut listener = PgListener::connect_with(&pool).await.map_err(store_error)?;
    listener
        .listen(DECIDED_CHANNEL)
        .await
        .map_err(store_error)?;
    Ok(listener)
}

async fn reload(store: &PgStore, decided: &impl Publish) -> Result<(), StoreError> {
    const SQL: &str = "SELECT log_partition, next_offset FROM partition_offsets";
    let mut conn = store.conn().await?;
    let rows: Vec<(i64, i64)> = sqlx::query_as(SQL)
        .fetch_all(&mut *conn)
        .await
        .map_err(store_error)?;
    for (partition, next) in rows {
        decided.decided(to_partition(partition)?, to_u64(next)?);
    }
    decided.all_published();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_and_garbage_is_ignored() {
        assert_eq!(
            parse_notice(&decided_notice(7, 123_456)),
            Some((7, 123_456))
        );
        for garbage in ["", "7", "7:", ":1", "x:1", "7:-1", "7:1:2"] {
            assert_eq!(parse_notice(garbage), None, "{garbage:?}");
        }
    }
}
