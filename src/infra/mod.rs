//! Outbound adapters: storage, logs, secrets, telemetry. With the log workers of
//! `interfaces::log_worker`, the only code that differs between the embedded mode
//! (SQLite + the embedded log) and the distributed one (PostgreSQL + Kafka). Nothing
//! here calls a use case: the logs' mechanics are here, the loops that drive
//! `DecideIssueRequests` with them are inbound adapters.

pub mod data_dir;
pub mod embedded_log;
pub mod event_codec;
pub mod kafka;
pub mod key_fingerprint;
pub mod log_binding;
pub mod metrics;
pub mod postgres;
pub mod secret_file;
pub mod sql_error;
pub mod sql_values;
pub mod sqlite;
pub mod telemetry;
