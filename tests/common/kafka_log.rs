//! Reading a topic back as the model-based checks need it: every record of one
//! campaign, in the order its partition holds them, as `(event, appended)`.

use std::time::Duration;

use chrono::DateTime;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, Timestamp};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use coupon::domain::log::Appended;
use coupon::domain::{CampaignId, LogEvent, LogPosition};
use coupon::infra::event_codec;

/// The campaign's records, renumbered as partition 0 (the model's one partition),
/// offsets as the broker gave them.
pub fn campaign_records(
    brokers: &str,
    topic: &str,
    campaign: CampaignId,
) -> Vec<(LogEvent, Appended)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}", uuid::Uuid::now_v7()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut records = Vec::new();
    for partition in partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .expect("watermarks");
        if high == 0 {
            continue;
        }
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("assign");
        consumer.assign(&assignment).expect("assign");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "partition {partition} not read to {high}"
            );
            let Some(message) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let message = message.expect("record");
            let event = event_codec::decode(message.payload().unwrap_or_default()).expect("decode");
            let ms = match message.timestamp() {
                Timestamp::LogAppendTime(ms) => ms,
                other => panic!("a record without its append time: {other:?}"),
            };
            if event.campaign_id() == campaign {
                let appended = Appended {
                    position: LogPosition {
                        partition: 0,
                        offset: u64::try_from(message.offset()).expect("offset"),
                    },
                    appended_at: DateTime::from_timestamp_millis(ms).expect("time"),
                };
                records.push((event, appended));
            }
            if message.offset() + 1 >= high {
                break;
            }
        }
    }
    records
}

/// The partition's leader and its replicas, by broker (node) id.
pub fn leader_and_replicas(brokers: &str, topic: &str, partition: i32) -> (i32, Vec<i32>) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("metadata client");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let found = metadata.topics()[0]
        .partitions()
        .iter()
        .find(|p| p.id() == partition)
        .expect("the partition");
    (found.leader(), found.replicas().to_vec())
}
