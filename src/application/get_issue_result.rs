//! Requirement: a user learns the outcome of a ticket (PENDING until decided), at once
//! or by waiting for it (long-poll).
//!
//! Where an answer comes from, cheapest first: a forged ticket fails its seal (no
//! read); a final result this node already read is in its cache (final results never
//! change); a ticket past its partition's decided offset is PENDING by arithmetic
//! (`DecidedOffsets`); only a ticket decided but not cached, or one whose position this
//! node cannot place (first-format tickets, or before the first published offset),
//! costs a store read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::decided_offsets::{DEFAULT_RETRY_AFTER, DecidedOffsets, Progress, WaitEnd};
use super::ticket_reads::TicketReads;
use crate::domain::ports::{StoreError, TicketRepository};
use crate::domain::{Coupon, IssueStatus, LogPosition, OpenedTicket, TicketId, TicketSeal};

pub struct Input {
    /// The sealed ticket id as `IssueCoupon` returned it.
    pub ticket: String,
    /// How long to wait for a final status (zero: answer now); the caller caps it.
    pub wait: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Pending {
        ticket_id: TicketId,
        /// Undecided records of the partition ahead of the ticket, when known.
        position: Option<u64>,
        /// A suggested pause before polling again without a wait.
        retry_after: Duration,
    },
    Decided(Decided),
}

/// A final result: immutable, so it may be cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub ticket_id: TicketId,
    pub status: IssueStatus,
    pub coupon: Option<Coupon>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ticket not found")]
    NotFound,
    /// As many long-polls wait on this node as it allows.
    #[error("too many long-polls waiting")]
    TooManyWaiting,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Settings {
    /// Final results kept in memory at most.
    pub cache_entries: usize,
    /// Long-polls waiting at once at most.
    pub max_waiting: usize,
}

pub struct GetIssueResult {
    tickets: TicketReads,
    seal: TicketSeal,
    decided: DecidedOffsets,
    cache: quick_cache::sync::Cache<TicketId, Arc<Decided>>,
    waiting: Semaphore,
}

/// A long-poll holding one of the waiting places, counted in the gauge
/// `coupon_long_polls_waiting` until it ends (also when its request is dropped).
struct Waiting<'a> {
    _place: tokio::sync::SemaphorePermit<'a>,
}

impl<'a> Waiting<'a> {
    fn begin(places: &'a Semaphore) -> Result<Self, Error> {
        let permit = places.try_acquire().map_err(|_| Error::TooManyWaiting)?;
        metrics::gauge!("coupon_long_polls_waiting").increment(1.0);
        Ok(Self { _place: permit })
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        metrics::gauge!("coupon_long_polls_waiting").decrement(1.0);
    }
}

/// Where an answer came from, for `coupon_result_reads_total{source}`.
#[derive(Clone, Copy)]
enum Source {
    Memory,
    Cache,
    Store,
}

fn count(source: Source) {
    let source = match source {
        Source::Memory => "memory",
        Source::Cache => "cache",
        Source::Store => "store",
    };
    metrics::counter!("coupon_result_reads_total", "source" => source).increment(1);
}

impl GetIssueResult {
    /// Starts the store reader on the current tokio runtime (`TicketReads`).
    pub fn new<T: TicketRepository>(
        tickets: T,
        seal: TicketSeal,
        decided: DecidedOffsets,
        settings: Settings,
    ) -> Self {
        Self {
            tickets: TicketReads::start(tickets),
            seal,
            decided,
            cache: quick_cache::sync::Cache::new(settings.cache_entries.max(1)),
            waiting: Semaphore::new(settings.max_waiting),
        }
    }

    pub async fn execute(&self, input: Input) -> Result<Output, Error> {
        // An unsealed ticket was never handed out: answered without touching storage.
        let ticket = self.seal.open(&input.ticket).map_err(|_| Error::NotFound)?;
        let answer = self.answer_now(ticket).await?;
        // First-format tickets carry no position to wait on: answered at once.
        let Some(position) = ticket.position else {
            return Ok(answer);
        };
        if input.wait.is_zero() || matches!(answer, Output::Decided(_)) {
            return Ok(answer);
        }
        let _waiting = Waiting::begin(&self.waiting)?;
        let until = Instant::now() + input.wait;
        match self.decided.wait(position, until).await {
            // The store holds it now; should it not (a rewound store), PENDING stands.
            WaitEnd::Decided { learned } => {
                let answer = self.answer_now(ticket).await;
                // From the node learning of the decision to the answer: the poll path's
                // own share of a long-poll's ticket-to-final latency.
                metrics::histogram!("coupon_long_poll_wake_to_answer_seconds")
                    .record(learned.elapsed().as_secs_f64());
                answer
            }
            WaitEnd::TimedOut | WaitEnd::Closing => Ok(self.pending(ticket.id, position)),
        }
    }

    async fn answer_now(&self, ticket: OpenedTicket) -> Result<Output, Error> {
        if let Some(decided) = self.cache.get(&ticket.id) {
            count(Source::Cache);
            return Ok(Output::Decided(Decided::clone(&decided)));
        }
        let progress = ticket.position.map(|at| self.decided.progress(at));
        if let Some(pending @ Progress::Pending { .. }) = progress {
            count(Source::Memory);
            return Ok(pending_answer(ticket.id, pending));
        }
        count(Source::Store);
        match self.tickets.find(ticket.id).await? {
            Some((result, coupon)) => {
                let decided = Decided {
                    ticket_id: ticket.id,
                    status: result.status,
                    coupon,
                };
                self.cache.insert(ticket.id, Arc::new(decided.clone()));
                Ok(Output::Decided(decided))
            }
            // Progress read again: the partition may have moved during the read.
            None => Ok(pending_answer(
                ticket.id,
                ticket
                    .position
                    .map_or(Progress::Unknown, |at| self.decided.progress(at)),
            )),
        }
    }

    fn pending(&self, ticket_id: TicketId, at: LogPosition) -> Output {
        pending_answer(ticket_id, self.decided.progress(at))
    }
}

/// A PENDING answer with what `progress` says of the ticket's place.
fn pending_answer(ticket_id: TicketId, progress: Progress) -> Output {
    let (position, retry_after) = match progress {
        Progress::Pending { ahead, retry_after } => (Some(ahead), retry_after),
        // Decided but not in the store, or not placed: it is next or close.
        Progress::Decided | Progress::Unknown => (None, DEFAULT_RETRY_AFTER),
    };
    Output::Pending {
        ticket_id,
        position,
        retry_after,
    }
}
