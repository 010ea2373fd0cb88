//! Every distributed node checks the key fingerprint recorded in PostgreSQL (issue 20:
//! "a consumer with another secret key runs silently"; issue 11 defect 4): the first
//! nodes record their key's, and a consumer or producer started with another key on the
//! same database exits at once with a clear error, while the deployment keeps serving.
//! The topic's campaign records carry the fingerprint too: a worker rebuilding from the
//! log with another key into an empty database stops before deciding anything.

mod common;

use std::time::Duration;

use common::cluster::{Cluster, binary};
use common::pg;
use common::process::{Proc, free_port};
use sqlx::Connection;

/// Asserts that the process exits non-zero within a minute, saying why in its log.
async fn assert_refused(proc: Proc, cluster: &Cluster, name: &str) {
    let log = proc
        .refused(Duration::from_secs(60), &cluster.log_path(name))
        .await;
    assert!(
        log.contains("does not match")
            && log.contains("PostgreSQL database coupon_test_")
            && log.contains("fingerprint")
            && log.contains("restore"),
        "{name} says which database and what to do:\n{log}"
    );
}

/// The same deployment (database, topic, group) as seen by a node given another key.
fn with_other_key(cluster: &Cluster) -> Cluster {
    Cluster {
        dir: tempfile::tempdir().expect("dir"),
        brokers: cluster.brokers.clone(),
        database_url: cluster.database_url.clone(),
        topic: cluster.topic.clone(),
        group: cluster.group.clone(),
        secret_hex: hex::encode(rand::random::<[u8; 32]>()),
        partitions: cluster.partitions,
    }
}

/// A producer that is not waited for (it is expected to refuse to start).
fn spawn_producer(cluster: &Cluster, name: &str) -> Proc {
    let listen = format!("127.0.0.1:{}", free_port());
    let partitions = cluster.partitions.to_string();
    let args = [
        "--listen",
        &listen,
        "--kafka-brokers",
        &cluster.brokers,
        "--database-url",
        &cluster.database_url,
        "--topic",
        &cluster.topic,
        "--partitions",
        &partitions,
        "--secret-key",
        &cluster.secret_hex,
    ];
    let log = cluster.log_path(name);
    Proc::spawn(binary("producer").to_str().expect("utf8"), &args, &log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_another_key_than_the_deployments_refuse_to_start() {
    let Some(cluster) = Cluster::new(2).await else {
        return;
    };
    let producer = cluster.producer("producer", &[]).await;
    let mut consumer = cluster.consumer("consumer");
    let client = &producer.client;
    let (id, _, decided) = client.issued_in_new_campaign("keyed", "alice").await;

    let other = with_other_key(&cluster);
    assert_refused(other.consumer("other-consumer"), &other, "other-consumer").await;
    assert_refused(
        spawn_producer(&other, "other-producer"),
        &other,
        "other-producer",
    )
    .await;

    // The deployment never noticed; a node with its key still joins.
    assert!(consumer.child.try_wait().expect("try_wait").is_none());
    let second = cluster.producer("second-producer", &[]).await;
    let repeat = second.client.issue(&id, "alice").await.expect("issue")["ticketId"]
        .as_str()
        .expect("ticket")
        .to_owned();
    let repeat = second
        .client
        .await_one(&repeat, Duration::from_secs(60))
        .await;
    assert_eq!(repeat["status"], "ISSUE_STATUS_ALREADY_ISSUED", "{repeat}");
    assert_eq!(repeat["coupon"]["code"], decided["coupon"]["code"]);

    drop((producer, second, consumer));
    pg::drop_database(&cluster.database_url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_from_the_topic_with_another_key_decides_nothing() {
    let Some(cluster) = Cluster::new(1).await else {
        return;
    };
    let producer = cluster.producer("producer", &[]).await;
    let consumer = cluster.consumer("consumer");
    producer
        .client
        .issued_in_new_campaign("stamped", "bob")
        .await;

    // An empty database accepts any key; only the topic knows the deployment's.
    let empty = pg::fresh_database().await.expect("database");
    let other = with_other_key(&cluster);
    let rebuild = other.consumer_on("rebuild", &empty, "rebuild-group");
    let log = rebuild
        .refused(Duration::from_secs(60), &other.log_path("rebuild"))
        .await;
    assert!(
        log.contains("does not match")
            && log.contains(&format!(
                "campaign record at offset 0 of partition 0 of topic {}",
                cluster.topic
            ))
            && log.contains("restore"),
        "the rebuild says which record and what to do:\n{log}"
    );
    let mut conn = sqlx::PgConnection::connect(&empty).await.expect("connect");
    for table in ["campaigns", "ticket_results", "coupons"] {
        let rows: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&mut conn)
                .await
                .expect("count");
        assert_eq!(rows, 0, "{table} got rows decided with the wrong key");
    }
    let _ = conn.close().await;

    drop((producer, consumer));
    pg::drop_database(&empty).await;
    pg::drop_database(&cluster.database_url).await;
}
