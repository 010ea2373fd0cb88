//! The issuing workers: inbound adapters that pull records from a log and drive the
//! `DecideIssueRequests` use case with them, as `rpc` drives the other use cases with
//! HTTP requests. The log's own mechanics (reading the embedded log's table, Kafka's
//! groups, queues and seeks) stay in `infra`; what to do when a batch does not commit
//! is decided once, in `retry`.

pub mod embedded;
pub mod kafka;
mod progress;
mod retry;
