//! Several processes sharing one Redis keep the idempotency guarantee: 64 callers spread
//! over 4 processes, on one key, execute the function exactly once.
//!
//! The test re-executes its own binary (`--exact <this test>`) as the children; the
//! executions are counted in Redis itself (`INCR` from inside the wrapped function), so no
//! process's memory is trusted.

use std::convert::Infallible;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use stent_core::{ResultStore, Status, Stent};
use stent_redis::RedisStore;
use tokio::process::Command;

const TEST: &str = "idempotent_call_runs_once_across_4_processes";
const CHILD_PREFIX: &str = "STENT_REDIS_CHILD_PREFIX";
const PROCESSES: usize = 4;
const CALLERS_PER_PROCESS: usize = 16;

fn url() -> Option<String> {
    match std::env::var("STENT_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) if stent_conformance::backends_required() => {
            panic!("STENT_REDIS_URL is not set and STENT_REQUIRE_BACKENDS=1")
        }
        Err(_) => {
            eprintln!("SKIPPED {TEST}: STENT_REDIS_URL is not set");
            None
        }
    }
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// One child process: 16 concurrent callers, released when the parent says go.
async fn child(url: String, prefix: String) {
    let store = RedisStore::builder()
        .url(url.as_str())
        .prefix(prefix.as_str())
        .build()
        .await
        .unwrap();
    let conn = raw(&url).await;
    let executions = format!("{prefix}:proof:executions");
    let charge = Stent::new(store)
        .durable("billing::charge_customer")
        .idempotent()
        .wrap({
            let conn = conn.clone();
            move |(order, amount): (String, u64)| {
                let mut conn = conn.clone();
                let executions = executions.clone();
                async move {
                    let n: u64 = conn.incr(&executions, 1).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, Infallible>(format!(
                        "{order}:{amount}:run{n}:pid{}",
                        std::process::id()
                    ))
                }
            }
        });
    let mut conn = conn;
    let _: u64 = conn.incr(format!("{prefix}:proof:ready"), 1).await.unwrap();
    let go = format!("{prefix}:proof:go");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !conn.exists::<_, bool>(&go).await.unwrap() {
        assert!(Instant::now() < deadline, "the parent never said go");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let tasks: Vec<_> = (0..CALLERS_PER_PROCESS)
        .map(|_| {
            let charge = charge.clone();
            tokio::spawn(async move { charge.call_traced(("ord-1".into(), 500)).await })
        })
        .collect();
    for t in tasks {
        let t = t.await.unwrap().expect("call failed");
        println!("RESULT {} {}", t.outcome.status, t.value);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_call_runs_once_across_4_processes() {
    if let Ok(prefix) = std::env::var(CHILD_PREFIX) {
        let url = std::env::var("STENT_REDIS_URL").unwrap();
        child(url, prefix).await;
        return;
    }
    let Some(url) = url() else { return };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("proc{}x{nanos}", std::process::id());
    let mut conn = raw(&url).await;

    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", TEST, "--nocapture"])
                .env(CHILD_PREFIX, &prefix)
                .env("STENT_REDIS_URL", &url)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap()
        })
        .collect();
    let ready = format!("{prefix}:proof:ready");
    let deadline = Instant::now() + Duration::from_secs(60);
    while conn.get::<_, Option<usize>>(&ready).await.unwrap() != Some(PROCESSES) {
        assert!(Instant::now() < deadline, "the children never got ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _: () = conn.set(format!("{prefix}:proof:go"), 1).await.unwrap();

    let mut results = Vec::new();
    for child in children {
        let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .expect("a child hung")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        results.extend(
            stdout
                .lines()
                .filter_map(|l| l.strip_prefix("RESULT "))
                .map(str::to_owned),
        );
    }

    let executions: Option<u64> = conn
        .get(format!("{prefix}:proof:executions"))
        .await
        .unwrap();
    assert_eq!(
        executions,
        Some(1),
        "the function must run exactly once across processes"
    );
    assert_eq!(
        results.len(),
        PROCESSES * CALLERS_PER_PROCESS,
        "{results:#?}"
    );
    let values: std::collections::BTreeSet<_> = results
        .iter()
        .map(|r| r.split_once(' ').unwrap().1)
        .collect();
    assert_eq!(
        values.len(),
        1,
        "every caller gets the one value: {values:?}"
    );
    assert!(values.first().unwrap().contains(":run1:"), "{values:?}");
    let executed = results
        .iter()
        .filter(|r| r.starts_with(&format!("{} ", Status::Executed.as_str())))
        .count();
    assert_eq!(executed, 1, "{results:#?}");
    let mut statuses = std::collections::BTreeMap::<&str, usize>::new();
    for r in &results {
        *statuses.entry(r.split_once(' ').unwrap().0).or_default() += 1;
    }
    eprintln!("{TEST}: outcomes {statuses:?}");

    let store = RedisStore::builder()
        .url(url.as_str())
        .prefix(prefix.as_str())
        .build()
        .await
        .unwrap();
    for ns in stent_core::Namespace::ALL {
        store.clear(ns).await.unwrap();
    }
    let _: () = conn
        .del(&[
            format!("{prefix}:proof:executions"),
            format!("{prefix}:proof:ready"),
            format!("{prefix}:proof:go"),
        ])
        .await
        .unwrap();
}
