//! One fresh PostgreSQL database per test, on the server named by `DATABASE_URL`
//! (`eval "$(scripts/services.sh up)"` starts one and prints it), so that tests run
//! in parallel and again without cleaning up after each other.

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

/// Set to 1 to skip the distributed tests when no `DATABASE_URL` is available.
pub const SKIP_VAR: &str = "COUPON_SKIP_DISTRIBUTED";

/// Creates an empty database and returns its URL; `None` only when the distributed
/// tests are skipped. Panics (fails the test) when `DATABASE_URL` is unset otherwise.
pub async fn fresh_database() -> Option<String> {
    let Ok(server_url) = std::env::var("DATABASE_URL") else {
        if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
            eprintln!("DATABASE_URL is unset and {SKIP_VAR}=1: skipping this test");
            return None;
        }
        panic!(
            "DATABASE_URL is unset: start PostgreSQL with `eval \"$(scripts/services.sh up)\"` \
             (or set {SKIP_VAR}=1 to skip the distributed tests)"
        );
    };
    let name = format!("coupon_test_{:016x}", rand::random::<u64>());
    let mut conn = PgConnection::connect(&server_url)
        .await
        .unwrap_or_else(|e| panic!("connecting to DATABASE_URL: {e}"));
    // The name is ours (a fixed prefix and hex digits), so formatting it in is safe.
    conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
    let _ = conn.close().await;
    Some(with_database(&server_url, &name))
}

/// Drops a database made by [`fresh_database`], best-effort (a failed test leaves its
/// `coupon_test_*` database behind for inspection). Open connections are terminated.
pub async fn drop_database(url: &str) {
    let Ok(server_url) = std::env::var("DATABASE_URL") else {
        return;
    };
    let ours = |n: &&str| {
        n.strip_prefix("coupon_test_")
            .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let Some(name) = database_name(url).filter(ours) else {
        return;
    };
    let dropped = async {
        let mut conn = PgConnection::connect(&server_url).await?;
        conn.execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await?;
        conn.close().await
    };
    if let Err(e) = dropped.await {
        eprintln!("could not drop test database {name}: {e}");
    }
}

/// `url` with its database (path) replaced by `name`; the query string is kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let base = base[host_start..]
        .find('/')
        .map_or(base, |i| &base[..host_start + i]);
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

fn database_name(url: &str) -> Option<&str> {
    let base = url.split('?').next()?;
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let path = &base[host_start..];
    path.find('/').map(|i| &path[i + 1..])
}
