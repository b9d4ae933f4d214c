//! The DynamoDB endpoint dies in the middle of a run: calls fail with retryable errors, and
//! once a server answers again the same store (never rebuilt) works again, with no
//! function run twice while the server was up.
//!
//! The test starts its own moto on a free loopback port (`STENT_MOTO_SERVER`, exported by
//! scripts/test) and kills it with SIGKILL mid-run. moto keeps its data in memory, so the
//! restarted server is empty: the application recreates the table with `migrate` on
//! the store it already has, and the calls whose results died with the old server run once
//! more. Within each server's lifetime every key runs at most once.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stent_conformance::servers::local::{self, MotoServer};
use stent_core::{Durable, ErrorKind, Status, Stent};
use stent_dynamodb::DynamoDbStore;

const TEST: &str = "killed_server_gives_retryable_errors_and_nothing_runs_twice";

/// Executions per key and server lifetime ("up-1", "up-2") or during the outage ("down").
type Runs = Arc<Mutex<HashMap<(&'static str, String), u32>>>;

fn counted(
    store: DynamoDbStore,
    runs: &Runs,
    phase: &Arc<Mutex<&'static str>>,
) -> Durable<(String, u64), String, String> {
    let runs = Arc::clone(runs);
    let phase = Arc::clone(phase);
    Stent::new(store)
        .durable("proof::outage")
        .idempotent()
        // Short, so a result that cannot be recorded gives up within the outage.
        .lease(Duration::from_secs(2))
        .wrap(move |(key, ms): (String, u64)| {
            let runs = Arc::clone(&runs);
            let phase = *phase.lock().unwrap();
            async move {
                *runs
                    .lock()
                    .unwrap()
                    .entry((phase, key.clone()))
                    .or_default() += 1;
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(format!("done:{key}"))
            }
        })
}

fn assert_retryable<T: std::fmt::Debug>(result: Result<T, stent_core::Error<String>>, what: &str) {
    let e = result.expect_err(what);
    assert!(e.is_retryable(), "{what}: {e:?}");
    assert!(
        matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Busy),
        "{what}: {e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_gives_retryable_errors_and_nothing_runs_twice() {
    let Some(mut moto) = local::or_skip(TEST, MotoServer::start()) else {
        return;
    };
    let endpoint = moto.url();
    let build = || async {
        support::builder(&endpoint, "stent_outage", "proof")
            .timeout(Duration::from_secs(3))
            .max_attempts(2)
            .build()
            .await
            .unwrap()
    };
    // Two stores, as two processes would have: calls on one key meet at the server.
    let (one, two) = (build().await, build().await);
    one.migrate().await.unwrap();
    let runs: Runs = Arc::default();
    let phase = Arc::new(Mutex::new("up-1"));
    let (f, g) = (
        counted(one.clone(), &runs, &phase),
        counted(two, &runs, &phase),
    );
    let keys = |p: &'static str| (0..4).map(move |i| format!("{p}{i}"));

    // Server up: every key runs once, whichever store is asked.
    for key in keys("a") {
        let (x, y) = tokio::join!(
            f.call_traced((key.clone(), 50)),
            g.call_traced((key.clone(), 50))
        );
        let statuses = [x.unwrap().outcome.status, y.unwrap().outcome.status];
        assert_eq!(
            statuses.iter().filter(|s| **s == Status::Executed).count(),
            1,
            "{key}: {statuses:?}"
        );
    }

    // Long calls are running when the server is killed.
    let long: Vec<_> = keys("b")
        .map(|key| {
            let f = f.clone();
            tokio::spawn(async move { f.call((key, 800)).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while keys("b").any(|k| !runs.lock().unwrap().contains_key(&("up-1", k))) {
        assert!(Instant::now() < deadline, "the long calls never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    moto.kill();
    *phase.lock().unwrap() = "down";
    let killed = Instant::now();

    // Server down: replays and new calls alike fail at once, retryably.
    for key in keys("a").chain(keys("c")) {
        assert_retryable(
            f.call((key.clone(), 0)).await,
            &format!("{key} while the server is down"),
        );
    }
    let e = f.call(("c0".into(), 0)).await.unwrap_err();
    assert!(
        e.to_string().contains(&endpoint),
        "the error names the endpoint: {e}"
    );
    eprintln!("{TEST}: while down: {e}");
    // The long calls cannot record their results: after retrying for their lease, they
    // give up with a retryable error (the result is not pretended to be stored).
    for call in long {
        assert_retryable(call.await.unwrap(), "a long call while the server is down");
    }
    eprintln!("{TEST}: down for {:?}", killed.elapsed());

    // A new, empty server on the same port; the application recreates its table on the
    // store it already has.
    moto.start_again().unwrap();
    *phase.lock().unwrap() = "up-2";
    let back = Instant::now();
    let e = f.call(("a0".into(), 0)).await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Config,
        "a missing table is a configuration error: {e}"
    );
    assert!(
        e.to_string().contains("stent_outage") && e.to_string().contains("migrate"),
        "{e}"
    );
    one.migrate().await.unwrap();
    for key in keys("a").chain(keys("b")).chain(keys("c")) {
        let (x, y) = tokio::join!(
            f.call_traced((key.clone(), 50)),
            g.call_traced((key.clone(), 50))
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(
            (x.value.as_str(), y.value.as_str()),
            (&*format!("done:{key}"), &*format!("done:{key}"))
        );
        let executed = [x.outcome.status, y.outcome.status]
            .iter()
            .filter(|s| **s == Status::Executed)
            .count();
        assert_eq!(executed, 1, "{key}");
        assert_eq!(
            f.call_traced((key.clone(), 50))
                .await
                .unwrap()
                .outcome
                .status,
            Status::Replayed
        );
    }
    eprintln!("{TEST}: recovered {:?} after the restart", back.elapsed());

    let runs = runs.lock().unwrap().clone();
    assert!(
        runs.keys().all(|(phase, _)| *phase != "down"),
        "nothing starts while the server is down: {runs:?}"
    );
    for ((phase, key), n) in &runs {
        assert_eq!(*n, 1, "{key} ran {n} times while server {phase} was up");
    }
    let up_2 = runs.keys().filter(|(phase, _)| *phase == "up-2").count();
    assert_eq!(up_2, 12, "every key runs once on the new server: {runs:?}");
}
