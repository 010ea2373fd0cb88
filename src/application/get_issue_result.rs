//! Requirement: a user learns the outcome of a ticket (PENDING until decided).

use crate::domain::ports::{StoreError, TicketRepository};
use crate::domain::{Coupon, IssueStatus, TicketId, TicketSeal};

pub struct Input {
    /// The sealed ticket id as `IssueCoupon` returned it.
    pub ticket: String,
}

pub enum Output {
    Pending {
        ticket_id: TicketId,
    },
    Decided {
        ticket_id: TicketId,
        status: IssueStatus,
        coupon: Option<Coupon>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ticket not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct GetIssueResult<T> {
    tickets: T,
    seal: TicketSeal,
}

impl<T: TicketRepository> GetIssueResult<T> {
    pub fn new(tickets: T, seal: TicketSeal) -> Self {
        Self { tickets, seal }
    }

    pub async fn execute(&self, input: Input) -> Result<Output, Error> {
        // An unsealed ticket was never handed out: answered without touching storage.
        let ticket_id = self.seal.open(&input.ticket).map_err(|_| Error::NotFound)?;
        Ok(match self.tickets.find_ticket(ticket_id).await? {
            None => Output::Pending { ticket_id },
            Some((result, coupon)) => Output::Decided {
                ticket_id,
                status: result.status,
                coupon,
            },
        })
    }
}
