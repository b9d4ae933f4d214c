//! A Redis restart in the middle of a run: calls made while the server is away fail with
//! a retryable error, the same store reconnects by itself once it is back, and no function
//! runs twice.
//!
//! The test starts its own `redis-server` on a free loopback port, with an append-only
//! file synced on every write (so the restart keeps what was recorded), and kills it with
//! SIGKILL mid-run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stent_core::{Durable, ErrorKind, Status, Stent};
use stent_redis::RedisStore;

const TEST: &str = "redis_restart_gives_retryable_errors_then_recovers_without_rerunning";

use stent_conformance::servers::local::{self, RedisServer};

/// The server's persistence: an append-only file synced on every write.
const DURABLE: &[&str] = &[
    "--save",
    "",
    "--appendonly",
    "yes",
    "--appendfsync",
    "always",
];

type Runs = Arc<Mutex<HashMap<String, u32>>>;

/// A function that counts its executions per key and takes `ms` to run.
fn counted(stent: &Stent, runs: &Runs) -> Durable<(String, u64), String, std::convert::Infallible> {
    let runs = Arc::clone(runs);
    stent
        .durable("proof::restart")
        .idempotent()
        .wrap(move |(key, ms): (String, u64)| {
            let runs = Arc::clone(&runs);
            async move {
                *runs.lock().unwrap().entry(key.clone()).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(format!("done:{key}"))
            }
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_gives_retryable_errors_then_recovers_without_rerunning() {
    let Some(mut server) = local::or_skip(TEST, RedisServer::start(DURABLE)) else {
        return;
    };
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let runs: Runs = Arc::default();
    let f = counted(&Stent::new(store), &runs);

    // Before the restart: eight results recorded.
    for i in 0..8 {
        let t = f.call_traced((format!("a{i}"), 0)).await.unwrap();
        assert_eq!(t.outcome.status, Status::Executed);
    }

    // Four long calls are running when the server dies.
    let long: Vec<_> = (0..4)
        .map(|i| {
            let f = f.clone();
            tokio::spawn(async move { f.call_traced((format!("b{i}"), 1500)).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (0..4).any(|i| !runs.lock().unwrap().contains_key(&format!("b{i}"))) {
        assert!(Instant::now() < deadline, "the long calls never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    server.kill();

    // While the server is away: replays and new calls alike fail, retryably.
    let during: Vec<_> = (0..8)
        .flat_map(|i| [format!("a{i}"), format!("c{i}")])
        .map(|key| {
            let f = f.clone();
            tokio::spawn(async move { f.call((key, 0)).await })
        })
        .collect();
    for (i, call) in during.into_iter().enumerate() {
        let e = call.await.unwrap().expect_err("the server is down");
        assert!(e.is_retryable(), "{e:?}");
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e:?}");
        if i == 0 {
            eprintln!("{TEST}: while down: {e}");
        }
    }
    // The long calls finish while the server is still away: recording their results
    // fails, and the wrapper keeps retrying.
    tokio::time::sleep(
        (started + Duration::from_millis(2500)).saturating_duration_since(Instant::now()),
    )
    .await;
    assert!(
        !long.iter().any(|c| c.is_finished()),
        "a long call ended during the outage"
    );

    // The server comes back on the same port, with what it had recorded.
    server.start_again().unwrap();
    let back = Instant::now();

    // The same store, never rebuilt: retried calls succeed once it has reconnected.
    let mut failures_after_restart = 0;
    for key in (0..8).flat_map(|i| [format!("a{i}"), format!("c{i}")]) {
        let t = loop {
            match f.call_traced((key.clone(), 0)).await {
                Ok(t) => break t,
                Err(e) => {
                    assert!(e.is_retryable(), "{e:?}");
                    failures_after_restart += 1;
                    assert!(
                        back.elapsed() < Duration::from_secs(30),
                        "never recovered: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        assert_eq!(t.value, format!("done:{key}"));
        let expected = if key.starts_with('a') {
            Status::Replayed
        } else {
            Status::Executed
        };
        assert_eq!(t.outcome.status, expected, "{key}");
    }
    eprintln!(
        "{TEST}: recovered {:?} after the restart ({failures_after_restart} retried calls)",
        back.elapsed()
    );

    // The long calls ran through the outage and recorded their results.
    for (i, call) in long.into_iter().enumerate() {
        let t = call
            .await
            .unwrap()
            .expect("the long call records its result after the restart");
        assert_eq!(t.value, format!("done:b{i}"));
        assert_eq!(t.outcome.status, Status::Executed);
        let again = f.call_traced((format!("b{i}"), 1500)).await.unwrap();
        assert_eq!(again.outcome.status, Status::Replayed);
    }

    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 20, "{runs:?}");
    assert!(
        runs.values().all(|&n| n == 1),
        "something ran twice: {runs:?}"
    );
    server.kill();
}
