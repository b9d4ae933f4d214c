//! What a caller sees when the store fails at each step of the call path.
//!
//! Every test breaks one store operation with [`FaultStore`] and asserts the documented
//! outcome: the error kind the caller gets, whether the function ran, what is left in the
//! store, and whether the next call executes or replays. Lease lapses are driven by a
//! [`ManualClock`], so no test depends on the machine's speed.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use stent_core::testkit::{Fault, FaultStore, Op};
use stent_core::{
    Clock, DurableBuilder, ErrorKind, InFlight, ManualClock, MemoryStore, Namespace, RecordState,
    ResultStore, Status, Stent, Timestamp,
};

const IDEM: Namespace = Namespace::Idempotency;
const CACHE: Namespace = Namespace::Cache;
const LEASE: Duration = Duration::from_millis(300);

type Store = FaultStore<MemoryStore>;
type Counted = stent_core::Durable<u32, String, String>;

fn store() -> (Store, ManualClock) {
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    (
        FaultStore::new(MemoryStore::with_clock(clock.clone())),
        clock,
    )
}

/// Wraps a function that counts its runs and returns `"{arg}:run{n}"`, so the stored
/// value tells which execution produced it.
fn counted(builder: DurableBuilder, runs: &Arc<AtomicU32>) -> Counted {
    let runs = Arc::clone(runs);
    builder.wrap(move |x: u32| {
        let runs = Arc::clone(&runs);
        async move {
            let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
            Ok::<_, String>(format!("{x}:run{n}"))
        }
    })
}

fn idempotent(store: &Store) -> DurableBuilder {
    Stent::new(store.clone())
        .durable("faults::idem")
        .idempotent()
        .lease(LEASE)
        .in_flight(InFlight::Reject)
}

fn cached(store: &Store) -> DurableBuilder {
    Stent::new(store.clone()).durable("faults::cache").cached()
}

fn runs() -> Arc<AtomicU32> {
    Arc::new(AtomicU32::new(0))
}

async fn state(store: &Store, ns: Namespace, key: &str) -> Option<(RecordState, Option<String>)> {
    store.inner().get(ns, key).await.unwrap().map(|r| {
        (
            r.state,
            r.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
        )
    })
}

/// Polls `check` every few milliseconds for up to ten seconds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---- claim -------------------------------------------------------------------------

#[tokio::test]
async fn claim_failure_fails_the_call_before_the_function_runs() {
    let (store, _clock) = store();
    let store = store.fail_nth(Op::Claim, 1);
    let runs = runs();
    let f = counted(idempotent(&store), &runs);
    let key = f.key_for(&1).unwrap();

    let e = f.call(1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable());
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the function did not run");
    assert_eq!(state(&store, IDEM, &key).await, None, "nothing was written");

    let t = f.call_traced(1).await.unwrap();
    assert_eq!((t.outcome.status, t.outcome.attempt), (Status::Executed, 1));
    let t = f.call_traced(1).await.unwrap();
    assert_eq!(
        (t.outcome.status, t.value.as_str()),
        (Status::Replayed, "1:run1")
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn claim_reply_lost_strands_the_claim_until_its_lease_lapses() {
    let (store, clock) = store();
    let store = store.lose_reply_nth(Op::Claim, 1);
    let runs = runs();
    let f = counted(idempotent(&store), &runs);
    let key = f.key_for(&1).unwrap();

    let e = f.call(1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable());
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(
        state(&store, IDEM, &key).await,
        Some((RecordState::InProgress, None)),
        "the claim took effect, owned by a token nobody holds"
    );

    let e = f.call(1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InFlight, "within the lease: {e}");
    assert!(e.retry_after().is_some());

    clock.advance(LEASE * 2);
    let t = f.call_traced(1).await.unwrap();
    assert_eq!(
        (t.outcome.status, t.outcome.attempt),
        (Status::Executed, 2),
        "after the lease the next caller takes over"
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the function ran once in all"
    );
}

#[tokio::test]
async fn claim_failure_while_waiting_ends_the_wait_with_the_store_error() {
    let (store, _clock) = store();
    let runs = runs();
    let gate = Arc::new(tokio::sync::Notify::new());
    let owner = Stent::new(store.clone())
        .durable("faults::wait")
        .idempotent()
        .wrap({
            let (runs, gate) = (Arc::clone(&runs), Arc::clone(&gate));
            move |x: u32| {
                let (runs, gate) = (Arc::clone(&runs), Arc::clone(&gate));
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    gate.notified().await;
                    Ok::<_, Infallible>(x)
                }
            }
        });
    let running = tokio::spawn({
        let owner = owner.clone();
        async move { owner.call_traced(7).await }
    });
    eventually("the owner to run", async || {
        runs.load(Ordering::SeqCst) == 1
    })
    .await;

    // A caller with its own wrapper (another process, in effect) waits on the owner; its
    // second poll of the store fails.
    let waiter = Stent::new(store.clone())
        .durable("faults::wait")
        .idempotent()
        .in_flight(InFlight::Wait {
            timeout: Duration::from_secs(30),
        })
        .wrap(|x: u32| async move { Ok::<_, Infallible>(x) });
    let polls = store.calls(Op::Claim);
    store.inject(Fault::fail(Op::Claim).nth(polls + 2));
    let started = Instant::now();
    let e = waiter.call(7).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the wait ended at the failure"
    );

    gate.notify_one();
    let t = running.await.unwrap().unwrap();
    assert_eq!(
        t.outcome.status,
        Status::Executed,
        "the owner is unaffected"
    );
    assert_eq!(
        waiter.call_traced(7).await.unwrap().outcome.status,
        Status::Replayed
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn slow_claim_abandoned_by_the_caller_leaves_nothing_behind() {
    let (store, _clock) = store();
    let store = store.delay_nth(Op::Claim, 1, Duration::from_secs(3600));
    let runs = runs();
    let f = counted(idempotent(&store), &runs);
    let key = f.key_for(&1).unwrap();

    let gave_up = tokio::time::timeout(Duration::from_millis(50), f.call(1)).await;
    assert!(gave_up.is_err(), "the claim was still waiting");
    assert_eq!(store.injected(Op::Claim), 1);
    assert_eq!(state(&store, IDEM, &key).await, None);
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    let t = f.call_traced(1).await.unwrap();
    assert_eq!((t.outcome.status, t.outcome.attempt), (Status::Executed, 1));
}

// ---- renew -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_failure_is_retried_and_the_lease_kept() {
    let (store, clock) = store();
    let store = store.fail_nth(Op::Renew, 1);
    let runs = runs();
    let gate = Arc::new(tokio::sync::Notify::new());
    let f = idempotent(&store).wrap({
        let (runs, gate) = (Arc::clone(&runs), Arc::clone(&gate));
        move |x: u32| {
            let (runs, gate) = (Arc::clone(&runs), Arc::clone(&gate));
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                gate.notified().await;
                Ok::<_, Infallible>(x)
            }
        }
    });
    let key = f.key_for(&1).unwrap();
    let first_lease = clock.now() + LEASE;
    let running = tokio::spawn({
        let f = f.clone();
        async move { f.call_traced(1).await }
    });
    eventually("the first renewal to fail", async || {
        store.injected(Op::Renew) == 1
    })
    .await;
    clock.advance(LEASE * 2 / 3);
    // A renewal after the failed one moves the lease past the first one's end.
    eventually("a later renewal", async || {
        let r = store.inner().get(IDEM, &key).await.unwrap().unwrap();
        r.lease_expires_at.unwrap() > first_lease
    })
    .await;
    clock.advance(LEASE * 2 / 3);

    let rival = counted(idempotent(&store), &runs);
    let e = rival.call(1).await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::InFlight,
        "the renewed lease holds: {e}"
    );

    gate.notify_one();
    let t = running.await.unwrap().unwrap();
    assert_eq!((t.outcome.status, t.outcome.attempt), (Status::Executed, 1));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        state(&store, IDEM, &key).await,
        Some((RecordState::Completed, Some("\u{1}1".into())))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_outage_past_the_lease_lets_a_takeover_win_and_the_owner_gets_lease_lost() {
    let (store, clock) = store();
    let store = store.fail_from(Op::Renew, 1);
    let runs = runs();
    let gate = Arc::new(tokio::sync::Notify::new());
    let slow = idempotent(&store).wrap({
        let (runs, gate) = (Arc::clone(&runs), Arc::clone(&gate));
        move |x: u32| {
            let (runs, gate) = (Arc::clone(&runs), Arc::clone(&gate));
            async move {
                let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                gate.notified().await;
                Ok::<_, String>(format!("{x}:run{n}"))
            }
        }
    });
    let key = slow.key_for(&1).unwrap();
    let running = tokio::spawn({
        let slow = slow.clone();
        async move { slow.call_traced(1).await }
    });
    eventually("the owner to run", async || {
        runs.load(Ordering::SeqCst) == 1
    })
    .await;
    eventually("a renewal to fail", async || store.injected(Op::Renew) >= 1).await;
    clock.advance(LEASE * 2);

    // Another process's caller finds the lease lapsed and takes over.
    let rival = counted(idempotent(&store), &runs);
    let t = rival.call_traced(1).await.unwrap();
    assert_eq!((t.outcome.status, t.outcome.attempt), (Status::Executed, 2));
    assert_eq!(t.value, "1:run2");

    gate.notify_one();
    let e = running.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "{e}");
    assert!(!e.is_retryable());
    assert_eq!(
        state(&store, IDEM, &key).await,
        Some((RecordState::Completed, Some("\u{1}\"1:run2\"".into()))),
        "the fenced-off owner wrote nothing"
    );
    let t = slow.call_traced(1).await.unwrap();
    assert_eq!(
        (t.outcome.status, t.value.as_str()),
        (Status::Replayed, "1:run2")
    );
}

// ---- complete ----------------------------------------------------------------------

#[tokio::test]
async fn complete_failures_are_retried_and_the_result_recorded() {
    let (store, _clock) = store();
    let store = store.with(Fault::fail(Op::Complete).calls(1..=2));
    let runs = runs();
    let f = counted(idempotent(&store), &runs);
    let key = f.key_for(&1).unwrap();

    let t = f.call_traced(1).await.unwrap();
    assert_eq!(
        (t.outcome.status, t.value.as_str()),
        (Status::Executed, "1:run1")
    );
    assert_eq!(store.calls(Op::Complete), 3, "two failures, then success");
    assert_eq!(
        state(&store, IDEM, &key).await,
        Some((RecordState::Completed, Some("\u{1}\"1:run1\"".into())))
    );
    assert_eq!(
        f.call_traced(1).await.unwrap().outcome.status,
        Status::Replayed
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn complete_outage_past_the_lease_fails_the_call_and_the_next_caller_takes_over() {
    let (store, clock) = store();
    let store = store.fail_from(Op::Complete, 1);
    let runs = runs();
    let f = counted(idempotent(&store), &runs);
    let key = f.key_for(&1).unwrap();

    let started = Instant::now();
    let e = f.call(1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable());
    assert!(store.calls(Op::Complete) > 1, "recording was retried");
    assert!(
        started.elapsed() >= LEASE / 4,
        "retried for a while before giving up: {:?}",
        started.elapsed()
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        state(&store, IDEM, &key).await,
        Some((RecordState::InProgress, None)),
        "the claim is left to lapse, not released"
    );
    assert_eq!(store.calls(Op::Release), 0);

    store.heal();
    let e = f.call(1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InFlight, "within the lease: {e}");
    clock.advance(LEASE * 2);
    let t = f.call_traced(1).await.unwrap();
    assert_eq!(
        (t.outcome.status, t.outcome.attempt, t.value.as_str()),
        (Status::Executed, 2, "1:run2"),
        "the unrecorded work runs again (at-least-once across store failures)"
    );
}

#[tokio::test]
async fn complete_reply_lost_is_read_back_and_the_call_succeeds() {
    let (store, _clock) = store();
    let store = store.lose_reply_nth(Op::Complete, 1);
    let runs = runs();
    let f = counted(idempotent(&store), &runs);

    let t = f
        .call_traced(1)
        .await
        .expect("the result was recorded; the call succeeds");
    assert_eq!(
        (t.outcome.status, t.value.as_str()),
        (Status::Executed, "1:run1")
    );
    assert_eq!(store.injected(Op::Complete), 1, "the fault was used");
    assert_eq!(store.calls(Op::Complete), 2, "resent once");
    assert_eq!(store.calls(Op::Get), 1, "read back once");
    assert_eq!(
        f.call_traced(1).await.unwrap().outcome.status,
        Status::Replayed
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn complete_reply_lost_with_failed_read_back_is_a_retryable_error_not_lease_lost() {
    let (store, _clock) = store();
    let store = store.lose_reply_nth(Op::Complete, 1).fail_nth(Op::Get, 1);
    let runs = runs();
    let f = counted(idempotent(&store), &runs);

    let e = f.call(1).await.unwrap_err();
    assert_ne!(
        e.kind(),
        ErrorKind::LeaseLost,
        "the result was recorded: {e}"
    );
    assert!(e.is_retryable(), "{e}");
    let t = f.call_traced(1).await.unwrap();
    assert_eq!(
        (t.outcome.status, t.value.as_str()),
        (Status::Replayed, "1:run1")
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

// ---- release -----------------------------------------------------------------------

fn failing_once(store: &Store, runs: &Arc<AtomicU32>) -> Counted {
    let runs = Arc::clone(runs);
    idempotent(store).wrap(move |x: u32| {
        let runs = Arc::clone(&runs);
        async move {
            match runs.fetch_add(1, Ordering::SeqCst) + 1 {
                1 => Err("first run fails".to_string()),
                n => Ok(format!("{x}:run{n}")),
            }
        }
    })
}

#[tokio::test]
async fn release_failure_after_a_function_error_leaves_the_claim_to_lapse() {
    let (store, clock) = store();
    let store = store.fail_nth(Op::Release, 1);
    let runs = runs();
    let f = failing_once(&store, &runs);
    let key = f.key_for(&1).unwrap();

    let e = f.call(1).await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Function,
        "the caller sees its own error: {e}"
    );
    assert_eq!(
        e.function_error().map(String::as_str),
        Some("first run fails")
    );
    assert_eq!(store.injected(Op::Release), 1);
    assert_eq!(
        state(&store, IDEM, &key).await,
        Some((RecordState::InProgress, None)),
        "the error was not stored; the claim stays until its lease lapses"
    );

    let e = f.call(1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InFlight, "{e}");
    clock.advance(LEASE * 2);
    let t = f.call_traced(1).await.unwrap();
    assert_eq!(
        (t.outcome.status, t.outcome.attempt, t.value.as_str()),
        (Status::Executed, 2, "1:run2"),
        "the retry executes"
    );
}

#[tokio::test]
async fn release_failure_after_a_panic_still_resumes_the_panic() {
    let (store, clock) = store();
    let store = store.fail_nth(Op::Release, 1);
    let runs = runs();
    let f = idempotent(&store).wrap({
        let runs = Arc::clone(&runs);
        move |x: u32| {
            let runs = Arc::clone(&runs);
            async move {
                if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("the function panics");
                }
                Ok::<_, Infallible>(x)
            }
        }
    });
    let key = f.key_for(&1).unwrap();
    let joined = tokio::spawn({
        let f = f.clone();
        async move { f.call(1).await }
    })
    .await;
    assert!(
        joined.unwrap_err().is_panic(),
        "the panic reaches the caller"
    );
    assert_eq!(store.injected(Op::Release), 1);
    assert_eq!(
        state(&store, IDEM, &key).await,
        Some((RecordState::InProgress, None))
    );
    clock.advance(LEASE * 2);
    let t = f.call_traced(1).await.unwrap();
    assert_eq!((t.outcome.status, t.outcome.attempt), (Status::Executed, 2));
}

// ---- get and put (cache) -----------------------------------------------------------

#[tokio::test]
async fn cache_read_failure_fails_closed_by_default() {
    let (store, _clock) = store();
    let store = store.fail_nth(Op::Get, 1);
    let runs = runs();
    let f = counted(cached(&store), &runs);

    let e = f.call(1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable());
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the function did not run");
    assert_eq!(store.calls(Op::Put), 0);
    assert_eq!(
        f.call_traced(1).await.unwrap().outcome.status,
        Status::Executed
    );
}

#[tokio::test]
async fn cache_read_failure_with_fail_open_runs_the_function() {
    let (store, _clock) = store();
    let store = store.fail_nth(Op::Get, 1);
    let runs = runs();
    let f = counted(cached(&store).fail_open(), &runs);
    let key = f.key_for(&1).unwrap();

    let t = f.call_traced(1).await.unwrap();
    assert_eq!(
        (t.outcome.status, t.value.as_str()),
        (Status::Executed, "1:run1")
    );
    assert_eq!(
        state(&store, CACHE, &key).await,
        Some((RecordState::Completed, Some("\u{1}\"1:run1\"".into()))),
        "the result is cached as usual"
    );
    assert_eq!(
        f.call_traced(1).await.unwrap().outcome.status,
        Status::CacheHit
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn cache_write_failure_fails_closed_after_the_function_ran() {
    let (store, _clock) = store();
    let store = store.fail_nth(Op::Put, 1);
    let runs = runs();
    let f = counted(cached(&store), &runs);
    let key = f.key_for(&1).unwrap();

    let e = f.call(1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the function ran");
    assert_eq!(state(&store, CACHE, &key).await, None, "nothing cached");

    let t = f.call_traced(1).await.unwrap();
    assert_eq!(
        (t.outcome.status, t.value.as_str()),
        (Status::Executed, "1:run2")
    );
    assert_eq!(
        f.call_traced(1).await.unwrap().outcome.status,
        Status::CacheHit
    );
}

#[tokio::test]
async fn cache_write_failure_with_fail_open_returns_the_value_uncached() {
    let (store, _clock) = store();
    let store = store.fail_nth(Op::Put, 1);
    let runs = runs();
    let f = counted(cached(&store).fail_open(), &runs);
    let key = f.key_for(&1).unwrap();

    let t = f.call_traced(1).await.unwrap();
    assert_eq!(
        (t.outcome.status, t.value.as_str()),
        (Status::Executed, "1:run1")
    );
    assert_eq!(state(&store, CACHE, &key).await, None, "nothing cached");
    let t = f.call_traced(1).await.unwrap();
    assert_eq!(
        (t.outcome.status, t.value.as_str()),
        (Status::Executed, "1:run2")
    );
    assert_eq!(
        f.call_traced(1).await.unwrap().outcome.status,
        Status::CacheHit
    );
}

#[tokio::test]
async fn single_flight_write_failure_with_fail_open_returns_the_value_at_once() {
    let (store, _clock) = store();
    let store = store.fail_nth(Op::Complete, 1);
    let runs = runs();
    let f = counted(cached(&store).single_flight().fail_open(), &runs);

    let started = Instant::now();
    let t = f.call_traced(1).await.unwrap();
    assert_eq!(
        (t.outcome.status, t.value.as_str()),
        (Status::Executed, "1:run1")
    );
    assert_eq!(
        store.calls(Op::Complete),
        1,
        "no retry: the value is returned"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

fn both(store: &Store) -> DurableBuilder {
    Stent::new(store.clone())
        .durable("faults::both")
        .idempotent()
        .cached()
        .fail_open()
}

#[tokio::test]
async fn cache_write_failure_with_idempotency_is_absorbed_by_the_idempotency_record() {
    let (store, _clock) = store();
    let store = store.fail_nth(Op::Put, 1);
    let runs = runs();
    let f = counted(both(&store), &runs);
    let key = f.key_for(&1).unwrap();

    let t = f.call_traced(1).await.unwrap();
    assert_eq!(t.outcome.status, Status::Executed);
    assert_eq!(state(&store, CACHE, &key).await, None);
    assert_eq!(
        state(&store, IDEM, &key).await,
        Some((RecordState::Completed, Some("\u{1}\"1:run1\"".into())))
    );
    let t = f.call_traced(1).await.unwrap();
    assert_eq!(
        (t.outcome.status, t.value.as_str()),
        (Status::Replayed, "1:run1")
    );
    assert!(
        state(&store, CACHE, &key).await.is_some(),
        "the replay fills the cache"
    );
    assert_eq!(
        f.call_traced(1).await.unwrap().outcome.status,
        Status::CacheHit
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn cache_read_failure_with_idempotency_fails_closed_even_with_fail_open() {
    let (store, _clock) = store();
    let store = store.fail_nth(Op::Get, 1);
    let runs = runs();
    let f = counted(both(&store), &runs);

    let e = f.call(1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(store.calls(Op::Claim), 0, "nothing was claimed");
    assert_eq!(
        f.call_traced(1).await.unwrap().outcome.status,
        Status::Executed
    );
}

#[tokio::test]
async fn single_flight_claim_failure_fails_closed_or_runs_with_fail_open() {
    let (store, _clock) = store();
    let store = store.fail_nth(Op::Claim, 1);
    let runs = runs();
    let f = counted(cached(&store).single_flight(), &runs);
    let e = f.call(1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the function did not run");

    let store = store.fail_nth(Op::Claim, 1);
    let f = counted(cached(&store).single_flight().fail_open(), &runs);
    let t = f.call_traced(2).await.unwrap();
    assert_eq!(
        (t.outcome.status, t.value.as_str()),
        (Status::Executed, "2:run1")
    );
    let key = f.key_for(&2).unwrap();
    let cached = state(&store, CACHE, &key).await;
    assert_eq!(
        cached.map(|(s, _)| s),
        Some(RecordState::Completed),
        "cached as usual"
    );
    assert_eq!(
        f.call_traced(2).await.unwrap().outcome.status,
        Status::CacheHit
    );
}
