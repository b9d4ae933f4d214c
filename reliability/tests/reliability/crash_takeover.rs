//! A process killed with `SIGKILL` while it runs a claimed call: a second process waiting
//! on the key takes over once the dead owner's lease lapses, as attempt 2, and completes;
//! the dead attempt's lease token is refused from then on and changes nothing.

use std::convert::Infallible;
use std::time::Duration;

use stent_core::{ErrorKind, LeaseToken, Namespace, RecordState, Status, Stent};
use stent_reliability::harness::start_together;
use stent_reliability::job::value_of;
use stent_reliability::{Backend, Report, Task, Worker, now_ms};

use crate::support::{self, PATIENCE, WORKER, figure};

/// The owner's lease: renewed every third of it while the owner lives.
const LEASE: Duration = Duration::from_secs(2);
const KEY: &str = "order-1";

async fn never_runs(_: String) -> Result<String, Infallible> {
    panic!("a completed key never runs again")
}

async fn killed_owner_is_taken_over_at_attempt_2(backend: Backend) {
    let test = format!("{}_killed_owner_is_taken_over_at_attempt_2", backend.name());
    let Some(fx) = support::fixture(backend, "crash", &test).await else {
        return;
    };
    let ledger = fx.ledger();
    let store = fx.target.open().await.unwrap();

    let mut owner = Worker::spawn(
        WORKER.as_ref(),
        "owner",
        &fx.job(LEASE, Task::Own { key: KEY.into() }),
    );
    start_together(std::slice::from_mut(&mut owner), &fx.go(), PATIENCE).await;
    let Report::Inside {
        key,
        attempt,
        token,
        ..
    } = owner
        .expect(PATIENCE, |r| matches!(r, Report::Inside { .. }))
        .await
    else {
        unreachable!()
    };
    assert_eq!(attempt, 1);
    let dead = LeaseToken::from_string(token);

    // The second process calls while the owner still runs: it finds the key in flight and waits.
    let hold = fx.path("hold");
    let mut taker = Worker::spawn(
        WORKER.as_ref(),
        "taker",
        &fx.job(
            LEASE,
            Task::TakeOver {
                key: KEY.into(),
                wait_ms: 60_000,
                hold: hold.clone(),
            },
        ),
    );
    let Report::Calling { at_ms: calling_at } = taker
        .expect(PATIENCE, |r| matches!(r, Report::Calling { .. }))
        .await
    else {
        unreachable!()
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let killed_at = now_ms();
    owner.kill().await;
    // The lease the owner held when it died (it can no longer renew it).
    let at_death = store
        .get(Namespace::Idempotency, &key)
        .await
        .unwrap()
        .expect("the dead owner's record");
    let lapse_at =
        (at_death.attempt == 1).then(|| at_death.lease_expires_at.expect("a lease").as_millis());

    let takeover = ledger
        .wait_for(LEASE + Duration::from_secs(30), |e| e.attempt == 2)
        .await;
    let after_kill = takeover.at_ms - killed_at;

    // While attempt 2 runs, the dead token can neither complete, renew nor release.
    let running = store
        .get(Namespace::Idempotency, &key)
        .await
        .unwrap()
        .expect("the taken-over record");
    assert_eq!(
        (running.state, running.attempt),
        (RecordState::InProgress, 2)
    );
    assert_ne!(running.lease_token.as_ref(), Some(&dead));
    let e = store
        .complete(Namespace::Idempotency, &key, &dead, b"forged", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "{e}");
    let e = store
        .renew(Namespace::Idempotency, &key, &dead, LEASE)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "{e}");
    assert!(
        !store
            .release(Namespace::Idempotency, &key, &dead)
            .await
            .unwrap()
    );
    let still = store
        .get(Namespace::Idempotency, &key)
        .await
        .unwrap()
        .expect("the record");
    assert_eq!(
        (still.state, still.attempt, &still.lease_token, &still.value),
        (
            running.state,
            running.attempt,
            &running.lease_token,
            &running.value
        ),
        "the dead token changed the record"
    );

    std::fs::write(&hold, b"done").unwrap();
    let taker_pid = taker.pid();
    let call = support::calls(&taker.finish(PATIENCE).await)
        .pop()
        .expect("the taker's result");
    assert_eq!(
        (call.status.as_str(), call.attempt, call.value.as_str()),
        ("executed", 2, value_of(KEY, taker_pid, 2).as_str())
    );
    assert!(
        i64::try_from(call.took_ms).unwrap() >= killed_at - calling_at,
        "the taker's call returned before the owner died: {call:?}"
    );

    // After completion, the dead token still writes nothing.
    let done = store
        .get(Namespace::Idempotency, &key)
        .await
        .unwrap()
        .expect("the record");
    assert_eq!((done.state, done.attempt), (RecordState::Completed, 2));
    let e = store
        .complete(Namespace::Idempotency, &key, &dead, b"forged", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "{e}");
    let replay = Stent::from_arc(store.clone())
        .durable("reliability::crash")
        .idempotent()
        .wrap(never_runs)
        .call_traced(KEY.to_string())
        .await
        .unwrap();
    assert_eq!(
        (
            replay.outcome.status,
            replay.outcome.attempt,
            replay.outcome.key.as_str(),
            replay.value.as_str()
        ),
        (Status::Replayed, 2, key.as_str(), call.value.as_str())
    );

    let entries = ledger.entries();
    assert_eq!(
        entries
            .iter()
            .map(|e| (e.key.as_str(), e.pid, e.attempt))
            .collect::<Vec<_>>(),
        [(KEY, owner.pid(), 1), (KEY, taker_pid, 2)],
        "one execution per attempt, in that order"
    );

    assert!(
        after_kill <= i64::try_from((LEASE + Duration::from_secs(3)).as_millis()).unwrap(),
        "takeover came {after_kill} ms after the kill (lease {LEASE:?})"
    );
    let after_lapse = lapse_at.map(|lapse| takeover.at_ms - lapse);
    if let Some(after_lapse) = after_lapse {
        // Clocks: the same machine's; 5 ms for rounding to milliseconds.
        assert!(
            after_lapse >= -5,
            "taken over {} ms before the lease lapsed",
            -after_lapse
        );
    }
    figure(
        "crash_takeover",
        backend,
        &[
            ("lease_ms", LEASE.as_millis().to_string()),
            ("takeover_after_kill_ms", after_kill.to_string()),
            (
                "takeover_after_lapse_ms",
                after_lapse.map_or("n/a".into(), |v| v.to_string()),
            ),
            ("taker_call_ms", call.took_ms.to_string()),
        ],
    );
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_killed_owner_is_taken_over_at_attempt_2() {
    killed_owner_is_taken_over_at_attempt_2(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_owner_is_taken_over_at_attempt_2() {
    killed_owner_is_taken_over_at_attempt_2(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_owner_is_taken_over_at_attempt_2() {
    killed_owner_is_taken_over_at_attempt_2(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_killed_owner_is_taken_over_at_attempt_2() {
    killed_owner_is_taken_over_at_attempt_2(Backend::RedisCluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_killed_owner_is_taken_over_at_attempt_2() {
    killed_owner_is_taken_over_at_attempt_2(Backend::DynamoDb).await;
}
