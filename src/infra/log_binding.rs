//! Which log a store's decisions belong to, recorded with the data (the `meta` table of
//! PostgreSQL, or of the embedded state file) on first use. A store keeps every
//! partition's decided offset and each campaign's log position; read against another log
//! (another topic, the same topic name on another cluster, another embedded log file) the
//! offsets skip that log's first records and its campaigns' positions collide with the
//! stored ones, so a start against another log is refused.

/// The row of the `meta` table that holds the log's identity.
pub const META_NAME: &str = "log_identity";

/// An embedded log file as the data names it: an id made when the file was first opened,
/// kept in the file.
pub fn embedded_log(id: uuid::Uuid) -> String {
    format!("embedded log {id}")
}

/// A Kafka topic as the data names it: the name alone is not enough, a topic of the same
/// name on another cluster is another log.
pub fn kafka_topic(topic: &str, cluster_id: &str) -> String {
    format!("Kafka topic {topic} of cluster {cluster_id}")
}

#[derive(Debug, thiserror::Error)]
#[error("{holder} holds the decisions of {recorded}, but the log is {current}: {remedy}")]
pub struct LogMismatch {
    pub holder: String,
    pub recorded: String,
    pub current: String,
    pub remedy: &'static str,
}

/// Refuses the log `current` when `holder` recorded another one. Nothing recorded
/// passes: the caller records it.
pub fn check(
    recorded: Option<&str>,
    current: &str,
    holder: &str,
    remedy: &'static str,
) -> Result<(), LogMismatch> {
    match recorded {
        Some(recorded) if recorded != current => Err(LogMismatch {
            holder: holder.to_owned(),
            recorded: recorded.to_owned(),
            current: current.to_owned(),
            remedy,
        }),
        _ => Ok(()),
    }
}

/// Says that `holder` now records `log`; on data of an earlier version (`holds_data`),
/// that it adopted the log it was started with.
pub fn log_recorded(holder: &str, log: &str, holds_data: bool) {
    if holds_data {
        tracing::info!(%holder, %log,
            "no log was recorded (data of an earlier version): bound to this node's log");
    } else {
        tracing::info!(%holder, %log, "bound to its log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_another_recorded_log_is_refused() {
        let topic_a = kafka_topic("a", "c1");
        assert!(check(None, &topic_a, "db", "fix it").is_ok());
        assert!(check(Some(&topic_a), &topic_a, "db", "fix it").is_ok());
        let other_cluster = kafka_topic("a", "c2");
        let message = check(Some(&topic_a), &other_cluster, "db", "fix it")
            .map_err(|e| e.to_string())
            .err()
            .unwrap_or_default();
        for part in [
            "db",
            "topic a of cluster c1",
            "topic a of cluster c2",
            "fix it",
        ] {
            assert!(message.contains(part), "{message}");
        }
    }
}
