//! Adapters: storage, logs, configuration. The only layer that differs between the
//! embedded mode (SQLite + the embedded log) and the distributed one (PostgreSQL + Kafka).

pub mod data_dir;
pub mod embedded_log;
pub mod event_codec;
pub mod kafka;
pub mod key_fingerprint;
pub mod metrics;
pub mod postgres;
pub mod secret_file;
pub mod sql_error;
pub mod sql_values;
pub mod sqlite;
pub mod telemetry;
