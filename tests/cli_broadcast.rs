//! `stent … rm` run as a process of its own reaches the local tier of another process,
//! through the store's broadcast: the record leaves that tier within a bound, on every store
//! that broadcasts. Each backend runs when its URL variable is set, and fails the run under
//! `STENT_REQUIRE_BACKENDS=1` when it is not.
#![cfg(all(feature = "cli", feature = "local"))]
#![cfg(any(feature = "redis", feature = "postgres"))]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stent::broadcast::Broadcast;
use stent::{LocalTier, Namespace, RecordMeta, ResultStore};

fn url_from_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) => Some(url),
        Err(_) if std::env::var("STENT_REQUIRE_BACKENDS").is_ok_and(|v| v == "1") => {
            panic!("{var} is not set and STENT_REQUIRE_BACKENDS=1")
        }
        Err(_) => {
            eprintln!("SKIPPED: {var} is not set");
            None
        }
    }
}

fn unique(label: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!(
        "cli_bcast_{label}_{}_{}",
        std::process::id(),
        nanos.subsec_nanos()
    )
}

/// Keeps a record in the tier of a store built here (process A), removes it with the
/// `stent` binary (process B), and waits for A's tier to drop it.
async fn rm_reaches_the_tier<S>(url: &str, a: S)
where
    S: ResultStore + Broadcast + Clone,
{
    let ns = Namespace::Idempotency;
    let key = "billing::charge|None|[\"ord-1\"]";
    let invalidations = a.invalidations();
    let tier = LocalTier::new(a.clone(), 1000, 1 << 20).broadcast(invalidations);
    a.put(ns, key, b"\"receipt\"", None, RecordMeta::default())
        .await
        .unwrap();
    let start = Instant::now();
    while !tier.contains(ns, key) {
        assert!(start.elapsed() < Duration::from_secs(20), "never kept");
        tier.get(ns, key).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_stent"))
        .env_remove("STENT_STORE")
        .args(["--store", url, "idempotency", "rm", key, "--yes"])
        .stdin(Stdio::null())
        .output()
        .expect("the stent binary starts");
    assert!(out.status.success(), "{out:?}");
    let removed = Instant::now();
    while tier.contains(ns, key) {
        assert!(
            removed.elapsed() < Duration::from_secs(3),
            "still in the tier"
        );
        tokio::task::yield_now().await;
    }
    eprintln!("dropped {:?} after `stent rm` exited", removed.elapsed());
    assert!(tier.get(ns, key).await.unwrap().is_none());
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_rm_reaches_another_process_tier() {
    let Some(base) = url_from_env("STENT_REDIS_URL") else {
        return;
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}prefix={}", unique("redis"));
    let a = stent::RedisStore::connect(&url).await.unwrap();
    rm_reaches_the_tier(&url, a).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cli_rm_reaches_another_process_tier() {
    let Some(base) = url_from_env("STENT_POSTGRES_URL") else {
        return;
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    let schema = unique("pg");
    let url = format!("{base}{sep}schema={schema}");
    let a = stent::PostgresStore::connect(&url).await.unwrap();
    rm_reaches_the_tier(&url, a.clone()).await;
    let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    sqlx::query(sqlx::AssertSqlSafe(drop))
        .execute(a.pool())
        .await
        .unwrap();
}
