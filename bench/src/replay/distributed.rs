//! The distributed mode's replay figures: the topic written with `KafkaLog`, the built
//! `consumer` binary draining, rebuilding and auditing it against PostgreSQL.

use std::path::Path;
use std::time::Duration;

use coupon::domain::SecretKey;
use coupon::infra::kafka::{self, AppendSettings, KafkaLog, TopicSettings};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use super::process::{self, Service};
use super::{Figures, Workload, timed, until_decided};

const IN_FLIGHT: usize = 8_192;
const DRAIN_LIMIT: Duration = Duration::from_secs(1_800);
const PARTITIONS: i32 = 16;

/// Where the services are: `KAFKA_BROKERS`, and `DATABASE_URL` of a role that may create
/// databases (`scripts/services.sh up` prints both).
pub struct Services {
    pub brokers: String,
    pub database_url: String,
}

pub async fn run(dir: &Path, services: &Services, workload: Workload) -> Figures {
    let id = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
    let topic = TopicSettings {
        brokers: services.brokers.clone(),
        topic: format!("coupon-replay-{id}"),
        partitions: PARTITIONS,
        replication_factor: None,
        min_insync_replicas: None,
    };
    kafka::ensure_topic(&topic).await.expect("topic");
    let secret = SecretKey::generate();
    let append = AppendSettings {
        ack_timeout: Duration::from_secs(30),
        linger: Duration::from_millis(5),
        replicas_needed: 1,
    };
    let log = KafkaLog::new(&topic, append, &secret.fingerprint()).expect("producer");
    let drained_db = create_database(&services.database_url, &format!("coupon_replay_{id}")).await;
    let node = Node {
        dir,
        topic: &topic,
        secret: &secret,
    };
    let mut figures = Figures {
        mode: "distributed",
        records: workload.requests,
        ..Figures::default()
    };

    let campaigns = super::create_campaigns(&log, workload).await;
    let (worker, _) = node.consumer(&drained_db, "drain");
    until_decided(u64::from(workload.campaigns), DRAIN_LIMIT, || {
        decided(&drained_db)
    })
    .await;
    worker.stop().await;

    eprintln!("appending {} requests to the topic", workload.requests);
    ((), figures.append_s) = timed(super::append_requests(
        &log, workload, &campaigns, IN_FLIGHT,
    ))
    .await;
    let end = u64::from(workload.campaigns) + workload.requests;

    eprintln!("draining the backlog with one worker");
    let (worker, metrics) = node.consumer(&drained_db, "drain");
    ((), figures.drain_s) = timed(until_decided(end, DRAIN_LIMIT, || decided(&drained_db))).await;
    figures.drain_phases = process::decision_phases(&metrics).await;
    worker.stop().await;

    eprintln!("auditing");
    let args = node.common_args(&drained_db);
    let (identical, audit_s) = timed(process::audit(&process::binary("consumer"), &args)).await;
    assert!(identical, "audit found differences");
    figures.audit_s = audit_s;

    eprintln!("rebuilding into an empty database");
    let empty = create_database(&services.database_url, &format!("coupon_rebuild_{id}")).await;
    let (worker, _) = node.consumer(&empty, "rebuild");
    ((), figures.rebuild_s) = timed(until_decided(end, DRAIN_LIMIT, || decided(&empty))).await;
    worker.stop().await;

    eprintln!("bulk-inserting the same rows");
    let bulk_db = create_database(&services.database_url, &format!("coupon_bulk_{id}")).await;
    figures.bulk_insert_s = super::bulk::postgres(&drained_db, &bulk_db).await;
    for url in [&drained_db, &empty, &bulk_db] {
        drop_database(&services.database_url, url).await;
    }
    figures
}

struct Node<'a> {
    dir: &'a Path,
    topic: &'a TopicSettings,
    secret: &'a SecretKey,
}

impl Node<'_> {
    fn common_args(&self, database_url: &str) -> Vec<String> {
        [
            "--kafka-brokers",
            &self.topic.brokers,
            "--database-url",
            database_url,
            "--topic",
            &self.topic.topic,
            "--secret-key",
            &self.secret.to_hex(),
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// A worker of group `group` on `database_url`, and its metrics URL.
    fn consumer(&self, database_url: &str, group: &str) -> (Service, String) {
        let port = process::free_port();
        let mut args = self.common_args(database_url);
        args.extend([
            "--group".to_owned(),
            format!("{}-{group}", self.topic.topic),
            "--metrics-listen".into(),
            format!("127.0.0.1:{port}"),
        ]);
        let log = self.dir.join(format!("consumer-{group}.log"));
        let worker = Service::spawn(&process::binary("consumer"), &args, &log);
        (worker, format!("http://127.0.0.1:{port}/metrics"))
    }
}

async fn decided(database_url: &str) -> u64 {
    let Ok(mut conn) = PgConnection::connect(database_url).await else {
        return 0;
    };
    let sum: Result<Option<i64>, _> =
        sqlx::query_scalar("SELECT SUM(next_offset)::bigint FROM partition_offsets")
            .fetch_one(&mut conn)
            .await;
    let _ = conn.close().await;
    sum.ok().flatten().map_or(0, |n| n as u64)
}

/// A new empty database beside `server_url`'s; its URL.
async fn create_database(server_url: &str, name: &str) -> String {
    let mut conn = PgConnection::connect(server_url).await.expect("connect");
    // The name is ours (a fixed prefix and hex digits).
    conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create database");
    let _ = conn.close().await;
    with_database(server_url, name)
}

async fn drop_database(server_url: &str, url: &str) {
    let Some(name) = url.rsplit('/').next() else {
        return;
    };
    let Ok(mut conn) = PgConnection::connect(server_url).await else {
        return;
    };
    let _ = conn
        .execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await;
}

fn with_database(server_url: &str, name: &str) -> String {
    match server_url.rfind('/') {
        Some(slash) => format!("{}/{name}", &server_url[..slash]),
        None => format!("{server_url}/{name}"),
    }
}
