//! Apache Kafka as the issue log of the distributed mode. One topic; records keyed by
//! campaign id, so a campaign lives in one partition and is decided in its order. The
//! topic uses `LogAppendTime`: the partition leader's clock stamps every record, and
//! that one clock decides whether a request came before a campaign's start. `log`
//! appends (the producer side); `group` and `partition` are the consumer side's
//! mechanics, driven by `interfaces::log_worker::kafka`.

mod group;
mod log;
mod partition;
mod recent_appends;
mod replay;
mod statistics;

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use crate::infra::log_binding;

pub use group::{GroupEvent, GroupMember, WorkerSettings};
pub use log::{AppendSettings, KafkaLog};
pub use partition::{FeedBatch, Fetched, PartitionFeed};
pub use replay::KafkaReplay;

/// Where the log lives and how its topic is made.
#[derive(Debug, Clone)]
pub struct TopicSettings {
    pub brokers: String,
    pub topic: String,
    /// Used only when the topic does not exist yet.
    pub partitions: i32,
    /// Copies of each record, when the topic is created; `None`: see [`Replication`].
    pub replication_factor: Option<i32>,
    /// Copies that must hold a record before it is acknowledged, when the topic is
    /// created; `None`: see [`Replication`].
    pub min_insync_replicas: Option<i32>,
}

/// How a new topic is replicated. Unset values follow the cluster: on three brokers or
/// more, 3 copies of which 2 must hold a record before the producer (acks=all) is told
/// it is written, so one broker can die without losing an acknowledged ticket and
/// writes go on; on fewer brokers, 1 copy (nothing to replicate to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    pub factor: i32,
    pub min_insync: i32,
}

impl Replication {
    pub fn for_cluster(
        brokers: usize,
        factor: Option<i32>,
        min_insync: Option<i32>,
    ) -> Result<Self, KafkaSetupError> {
        let factor = factor.unwrap_or(if brokers >= 3 { 3 } else { 1 });
        let min_insync = min_insync.unwrap_or(if factor >= 3 { 2 } else { 1 });
        if !(1..=factor).contains(&min_insync) {
            return Err(KafkaSetupError::Replication(format!(
                "--min-insync-replicas {min_insync} must be between 1 and the replication factor {factor}"
            )));
        }
        if usize::try_from(factor).is_ok_and(|f| f > brokers) {
            return Err(KafkaSetupError::Replication(format!(
                "--replication-factor {factor} needs {factor} brokers; the cluster has {brokers}"
            )));
        }
        Ok(Self { factor, min_insync })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("kafka client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("cannot create topic {topic}: {code}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("the Kafka cluster at {brokers} did not say its cluster id within 10 s")]
    NoClusterId { brokers: String },
    #[error("the Kafka cluster at {brokers} did not list its brokers within 10 s")]
    NoBrokers { brokers: String },
    #[error("topic replication: {0}")]
    Replication(String),
}

/// Creates the topic if it is missing: infinite retention (the log is the source of
/// truth, a rebuild replays it from the start), broker-side append timestamps, and
/// replicated as [`Replication`] says, with no unclean leader election (a replica that
/// missed acknowledged records never becomes leader).
pub async fn ensure_topic(settings: &TopicSettings) -> Result<(), KafkaSetupError> {
    let brokers = broker_count(&settings.brokers).await?;
    let admin: AdminClient<DefaultClientContext> = client_config(&settings.brokers).create()?;
    let replication = Replication::for_cluster(
        brokers,
        settings.replication_factor,
        settings.min_insync_replicas,
    )?;
    let min_insync = replication.min_insync.to_string();
    let topic = NewTopic::new(
        &settings.topic,
        settings.partitions,
        TopicReplication::Fixed(replication.factor),
    )
    .set("message.timestamp.type", "LogAppendTime")
    .set("retention.ms", "-1")
    .set("retention.bytes", "-1")
    .set("min.insync.replicas", &min_insync)
    .set("unclean.leader.election.enable", "false");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics([&topic], &options).await? {
        match result {
            Ok(_) => tracing::info!(
                topic = %settings.topic,
                partitions = settings.partitions,
                replication_factor = replication.factor,
                min_insync_replicas = replication.min_insync,
                brokers,
                "created topic"
            ),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaSetupError::CreateTopic { topic, code }),
        }
    }
    Ok(())
}

/// The topic's `min.insync.replicas` as the brokers apply it (the topic's own setting
/// or the cluster's default): the in-sync replicas a partition needs to take a record.
pub async fn min_insync_replicas(settings: &TopicSettings) -> Result<usize, KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> = client_config(&settings.brokers).create()?;
    let topic = ResourceSpecifier::Topic(&settings.topic);
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let described = admin.describe_configs([&topic], &options).await?;
    let value = described
        .into_iter()
        .find_map(Result::ok)
        .and_then(|config| config.get("min.insync.replicas")?.value.clone());
    Ok(value.and_then(|v| v.parse().ok()).unwrap_or(1))
}

/// How many brokers the cluster has now (a metadata request).
async fn broker_count(brokers: &str) -> Result<usize, KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers).create()?;
    // Blocking in librdkafka, so off the runtime's threads.
    tokio::task::spawn_blocking(move || {
        admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))
            .map(|m| m.brokers().len())
    })
    .await
    .ok()
    .and_then(Result::ok)
    .ok_or_else(|| KafkaSetupError::NoBrokers {
        brokers: brokers.to_owned(),
    })
}

const METADATA_REFRESH_MS: &str = "10000";

/// The topic as the data names it (`infra::log_binding`): its name and its cluster's id.
pub async fn log_identity(settings: &TopicSettings) -> Result<String, KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> = client_config(&settings.brokers).create()?;
    // A metadata request: blocking in librdkafka, so off the runtime's threads.
    let cluster = tokio::task::spawn_blocking(move || {
        admin.inner().fetch_cluster_id(Duration::from_secs(10))
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| KafkaSetupError::NoClusterId {
        brokers: settings.brokers.clone(),
    })?;
    Ok(log_binding::kafka_topic(&settings.topic, &cluster))
}

fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        // Partitions added to the topic are seen within this (librdkafka's default is 5
        // minutes): producers then spread new campaigns over them, and the consumer group
        // rebalances to assign them.
        .set("topic.metadata.refresh.interval.ms", METADATA_REFRESH_MS)
        // librdkafka logs through its own channel; keep it for warnings and errors.
        .set("log_level", "4");
    config
}

#[cfg(test)]
mod tests {
    use super::Replication;

    fn chosen(brokers: usize, factor: Option<i32>, min_insync: Option<i32>) -> (i32, i32) {
        let r = Replication::for_cluster(brokers, factor, min_insync).expect("valid");
        (r.factor, r.min_insync)
    }

    #[test]
    fn the_defaults_follow_the_cluster() {
        assert_eq!(chosen(1, None, None), (1, 1));
        assert_eq!(chosen(2, None, None), (1, 1));
        assert_eq!(chosen(3, None, None), (3, 2));
        assert_eq!(chosen(5, None, None), (3, 2));
        assert_eq!(chosen(5, Some(5), None), (5, 2));
        assert_eq!(chosen(3, Some(3), Some(3)), (3, 3));
    }

    #[test]
    fn impossible_settings_are_refused_naming_the_flag() {
        let error = |b, f, m| {
            Replication::for_cluster(b, f, m)
                .expect_err("refused")
                .to_string()
        };
        assert!(error(1, Some(3), None).contains("--replication-factor 3 needs 3 brokers"));
        assert!(error(3, None, Some(4)).contains("--min-insync-replicas 4"));
        assert!(error(1, None, Some(2)).contains("replication factor 1"));
    }
}
