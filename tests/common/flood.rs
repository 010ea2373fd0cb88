//! Many concurrent users pressing the button at once, spread over API nodes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use super::connect::{Client, RpcError};

#[derive(Debug, Default)]
pub struct Outcome {
    /// (ticket id, user id) of every accepted request.
    pub accepted: Vec<(String, String)>,
    /// Refusals, by reason (or code when there is none).
    pub refused: Vec<RpcError>,
}

/// Sends one IssueCoupon per user, round-robin over `clients`, at most `concurrency`
/// in flight; `progress` counts accepted requests as they come.
pub async fn flood(
    clients: &[Client],
    campaign_id: &str,
    users: Vec<String>,
    concurrency: usize,
    progress: Arc<AtomicUsize>,
) -> Outcome {
    let gate = Arc::new(Semaphore::new(concurrency));
    let mut tasks = Vec::with_capacity(users.len());
    for (i, user) in users.into_iter().enumerate() {
        let client = clients[i % clients.len()].clone();
        let (gate, id, progress) = (gate.clone(), campaign_id.to_owned(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore");
            let result = client.issue(&id, &user).await;
            if result.is_ok() {
                progress.fetch_add(1, Ordering::Relaxed);
            }
            (user, result)
        }));
    }
    let mut outcome = Outcome::default();
    for task in tasks {
        let (user, result) = task.await.expect("flood task");
        match result {
            Ok(r) => outcome
                .accepted
                .push((r["ticketId"].as_str().expect("ticket").to_owned(), user)),
            Err(e) => outcome.refused.push(e),
        }
    }
    outcome
}
