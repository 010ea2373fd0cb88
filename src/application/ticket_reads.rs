//! Reads of decided tickets, coalesced: one store read for many polls.
//!
//! A decision batch wakes every long-poll it decided at the same instant; each wants
//! its ticket from the store. Read one by one they queue for the database's
//! connections, and the last of a few hundred waits tens of milliseconds for nothing.
//! Here each read joins the next batch: a read starts at once while fewer than
//! `in_flight` are running, and whatever arrives meanwhile goes out together in the
//! next one (at most `max_batch` tickets). No timer: an idle node reads at once.

use std::collections::HashMap;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

use crate::domain::TicketId;
use crate::domain::ports::{FoundTicket, StoreError, TicketRepository};

/// Reads running at once at most: a few of the pool's connections, never all of them.
const IN_FLIGHT: usize = 4;
/// Tickets in one read at most.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Option<FoundTicket>, StoreError>>;

/// A handle on the reader task; the task ends when the last handle is dropped.
pub struct TicketReads {
    queue: mpsc::UnboundedSender<(TicketId, Reply)>,
}

impl TicketReads {
    /// Starts the reader task on the current tokio runtime.
    pub fn start<T: TicketRepository>(tickets: T) -> Self {
        let (queue, requests) = mpsc::unbounded_channel();
        tokio::spawn(serve(tickets, requests));
        Self { queue }
    }

    /// The decided ticket `id`, if it is decided.
    pub async fn find(&self, id: TicketId) -> Result<Option<FoundTicket>, StoreError> {
        let stopped = || StoreError::Unavailable("ticket reader stopped".into());
        let (reply, answer) = oneshot::channel();
        self.queue.send((id, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn serve<T: TicketRepository>(
    tickets: T,
    mut requests: mpsc::UnboundedReceiver<(TicketId, Reply)>,
) {
    let mut reads = FuturesUnordered::new();
    loop {
        tokio::select! {
            Some(()) = reads.next(), if !reads.is_empty() => {}
            first = requests.recv(), if reads.len() < IN_FLIGHT => {
                let Some(first) = first else { break };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    let Ok(next) = requests.try_recv() else { break };
                    batch.push(next);
                }
                reads.push(read(&tickets, batch));
            }
        }
    }
    while reads.next().await.is_some() {}
}

/// One read for the whole batch; every asker gets its own ticket, or the read's error.
async fn read<T: TicketRepository>(tickets: &T, batch: Vec<(TicketId, Reply)>) {
    metrics::histogram!("coupon_result_read_batch_size").record(batch.len() as f64);
    let ids: Vec<TicketId> = batch.iter().map(|(id, _)| *id).collect();
    match tickets.find_tickets(&ids).await {
        Ok(found) => {
            // Two polls of one ticket may share a batch: each gets its own copy.
            let found: HashMap<TicketId, FoundTicket> = found
                .into_iter()
                .map(|ticket| (ticket.0.ticket_id, ticket))
                .collect();
            for (id, reply) in batch {
                // The asker may have gone (its request dropped): nothing to tell it.
                let _ = reply.send(Ok(found.get(&id).cloned()));
            }
        }
        Err(error) => {
            for (_, reply) in batch {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A store that knows every even-numbered ticket and counts its reads; each read
    /// takes a moment, so asks that arrive meanwhile must share the next read.
    #[derive(Clone, Default)]
    struct CountingStore {
        reads: Arc<AtomicUsize>,
    }

    impl TicketRepository for CountingStore {
        async fn find_tickets(&self, ids: &[TicketId]) -> Result<Vec<FoundTicket>, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok(ids
                .iter()
                .filter(|id| id.as_uuid().as_u128() % 2 == 0)
                .map(|id| found(*id))
                .collect())
        }
    }

    fn found(id: TicketId) -> FoundTicket {
        use crate::domain::{CampaignId, IssueStatus, LogPosition, TicketResult, UserId};
        let result = TicketResult {
            ticket_id: id,
            campaign_id: CampaignId::from_uuid(uuid::Uuid::nil()),
            user_id: UserId::from_stored("u").unwrap_or_else(|e| panic!("{e}")),
            status: IssueStatus::SoldOut,
            coupon_code: None,
            position: LogPosition {
                partition: 0,
                offset: 0,
            },
        };
        (result, None)
    }

    #[tokio::test]
    async fn many_asks_share_few_reads_and_each_gets_its_own_ticket() {
        let store = CountingStore::default();
        let reads = Arc::new(TicketReads::start(store.clone()));
        let asks: Vec<_> = (0..1000u128)
            .map(|n| {
                let reads = Arc::clone(&reads);
                let id = TicketId::from_uuid(uuid::Uuid::from_u128(n));
                tokio::spawn(async move { (id, reads.find(id).await) })
            })
            .collect();
        for ask in asks {
            let (id, answer) = ask.await.unwrap_or_else(|e| panic!("{e}"));
            let answer = answer.unwrap_or_else(|e| panic!("{e}"));
            let even = id.as_uuid().as_u128() % 2 == 0;
            assert_eq!(
                answer.map(|(result, _)| result.ticket_id),
                even.then_some(id)
            );
        }
        // Two polls of one decided ticket in one batch: both get it.
        let twice = TicketId::from_uuid(uuid::Uuid::from_u128(2));
        let (a, b) = tokio::join!(reads.find(twice), reads.find(twice));
        for answer in [a, b] {
            let answer = answer.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(answer.map(|(result, _)| result.ticket_id), Some(twice));
        }
        let store_reads = store.reads.load(Ordering::SeqCst);
        assert!(
            store_reads <= 1000 / MAX_BATCH + IN_FLIGHT + 2,
            "1,000 asks took {store_reads} reads"
        );
    }
}
