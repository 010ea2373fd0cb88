//! Scaling the topic (issue 19): partitions added under load keep every campaign in its
//! home partition, and a database refuses the nodes of a topic it does not belong to.
//! Real `producer` and `consumer` processes on the Kafka and PostgreSQL of
//! `scripts/services.sh`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use common::cluster::{Cluster, binary};
use common::connect::{Client, rfc3339_in};
use common::flood::{Outcome, flood};
use common::process::{Proc, free_port};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use serde_json::Value;
use sqlx::PgPool;

/// Four campaigns: a request placed by its campaign's key instead of its home would
/// stay in the home partition by chance for all four with probability (4/12)^4.
const CAMPAIGNS: usize = 4;
const COUPONS: usize = 250;
const USERS: usize = 700;

/// A ticket's place in the log, as its id carries it (`<uuid>.<partition>.<offset>.<tag>`).
fn position(ticket: &str) -> (u32, u64) {
    let parts: Vec<&str> = ticket.split('.').collect();
    assert_eq!(parts.len(), 4, "a positioned ticket: {ticket}");
    (
        parts[1].parse().expect("partition"),
        parts[2].parse().expect("offset"),
    )
}

/// Each campaign's home partition, as the database stores its origin.
async fn home_partitions(database_url: &str) -> BTreeMap<String, u32> {
    let pool = PgPool::connect(database_url).await.expect("connect");
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT id::text, origin_partition FROM campaigns")
            .fetch_all(&pool)
            .await
            .expect("campaigns");
    pool.close().await;
    rows.into_iter()
        .map(|(id, p)| (id, u32::try_from(p).expect("partition")))
        .collect()
}

async fn add_partitions(cluster: &Cluster, total: usize) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &cluster.brokers)
        .create()
        .expect("admin client");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_partitions([&NewPartitions::new(&cluster.topic, total)], &options)
        .await
        .expect("create partitions");
    for result in results {
        result.expect("partitions added");
    }
}

/// The floods' accepted tickets of one campaign in log order must be decided as one
/// worker deciding its home partition in order would: all in that partition, the first
/// `COUPONS` (every user asks once) issued, the rest sold out.
fn assert_first_come_first_served(
    campaign: &str,
    home: u32,
    accepted: &[(String, String)],
    results: &HashMap<String, Value>,
) {
    let mut in_order: Vec<(u64, &str)> = accepted
        .iter()
        .map(|(ticket, _)| {
            let (partition, offset) = position(ticket);
            assert_eq!(
                partition, home,
                "campaign {campaign}: ticket {ticket} left its home partition {home}"
            );
            (offset, ticket.as_str())
        })
        .collect();
    in_order.sort_unstable();
    assert!(in_order.len() > COUPONS, "the flood outran the coupons");
    for (rank, (_, ticket)) in in_order.iter().enumerate() {
        let expected = if rank < COUPONS {
            "ISSUE_STATUS_ISSUED"
        } else {
            "ISSUE_STATUS_SOLD_OUT"
        };
        assert_eq!(
            results[*ticket]["status"], expected,
            "campaign {campaign}: request #{rank} in log order"
        );
    }
}

/// One flood per campaign, of the users `from..to` of each, at once; their outcomes.
async fn flood_campaigns(
    clients: &[Client],
    campaigns: &[String],
    users: std::ops::Range<usize>,
    concurrency: usize,
) -> Vec<Outcome> {
    let floods: Vec<_> = campaigns
        .iter()
        .map(|id| {
            let users = users.clone().map(|u| format!("{id}-user-{u}")).collect();
            let (clients, id) = (clients.to_vec(), id.clone());
            let progress = Arc::new(AtomicUsize::new(0));
            tokio::spawn(async move { flood(&clients, &id, users, concurrency, progress).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for flooded in floods {
        outcomes.push(flooded.await.expect("flood"));
    }
    outcomes
}

/// Requests of every campaign go on while partitions are added: before the increase,
/// during it, and once the producers spread new campaigns over the new partitions (so
/// a request placed by the campaign's key would now land elsewhere). The campaigns sell
/// out in that last phase.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_added_mid_flood_keep_each_campaign_in_its_home_partition() {
    let Some(cluster) = Cluster::new(4).await else {
        return;
    };
    let producers = [
        cluster.producer("producer-1", &[]).await,
        cluster.producer("producer-2", &[]).await,
    ];
    let _consumers = [
        cluster.consumer("consumer-1"),
        cluster.consumer("consumer-2"),
    ];
    let clients: Vec<Client> = producers.iter().map(|p| p.client.clone()).collect();
    let starts_at = rfc3339_in(TimeDelta::zero());
    let mut campaigns = Vec::new();
    for n in 0..CAMPAIGNS {
        let created = clients[0]
            .create_campaign(&format!("flooded-{n}"), COUPONS as i64, &starts_at)
            .await
            .expect("create");
        campaigns.push(created["id"].as_str().expect("id").to_owned());
    }

    let mut outcomes = flood_campaigns(&clients, &campaigns, 0..100, 16).await;
    let during = {
        let (clients, campaigns) = (clients.clone(), campaigns.clone());
        tokio::spawn(async move { flood_campaigns(&clients, &campaigns, 100..200, 2).await })
    };
    add_partitions(&cluster, 12).await;
    let (new_campaign, new_home) = a_campaign_on_a_new_partition(&cluster, &clients[1]).await;
    let after = flood_campaigns(&clients, &campaigns, 200..USERS, 16).await;
    for phase in [during.await.expect("flood during the increase"), after] {
        for (outcome, more) in outcomes.iter_mut().zip(phase) {
            outcome.accepted.extend(more.accepted);
        }
    }

    let homes = home_partitions(&cluster.database_url).await;
    for (id, outcome) in campaigns.iter().zip(&outcomes) {
        let tickets: Vec<String> = outcome.accepted.iter().map(|(t, _)| t.clone()).collect();
        let results = clients[1]
            .await_final(&tickets, Duration::from_secs(90))
            .await;
        assert_first_come_first_served(id, homes[id], &outcome.accepted, &results);
    }
    assert_codes_unique(&cluster.database_url).await;
    a_new_campaign_is_decided(&cluster, &clients[1], &new_campaign, new_home).await;
}

async fn assert_codes_unique(database_url: &str) {
    let pool = PgPool::connect(database_url).await.expect("connect");
    let (coupons, codes): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT code) FROM coupons")
            .fetch_one(&pool)
            .await
            .expect("coupons");
    pool.close().await;
    assert_eq!(coupons, (CAMPAIGNS * COUPONS) as i64);
    assert_eq!(codes, coupons, "codes are unique");
}

/// Once a producer saw the new partitions (its metadata refresh), new campaigns spread
/// over all twelve: the first one created on a new partition, and that partition.
async fn a_campaign_on_a_new_partition(cluster: &Cluster, client: &Client) -> (String, u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    loop {
        n += 1;
        let created = client
            .create_campaign(&format!("after-{n}"), 1, &rfc3339_in(TimeDelta::zero()))
            .await
            .expect("create after the increase");
        let id = created["id"].as_str().expect("id").to_owned();
        let home = home_partitions(&cluster.database_url).await[&id];
        if home >= 4 {
            return (id, home);
        }
        assert!(
            Instant::now() < deadline,
            "no new campaign landed on partitions 4..12 in {n} tries"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The consumers, rebalanced onto the new partitions, decide a campaign there.
async fn a_new_campaign_is_decided(cluster: &Cluster, client: &Client, campaign: &str, home: u32) {
    let ticket = client.issue(campaign, "late-user").await.expect("accepted");
    let ticket = ticket["ticketId"].as_str().expect("ticket").to_owned();
    assert_eq!(position(&ticket).0, home);
    let results = client
        .await_final(std::slice::from_ref(&ticket), Duration::from_secs(60))
        .await;
    assert_eq!(
        results[&ticket]["status"],
        "ISSUE_STATUS_ISSUED",
        "{}",
        cluster.logs()
    );
}

/// What a database holds that a refused node could have written.
async fn written(database_url: &str) -> (i64, i64, Vec<(String, String)>) {
    let pool = PgPool::connect(database_url).await.expect("connect");
    let (campaigns, offsets): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM campaigns), (SELECT count(*) FROM partition_offsets)",
    )
    .fetch_one(&pool)
    .await
    .expect("counts");
    let meta: Vec<(String, String)> = sqlx::query_as("SELECT name, value FROM meta ORDER BY name")
        .fetch_all(&pool)
        .await
        .expect("meta");
    pool.close().await;
    (campaigns, offsets, meta)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_refuses_the_nodes_of_another_topic() {
    let (Some(first), Some(mut second)) = (Cluster::new(2).await, Cluster::new(1).await) else {
        return;
    };
    // The same key: only the topic differs.
    second.secret_hex = first.secret_hex.clone();
    // The first deployment binds its database to its topic and decides a campaign.
    let producer = first.producer("producer", &[]).await;
    let _consumer = first.consumer("consumer");
    let (_, ticket, _) = producer
        .client
        .issued_in_new_campaign("bound", "alice")
        .await;
    assert!(!ticket.is_empty());
    let before = written(&first.database_url).await;
    let bound = before
        .2
        .iter()
        .find(|(name, _)| name == "log_identity")
        .map(|(_, value)| value.clone())
        .expect("the database names its topic");
    assert!(bound.contains(&first.topic), "{bound}");

    // A fresh deployment on another topic, pointed at the same database by mistake.
    let port = free_port().to_string();
    let mut args = vec!["--listen".to_owned(), format!("127.0.0.1:{port}")];
    args.extend(second.common_args(&first.database_url));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for (name, args) in [("producer", &args[..]), ("consumer", &args[2..])] {
        let log = second.log_path(name);
        let proc = Proc::spawn(binary(name).to_str().expect("utf8"), args, &log);
        let said = proc.refused(Duration::from_secs(60), &log).await;
        for topic in [&first.topic, &second.topic] {
            assert!(
                said.contains(topic.as_str()),
                "{name} must name {topic}:\n{said}"
            );
        }
    }
    assert_eq!(
        written(&first.database_url).await,
        before,
        "a refused node wrote nothing"
    );
}
