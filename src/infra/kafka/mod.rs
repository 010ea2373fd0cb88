//! Apache Kafka as the issue log of the distributed mode. One topic; records keyed by
//! campaign id, so a campaign lives in one partition and is decided in its order. The
//! topic uses `LogAppendTime`: the partition leader's clock stamps every record, and
//! that one clock decides whether a request came before a campaign's start. `log`
//! appends (the producer side); `group` and `partition` are the consumer side's
//! mechanics, driven by `interfaces::log_worker::kafka`.

mod group;
mod log;
mod partition;
mod replay;
mod statistics;

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
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
    pub replication_factor: i32,
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
}

/// Creates the topic if it is missing: infinite retention (the log is the source of
/// truth, a rebuild replays it from the start) and broker-side append timestamps.
pub async fn ensure_topic(settings: &TopicSettings) -> Result<(), KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .create()?;
    let topic = NewTopic::new(
        &settings.topic,
        settings.partitions,
        TopicReplication::Fixed(settings.replication_factor),
    )
    .set("message.timestamp.type", "LogAppendTime")
    .set("retention.ms", "-1")
    .set("retention.bytes", "-1");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics([&topic], &options).await? {
        match result {
            Ok(_) => {
                tracing::info!(topic = %settings.topic, partitions = settings.partitions, "created topic")
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaSetupError::CreateTopic { topic, code }),
        }
    }
    Ok(())
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
