//! Replaying the topic as an operator's tool: `consumer audit` against PostgreSQL while
//! producers and consumers run, on a tampered database, with the wrong key and against
//! another topic.

mod common;

use common::audit::{
    AuditRun, AuditedDrop, assert_exactly, assert_identical, audit, expected_differences,
    other_code, run,
};
use common::cluster::{Cluster, binary};
use common::pg;
use coupon::domain::IssueStatus;
use sqlx::{Connection, PgConnection};

/// `consumer audit` with the cluster's flags, some of them replaced by `(flag, value)`.
async fn audit_cluster(cluster: &Cluster, replaced: &[(&str, &str)]) -> AuditRun {
    let mut args = cluster.common_args(&cluster.database_url);
    for (flag, value) in replaced {
        let at = args
            .iter()
            .position(|a| a == flag)
            .expect("a flag of common_args");
        args[at + 1] = (*value).to_owned();
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    audit(&binary("consumer"), &args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_finds_a_running_deployment_identical_and_exactly_the_tampered_rows() {
    let Some(cluster) = Cluster::new(4).await else {
        return;
    };
    let producers = [
        cluster.producer("producer-1", &[]).await,
        cluster.producer("producer-2", &[]).await,
    ];
    let _consumer = cluster.consumer("consumer-1");
    let clients: Vec<_> = producers.iter().map(|p| p.client.clone()).collect();
    let drop = AuditedDrop::run(&clients).await;

    assert_identical(&audit_cluster(&cluster, &[]).await, &drop);

    let sold_out = drop.ticket_with("ISSUE_STATUS_SOLD_OUT");
    let mut db = PgConnection::connect(&cluster.database_url)
        .await
        .expect("connect");
    let campaign: uuid::Uuid = drop.campaign_id.parse().expect("uuid");
    let code_5: String =
        sqlx::query_scalar("SELECT code FROM coupons WHERE campaign_id = $1 AND ordinal = 5")
            .bind(campaign)
            .fetch_one(&mut db)
            .await
            .expect("coupon 5");
    let tampered = other_code(&code_5);
    for (sql, bind) in [
        (
            "UPDATE coupons SET code = $2 WHERE campaign_id = $1 AND ordinal = 5",
            Some(&tampered),
        ),
        (
            "DELETE FROM coupons WHERE campaign_id = $1 AND ordinal = 7",
            None,
        ),
    ] {
        let done = sqlx::query(sql)
            .bind(campaign)
            .bind(bind)
            .execute(&mut db)
            .await;
        assert_eq!(done.expect(sql).rows_affected(), 1, "{sql}");
    }
    let flipped = sqlx::query("UPDATE ticket_results SET status = $1 WHERE ticket_id = $2")
        .bind(IssueStatus::NotStarted.code())
        .bind(sold_out.parse::<uuid::Uuid>().expect("uuid"))
        .execute(&mut db)
        .await
        .expect("flip a status");
    assert_eq!(flipped.rows_affected(), 1);

    let tampered_run = audit_cluster(&cluster, &[]).await;
    let expected = expected_differences(&drop.campaign_id, &code_5, &tampered, &sold_out);
    assert_exactly(&tampered_run, &expected);

    // Another key cannot audit, nor can a topic the database was not decided from.
    let other_key = hex::encode(rand::random::<[u8; 32]>());
    let wrong_key = audit_cluster(&cluster, &[("--secret-key", &other_key)]).await;
    assert_eq!(wrong_key.code, Some(2), "{wrong_key:?}");
    assert!(wrong_key.stderr.contains("does not match"), "{wrong_key:?}");
    let other_topic = format!("{}-other", cluster.topic);
    let admin = coupon::infra::kafka::TopicSettings {
        brokers: cluster.brokers.clone(),
        topic: other_topic.clone(),
        partitions: 4,
        replication_factor: None,
        min_insync_replicas: None,
    };
    coupon::infra::kafka::ensure_topic(&admin)
        .await
        .expect("topic");
    let wrong_topic = audit_cluster(&cluster, &[("--topic", &other_topic)]).await;
    assert_eq!(wrong_topic.code, Some(2), "{wrong_topic:?}");
    // Refused by the database's record of its topic, before reading anything.
    assert!(
        wrong_topic
            .stderr
            .contains("holds the decisions of Kafka topic")
            && wrong_topic.stderr.contains(&other_topic),
        "{wrong_topic:?}"
    );
    pg::drop_database(&cluster.database_url).await;
}

/// Every row of the decision tables, in key order.
async fn dump_state(database_url: &str) -> Vec<String> {
    const TABLES: [&str; 4] = [
        "SELECT row_to_json(t)::text FROM (SELECT * FROM campaigns ORDER BY id) t",
        "SELECT row_to_json(t)::text FROM (SELECT * FROM coupons ORDER BY campaign_id, ordinal) t",
        "SELECT row_to_json(t)::text FROM (SELECT * FROM ticket_results ORDER BY ticket_id) t",
        "SELECT row_to_json(t)::text FROM (SELECT * FROM partition_offsets ORDER BY log_partition) t",
    ];
    let mut db = PgConnection::connect(database_url).await.expect("connect");
    let mut rows = Vec::new();
    for sql in TABLES {
        let found: Vec<String> = sqlx::query_scalar(sql).fetch_all(&mut db).await.expect(sql);
        rows.extend(found);
    }
    rows
}

async fn rewind_cluster(cluster: &Cluster, to: &str, partitions: &[&str]) -> AuditRun {
    let mut args = vec!["rewind".to_owned(), "--to".into(), to.into()];
    for p in partitions {
        args.extend(["--partition".to_owned(), (*p).to_owned()]);
    }
    args.extend(cluster.common_args(&cluster.database_url));
    run(&binary("consumer"), &args).await
}

async fn decided_total(database_url: &str) -> i64 {
    let mut db = PgConnection::connect(database_url).await.expect("connect");
    sqlx::query_scalar("SELECT COALESCE(sum(next_offset), 0)::bigint FROM partition_offsets")
        .fetch_one(&mut db)
        .await
        .expect("offsets")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rewound_topic_is_decided_again_without_changing_a_row() {
    let Some(cluster) = Cluster::new(2).await else {
        return;
    };
    let producer = cluster.producer("producer-1", &[]).await;
    let mut consumer = cluster.consumer("consumer-1");
    let drop = AuditedDrop::run(std::slice::from_ref(&producer.client)).await;
    let mid_drop = chrono::Utc::now();
    let late = AuditedDrop::run(std::slice::from_ref(&producer.client)).await;
    let decided = decided_total(&cluster.database_url).await;
    assert_eq!(decided as usize, drop.finals.len() + late.finals.len() + 4);
    consumer.kill9();
    let before = dump_state(&cluster.database_url).await;

    // Never forward, and nothing moves when one partition would.
    let forward = rewind_cluster(&cluster, "1000000", &["0"]).await;
    assert_eq!(forward.code, Some(2), "{forward:?}");
    assert!(
        forward.stderr.contains("would move it forward"),
        "{forward:?}"
    );
    let missing = rewind_cluster(&cluster, "earliest", &["7"]).await;
    assert_eq!(missing.code, Some(2), "{missing:?}");
    assert!(missing.stderr.contains("no partition 7"), "{missing:?}");
    assert_eq!(dump_state(&cluster.database_url).await, before);

    // To an instant: only the second drop's records are decided again.
    let at = mid_drop.to_rfc3339();
    let by_time = rewind_cluster(&cluster, &at, &[]).await;
    assert_eq!(by_time.code, Some(0), "{by_time:?}");
    let again = late.finals.len() + 2;
    assert!(
        by_time
            .stdout
            .contains(&format!("{again} records will be decided again")),
        "{by_time:?}"
    );
    // Then everything, with a worker running: fenced, it resumes from the start.
    let _consumer = cluster.consumer("consumer-2");
    let all = rewind_cluster(&cluster, "earliest", &[]).await;
    assert_eq!(all.code, Some(0), "{all:?}");
    // New traffic makes the running worker's partitions move on from the rewound offsets.
    let newer = AuditedDrop::run(std::slice::from_ref(&producer.client)).await;
    let expected = decided + newer.finals.len() as i64 + 2;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while decided_total(&cluster.database_url).await < expected {
        assert!(
            std::time::Instant::now() < deadline,
            "the replay never caught up\n{}",
            cluster.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let after: Vec<String> = dump_state(&cluster.database_url).await;
    for row in &before {
        if !row.contains("next_offset") {
            assert!(after.contains(row), "a replay changed or lost {row}");
        }
    }
    let clean = audit_cluster(&cluster, &[]).await;
    assert_eq!(clean.code, Some(0), "{clean:?}");
    pg::drop_database(&cluster.database_url).await;
}

/// Runs a PostgreSQL client tool (pg_dump, pg_restore) to its end.
async fn pg_tool(tool: &str, args: &[&str]) {
    let output = tokio::process::Command::new(tool)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("{tool}: {e} (scripts/services.sh installs PostgreSQL's tools)")
        });
    assert!(
        output.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_mid_flood_and_restored_replays_to_the_same_rows() {
    let Some(cluster) = Cluster::new(2).await else {
        return;
    };
    let producer = cluster.producer("producer-1", &[]).await;
    let consumer = cluster.consumer("consumer-1");
    let mut flood =
        common::audit::BackgroundFlood::start(std::slice::from_ref(&producer.client)).await;
    // The worker frozen while the flood goes on into the log and the backup is taken,
    // so that the flood's rest is surely decided after it.
    consumer.signal(nix::sys::signal::Signal::SIGSTOP);
    flood.resume();
    flood.until_accepted(common::audit::FIRST_USERS + 50).await;
    let backup = cluster.dir.path().join("backup.dump");
    let backup = backup.to_str().expect("utf8");
    pg_tool(
        "pg_dump",
        &["--format=custom", "--file", backup, &cluster.database_url],
    )
    .await;
    consumer.signal(nix::sys::signal::Signal::SIGCONT);
    let finals = flood.finish(&producer.client).await;
    let original = dump_state(&cluster.database_url).await;
    let decided = decided_total(&cluster.database_url).await;

    // Restore into a fresh database; a worker of its own group replays the topic's tail
    // from the backup's offsets and reaches exactly the original rows.
    let Some(restored) = pg::fresh_database().await else {
        return;
    };
    pg_tool("pg_restore", &["--no-owner", "--dbname", &restored, backup]).await;
    assert_ne!(
        dump_state(&restored).await,
        original,
        "the backup was taken mid-flood"
    );
    let restore_group = format!("{}-restore", cluster.group);
    let _restorer = cluster.consumer_on("restorer", &restored, &restore_group);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while decided_total(&restored).await < decided {
        assert!(
            std::time::Instant::now() < deadline,
            "the restore never caught up\n{}",
            cluster.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        dump_state(&restored).await,
        original,
        "the restored database replayed to other rows"
    );
    let audited = audit_cluster(&cluster, &[("--database-url", &restored)]).await;
    assert_eq!(audited.code, Some(0), "{audited:?}");
    assert!(
        finals
            .values()
            .all(|r| r["status"] != "ISSUE_STATUS_PENDING")
    );
    pg::drop_database(&restored).await;
    pg::drop_database(&cluster.database_url).await;
}
