//! How long a GetIssueResult may wait: what the client asked, within the service's cap,
//! and ending a little before the client's deadline (`connect-timeout-ms`,
//! `grpc-timeout`), so the PENDING answer arrives before the client gives up. The
//! node's own request timeout does not count the wait (`limits::Admission`).

use std::time::{Duration, Instant};

use connectrpc::{ConnectError, RequestContext};

use super::errors::invalid_field;

/// The longest wait a client may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// A waiting request answers this long before its nearest deadline.
const ANSWER_MARGIN: Duration = Duration::from_millis(100);

/// The wait to honour for `wait_ms` (zero: answer now).
pub fn wait(ctx: &RequestContext, wait_ms: i32) -> Result<Duration, ConnectError> {
    let asked = u64::try_from(wait_ms)
        .map_err(|_| invalid_field("wait_ms", "must not be negative (0 answers at once)"))?;
    let asked = Duration::from_millis(asked).min(MAX_WAIT);
    if asked.is_zero() {
        return Ok(asked);
    }
    Ok(match ctx.deadline() {
        Some(deadline) => asked.min(until(deadline).saturating_sub(ANSWER_MARGIN)),
        None => asked,
    })
}

fn until(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(deadline: Option<Duration>) -> RequestContext {
        RequestContext::new(http::HeaderMap::new())
            .with_deadline(deadline.map(|d| Instant::now() + d))
    }

    #[test]
    fn the_wait_is_capped_and_ends_before_the_clients_deadline() {
        assert_eq!(wait(&ctx(None), 0).ok(), Some(Duration::ZERO));
        assert_eq!(wait(&ctx(None), 60_000).ok(), Some(MAX_WAIT));
        let before_deadline = wait(&ctx(Some(Duration::from_secs(2))), 10_000).expect("valid");
        assert!(
            before_deadline <= Duration::from_millis(1_900),
            "{before_deadline:?}"
        );
        assert!(
            before_deadline >= Duration::from_millis(1_800),
            "{before_deadline:?}"
        );
        let too_close = wait(&ctx(Some(Duration::from_millis(50))), 10_000).expect("valid");
        assert_eq!(too_close, Duration::ZERO);
        assert!(wait(&ctx(None), -1).is_err());
    }
}
