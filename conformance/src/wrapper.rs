//! The wrapper API end to end: what a user of `Stent::durable(...)` sees, on this store.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use stent_core::{
    ClaimOutcome, ErrorKind, Execution, InFlight, LeaseToken, ResultStore, Status, Stent,
};

use crate::support::{CACHE, IDEM, LIVE, SHORT, acquire, claim, eventually};

fn counter() -> Arc<AtomicU32> {
    Arc::new(AtomicU32::new(0))
}

fn count(c: &AtomicU32) -> u32 {
    c.load(Ordering::SeqCst)
}

/// 64 concurrent callers on one key: the function runs exactly once and all get its value.
///
/// Half the callers share one wrapped function (and may coalesce in-process); the other half
/// each build their own, so every one of them races at the store.
pub async fn idempotent_call_runs_once_under_64_concurrent_callers(store: Arc<dyn ResultStore>) {
    let runs = counter();
    let stent = Stent::from_arc(store);
    let make = || {
        let runs = Arc::clone(&runs);
        stent.durable("payments::charge").idempotent().wrap(
            move |(order, amount): (String, u64)| {
                let runs = Arc::clone(&runs);
                async move {
                    let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, Infallible>(format!("{order}:{amount}:run{n}"))
                }
            },
        )
    };
    let shared = make();
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let f = if i % 2 == 0 { shared.clone() } else { make() };
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                f.call_traced(("ord-1".to_string(), 500)).await
            })
        })
        .collect();
    let mut executed = 0;
    for t in tasks {
        let t = t
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("caller failed: {e}"));
        assert_eq!(t.value, "ord-1:500:run1");
        if t.outcome.status == Status::Executed {
            executed += 1;
        }
    }
    assert_eq!(count(&runs), 1, "the function must run exactly once");
    assert_eq!(executed, 1);
}

/// A second call with the same arguments replays the stored value without running the function.
pub async fn idempotent_call_replays_the_stored_result(store: Arc<dyn ResultStore>) {
    let runs = counter();
    let f = Stent::from_arc(store)
        .durable("emails::send")
        .idempotent()
        .wrap({
            let runs = Arc::clone(&runs);
            move |user: String| {
                let runs = Arc::clone(&runs);
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(vec![user, "sent".to_string()])
                }
            }
        });
    let first = f.call_traced("u1".into()).await.unwrap();
    assert_eq!(first.outcome.status, Status::Executed);
    assert_eq!(first.outcome.attempt, 1);
    for _ in 0..3 {
        let again = f.call_traced("u1".into()).await.unwrap();
        assert_eq!(again.outcome.status, Status::Replayed);
        assert_eq!(again.value, first.value);
        assert_eq!(again.outcome.key, first.outcome.key);
    }
    assert_eq!(f.call("u2".into()).await.unwrap(), ["u2", "sent"]);
    assert_eq!(count(&runs), 2);
}

/// `()`, `None`, `0`, `false`, `""` and empty collections replay exactly, not as misses.
pub async fn empty_results_replay_exactly(store: Arc<dyn ResultStore>) {
    let stent = Stent::from_arc(store);
    macro_rules! check {
        ($name:literal, $value:expr, $ty:ty) => {{
            let runs = counter();
            let f = stent.durable($name).idempotent().cached().wrap({
                let runs = Arc::clone(&runs);
                move |_: ()| {
                    let runs = Arc::clone(&runs);
                    async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        Ok::<$ty, Infallible>($value)
                    }
                }
            });
            assert_eq!(f.call(()).await.unwrap(), $value);
            let again = f.call_traced(()).await.unwrap();
            assert_eq!(again.value, $value, $name);
            assert!(
                again.outcome.status.is_hit(),
                "{}: {:?}",
                $name,
                again.outcome
            );
            assert_eq!(count(&runs), 1, "{} re-executed", $name);
        }};
    }
    check!("unit", (), ());
    check!("none", None, Option<u8>);
    check!("zero", 0, u64);
    check!("false", false, bool);
    check!("empty-string", String::new(), String);
    check!("empty-vec", Vec::<u8>::new(), Vec<u8>);
}

/// A function error is returned as-is and not stored: the next call executes again.
pub async fn errors_are_not_stored_and_a_retry_executes(store: Arc<dyn ResultStore>) {
    let runs = counter();
    let f = Stent::from_arc(store.clone())
        .durable("flaky")
        .idempotent()
        .wrap({
            let runs = Arc::clone(&runs);
            move |_: ()| {
                let runs = Arc::clone(&runs);
                async move {
                    match runs.fetch_add(1, Ordering::SeqCst) {
                        0 => Err("gateway timeout".to_string()),
                        _ => Ok(42u32),
                    }
                }
            }
        });
    let e = f.call(()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Function);
    assert_eq!(
        e.function_error().map(String::as_str),
        Some("gateway timeout")
    );
    let key = f.key_for(&()).unwrap();
    assert_eq!(
        store.get(IDEM, &key).await.unwrap(),
        None,
        "failed claim must be released"
    );
    assert_eq!(f.call(()).await.unwrap(), 42);
    assert_eq!(f.call(()).await.unwrap(), 42);
    assert_eq!(count(&runs), 2);
}

/// Errors selected by `store_errors_if` are stored and replayed; others are not.
pub async fn store_errors_if_replays_terminal_errors(store: Arc<dyn ResultStore>) {
    let runs = counter();
    let f = Stent::from_arc(store)
        .durable("cards::charge")
        .idempotent()
        .wrap({
            let runs = Arc::clone(&runs);
            move |card: String| {
                let runs = Arc::clone(&runs);
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    if card == "declined" {
                        Err::<u8, _>(format!("card {card}"))
                    } else {
                        Err("network".to_string())
                    }
                }
            }
        })
        .store_errors_if(|e: &String| e.starts_with("card"));
    for _ in 0..3 {
        let e = f.call("declined".into()).await.unwrap_err();
        assert_eq!(
            e.function_error().map(String::as_str),
            Some("card declined")
        );
    }
    assert_eq!(
        count(&runs),
        1,
        "terminal error must be replayed, not re-run"
    );
    for _ in 0..2 {
        assert_eq!(
            f.call("other".into())
                .await
                .unwrap_err()
                .function_error()
                .unwrap(),
            "network"
        );
    }
    assert_eq!(count(&runs), 3, "transient errors are not stored");
}

/// A panicking function releases its claim, then the panic continues; the next call runs.
pub async fn panic_releases_the_claim(store: Arc<dyn ResultStore>) {
    let runs = counter();
    let f = Stent::from_arc(store.clone())
        .durable("panicky")
        .idempotent()
        .wrap({
            let runs = Arc::clone(&runs);
            move |_: ()| {
                let runs = Arc::clone(&runs);
                async move {
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("boom");
                    }
                    Ok::<_, Infallible>("recovered".to_string())
                }
            }
        });
    let f2 = f.clone();
    let joined = tokio::spawn(async move { f2.call(()).await }).await;
    assert!(joined.unwrap_err().is_panic());
    let key = f.key_for(&()).unwrap();
    assert_eq!(
        store.get(IDEM, &key).await.unwrap(),
        None,
        "claim released before the panic resumed"
    );
    let t = f.call_traced(()).await.unwrap();
    assert_eq!(
        (t.value, t.outcome.status, t.outcome.attempt),
        ("recovered".to_string(), Status::Executed, 1)
    );
}

/// Dropping a call's future releases its claim, so the next call runs at once.
pub async fn cancellation_releases_the_claim(store: Arc<dyn ResultStore>) {
    let runs = counter();
    let f = Stent::from_arc(store.clone())
        .durable("slow")
        .idempotent()
        .wrap({
            let runs = Arc::clone(&runs);
            move |_: ()| {
                let runs = Arc::clone(&runs);
                async move {
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    Ok::<_, Infallible>(7u8)
                }
            }
        });
    let key = f.key_for(&()).unwrap();
    let cancelled = tokio::time::timeout(Duration::from_millis(300), f.call(())).await;
    assert!(cancelled.is_err(), "the call should have been cancelled");
    eventually("the cancelled claim is released", || async {
        store.get(IDEM, &key).await.unwrap().is_none().then_some(())
    })
    .await;
    let t = f.clone().call_traced(()).await.unwrap();
    assert_eq!(
        (t.value, t.outcome.status, t.outcome.attempt),
        (7, Status::Executed, 1)
    );
}

/// When the owner crashed (its lease lapses), the next caller takes over with attempt 2, visible to the function.
pub async fn takeover_after_crash_runs_attempt_two(store: Arc<dyn ResultStore>) {
    let f = Stent::from_arc(store.clone())
        .durable("jobs::run")
        .idempotent()
        .wrap_with_context(|job: String, exec: Execution| async move {
            assert_eq!(Execution::current().as_ref(), Some(&exec));
            Ok::<_, Infallible>((job, exec.attempt, exec.operation_id()))
        });
    let key = f.key_for(&"j1".to_string()).unwrap();
    // A "crashed" owner: claimed with a short lease, never renewed, never completed.
    let (_dead, _) = acquire(&*store, IDEM, &key, SHORT).await;
    let t = f.call_traced("j1".into()).await.unwrap();
    assert_eq!(t.outcome.status, Status::Executed);
    assert_eq!(t.outcome.attempt, 2);
    assert_eq!(t.value.1, 2, "the function sees its attempt number");
    assert_eq!(t.value.2.len(), 32);
    let again = f.call_traced("j1".into()).await.unwrap();
    assert_eq!(
        (again.outcome.status, again.outcome.attempt),
        (Status::Replayed, 2)
    );
    assert_eq!(again.value.2, t.value.2, "operation id is stable");
}

/// When another caller took the key over mid-run, completion is refused with `LeaseLost` and nothing is recorded.
pub async fn lease_lost_refuses_to_record_the_result(store: Arc<dyn ResultStore>) {
    let thief = LeaseToken::generate();
    let f = Stent::from_arc(store.clone())
        .durable("stolen")
        .idempotent()
        .wrap({
            let store = Arc::clone(&store);
            let thief = thief.clone();
            move |_: ()| {
                let store = Arc::clone(&store);
                let thief = thief.clone();
                async move {
                    let key = Execution::current().expect("inside an execution").key;
                    // Simulate a takeover: the record vanishes and someone else claims it.
                    store.delete(IDEM, &key).await.unwrap();
                    assert!(matches!(
                        claim(&*store, IDEM, &key, &thief, LIVE).await,
                        ClaimOutcome::Acquired { .. }
                    ));
                    Ok::<_, Infallible>("mine".to_string())
                }
            }
        });
    let e = f.call(()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "{e}");
    let key = f.key_for(&()).unwrap();
    let r = store.get(IDEM, &key).await.unwrap().unwrap();
    assert_eq!(r.value, None, "nothing recorded for the fenced-off caller");
    assert_eq!(r.lease_token, Some(thief));
}

/// A function running 5x longer than its lease is not duplicated: the lease is renewed.
pub async fn long_running_call_keeps_its_lease(store: Arc<dyn ResultStore>) {
    let runs = counter();
    let stent = Stent::from_arc(store);
    let make = || {
        let runs = Arc::clone(&runs);
        stent
            .durable("reports::generate")
            .idempotent()
            .lease(Duration::from_millis(1000))
            .wrap(move |_: ()| {
                let runs = Arc::clone(&runs);
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5000)).await;
                    Ok::<_, Infallible>("report".to_string())
                }
            })
    };
    let start = tokio::time::Instant::now();
    let owner = tokio::spawn({
        let f = make();
        async move { f.call_traced(()).await }
    });
    let mut joiners = Vec::new();
    // Joiners arrive after the first lease would have lapsed without renewal; each has its
    // own wrapped function, so it waits at the store rather than in this process.
    for at in [1200, 2400, 3600] {
        tokio::time::sleep_until(start + Duration::from_millis(at)).await;
        let f = make();
        joiners.push(tokio::spawn(async move { f.call_traced(()).await }));
    }
    assert_eq!(
        owner.await.unwrap().unwrap().outcome.status,
        Status::Executed
    );
    for j in joiners {
        let t = j.await.unwrap().unwrap();
        assert_eq!(t.value, "report");
        assert_ne!(t.outcome.status, Status::Executed);
    }
    assert_eq!(count(&runs), 1);
}

/// With `InFlight::Reject`, a call on a key in flight fails at once with a retryable `InFlight` error.
pub async fn in_flight_reject_returns_in_flight_error(store: Arc<dyn ResultStore>) {
    let f = Stent::from_arc(store.clone())
        .durable("busy")
        .idempotent()
        .in_flight(InFlight::Reject)
        .wrap(|_: ()| async { Ok::<_, Infallible>(1u8) });
    let key = f.key_for(&()).unwrap();
    let (_owner, _) = acquire(&*store, IDEM, &key, LIVE).await;
    let e = f.call(()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InFlight);
    assert!(e.is_retryable());
    assert!(e.retry_after().is_some_and(|d| d > Duration::ZERO), "{e:?}");
    let waiting = Stent::from_arc(store)
        .durable("busy")
        .idempotent()
        .in_flight(InFlight::Wait {
            timeout: Duration::from_millis(300),
        })
        .wrap(|_: ()| async { Ok::<_, Infallible>(1u8) });
    let e = waiting.call(()).await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::InFlight,
        "wait policy gives up after its timeout"
    );
}

/// A new version is a new keyspace: it executes again, and the old version still replays.
pub async fn version_bump_invalidates(store: Arc<dyn ResultStore>) {
    let stent = Stent::from_arc(store);
    let runs = counter();
    let make = |version: &str| {
        let runs = Arc::clone(&runs);
        stent
            .durable("process_data")
            .cached()
            .version(version)
            .wrap(move |x: u32| {
                let runs = Arc::clone(&runs);
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(x * 2)
                }
            })
    };
    let v1 = make("v1");
    let v2 = make("v2");
    assert_eq!(v1.call(21).await.unwrap(), 42);
    assert_eq!(
        v1.call_traced(21).await.unwrap().outcome.status,
        Status::CacheHit
    );
    let t = v2.call_traced(21).await.unwrap();
    assert_eq!(t.outcome.status, Status::Executed);
    assert_eq!(t.outcome.key, "process_data|v2|[21]");
    assert_eq!(
        v1.call_traced(21).await.unwrap().outcome.status,
        Status::CacheHit
    );
    assert_eq!(count(&runs), 2);
}

/// The same custom key in two functions names two records (keys are scoped by function and version).
pub async fn custom_keys_of_two_functions_never_collide(store: Arc<dyn ResultStore>) {
    let stent = Stent::from_arc(store);
    let a = stent
        .durable("orders::process")
        .idempotent()
        .key(|(id, _retry): &(String, u32)| format!("order:{id}"))
        .wrap(
            |(id, _): (String, u32)| async move { Ok::<_, Infallible>(format!("processed {id}")) },
        );
    let b = stent
        .durable("orders::refund")
        .idempotent()
        .key(|(id, _retry): &(String, u32)| format!("order:{id}"))
        .wrap(
            |(id, _): (String, u32)| async move { Ok::<_, Infallible>(format!("refunded {id}")) },
        );
    assert_eq!(a.call(("o1".into(), 0)).await.unwrap(), "processed o1");
    assert_eq!(b.call(("o1".into(), 0)).await.unwrap(), "refunded o1");
    // The retry counter is not part of the key: a retry replays.
    let t = a.call_traced(("o1".into(), 5)).await.unwrap();
    assert_eq!(
        (t.value.as_str(), t.outcome.status),
        ("processed o1", Status::Replayed)
    );
    assert_eq!(t.outcome.key, "orders::process|None|order:o1");
}

/// With `shared_key`, functions that deliberately share a correlation id share its result.
pub async fn shared_keys_are_shared_across_functions(store: Arc<dyn ResultStore>) {
    let stent = Stent::from_arc(store);
    let runs = counter();
    let make = |name: &str| {
        let runs = Arc::clone(&runs);
        stent
            .durable(name)
            .idempotent()
            .key(|req: &(String, u8)| format!("corr:{}", req.0))
            .shared_key()
            .wrap(move |req: (String, u8)| {
                let runs = Arc::clone(&runs);
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(req.1)
                }
            })
    };
    let (web, worker) = (make("web::submit"), make("worker::submit"));
    assert_eq!(web.call(("c-9".into(), 1)).await.unwrap(), 1);
    let t = worker.call_traced(("c-9".into(), 2)).await.unwrap();
    assert_eq!((t.value, t.outcome.status), (1, Status::Replayed));
    assert_eq!(t.outcome.key, "corr:c-9");
    assert_eq!(count(&runs), 1);
}

/// With payload validation, reusing a key with different arguments is `PayloadMismatch` and reveals nothing.
pub async fn payload_mismatch_is_refused(store: Arc<dyn ResultStore>) {
    let f = Stent::from_arc(store)
        .durable("billing::charge")
        .idempotent()
        .validate_payload()
        .key(|(order, _amount): &(String, u64)| order.clone())
        .wrap(|(order, amount): (String, u64)| async move {
            Ok::<_, Infallible>(format!("charged {order} {amount}"))
        });
    assert_eq!(f.call(("o1".into(), 500)).await.unwrap(), "charged o1 500");
    assert_eq!(f.call(("o1".into(), 500)).await.unwrap(), "charged o1 500");
    let e = f.call(("o1".into(), 999)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PayloadMismatch);
    assert!(
        !e.to_string().contains("charged"),
        "must not reveal the stored result: {e}"
    );
}

/// A cached result is reused until its TTL, then recomputed.
pub async fn cached_call_expires_after_ttl(store: Arc<dyn ResultStore>) {
    let runs = counter();
    let f = Stent::from_arc(store.clone())
        .durable("fx::rates")
        .cached()
        .ttl(Duration::from_millis(400))
        .wrap({
            let runs = Arc::clone(&runs);
            move |date: String| {
                let runs = Arc::clone(&runs);
                async move {
                    let n = runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(format!("{date}:{n}"))
                }
            }
        });
    assert_eq!(f.call("2026-01-01".into()).await.unwrap(), "2026-01-01:0");
    let key = f.key_for(&"2026-01-01".to_string()).unwrap();
    let r = store
        .get(CACHE, &key)
        .await
        .unwrap()
        .expect("cached record");
    assert!(r.expires_at.is_some());
    let recomputed = eventually("the cached value expires", || async {
        let t = f.call_traced("2026-01-01".into()).await.unwrap();
        (t.outcome.status == Status::Executed).then_some(t.value)
    })
    .await;
    assert_eq!(recomputed, "2026-01-01:1");
}

/// An idempotency record with a retention expires, and the same call then executes again as attempt 1, also on a function cached too (its cached copy is kept no longer than the record).
pub async fn retention_expires_idempotency_records(store: Arc<dyn ResultStore>) {
    for (name, cached) in [("daily_task", false), ("weekly_digest", true)] {
        let runs = counter();
        let b = Stent::from_arc(store.clone()).durable(name).idempotent();
        let b = if cached { b.cached() } else { b };
        let f = b.retention(Duration::from_millis(400)).wrap({
            let runs = Arc::clone(&runs);
            move |_: ()| {
                let runs = Arc::clone(&runs);
                async move { Ok::<_, Infallible>(runs.fetch_add(1, Ordering::SeqCst)) }
            }
        });
        assert_eq!(f.call(()).await.unwrap(), 0);
        let t = eventually("the idempotency record expires", || async {
            let t = f.call_traced(()).await.unwrap();
            (t.outcome.status == Status::Executed).then_some(t)
        })
        .await;
        assert_eq!((t.value, t.outcome.attempt), (1, 1), "{name}");
    }
}

/// A replay of a function both idempotent and cached caches its value again until the idempotency record expires, not a full TTL past it.
pub async fn both_modes_recache_a_replay_until_the_record_expires(store: Arc<dyn ResultStore>) {
    let f = Stent::from_arc(store.clone())
        .durable("monthly_invoice")
        .idempotent()
        .cached()
        .ttl(Duration::from_secs(1))
        .retention(Duration::from_secs(3))
        .wrap(|n: u32| async move { Ok::<_, Infallible>(n) });
    let key = f.call_traced(7).await.unwrap().outcome.key;
    // Past the TTL, 0.7 s before the retention ends: the cached copy is gone, the record not.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let t = f.call_traced(7).await.unwrap();
    assert_eq!(t.outcome.status, Status::Replayed);
    let expiry = |ns| {
        let store = store.clone();
        let key = key.clone();
        async move {
            let r = store.get(ns, &key).await.unwrap().expect("a record");
            r.expires_at.expect("an expiry").as_millis()
        }
    };
    let (cached, recorded) = (expiry(CACHE).await, expiry(IDEM).await);
    assert!(
        cached <= recorded + 100,
        "the cached copy expires at {cached}, {} ms after its record",
        cached - recorded
    );
}

/// A function both idempotent and cached writes both namespaces, and serves later calls from the cache.
pub async fn both_modes_write_cache_and_idempotency(store: Arc<dyn ResultStore>) {
    let runs = counter();
    let f = Stent::from_arc(store.clone())
        .durable("process_and_store")
        .idempotent()
        .cached()
        .version("v1")
        .wrap({
            let runs = Arc::clone(&runs);
            move |id: String| {
                let runs = Arc::clone(&runs);
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(format!("stored {id}"))
                }
            }
        });
    let t = f.call_traced("d1".into()).await.unwrap();
    assert_eq!(t.outcome.status, Status::Executed);
    assert!(store.get(IDEM, &t.outcome.key).await.unwrap().is_some());
    assert!(store.get(CACHE, &t.outcome.key).await.unwrap().is_some());
    assert_eq!(
        f.call_traced("d1".into()).await.unwrap().outcome.status,
        Status::CacheHit
    );
    // With the cache entry gone, the idempotency record still prevents re-execution.
    store.clear(CACHE).await.unwrap();
    assert_eq!(
        f.call_traced("d1".into()).await.unwrap().outcome.status,
        Status::Replayed
    );
    assert!(
        store.get(CACHE, &t.outcome.key).await.unwrap().is_some(),
        "replay refills the cache"
    );
    assert_eq!(count(&runs), 1);
}

/// With payload validation, a cache hit is checked like a replay: other arguments under the
/// same key are `PayloadMismatch` (cache only, and cache in front of idempotency), the stored
/// value is never revealed, and a cached value stored without a fingerprint is a miss.
pub async fn payload_validation_guards_cache_hits(store: Arc<dyn ResultStore>) {
    for (name, idempotent) in [("pay::cached", false), ("pay::both", true)] {
        let runs = counter();
        let builder = Stent::from_arc(store.clone()).durable(name).cached();
        let builder = if idempotent {
            builder.idempotent()
        } else {
            builder
        };
        let f = builder
            .validate_payload()
            .key(|o: &(String, u64)| o.0.clone())
            .wrap({
                let runs = Arc::clone(&runs);
                move |(id, amount): (String, u64)| {
                    let runs = Arc::clone(&runs);
                    async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, Infallible>(format!("SECRET-{id}-{amount}"))
                    }
                }
            });
        let first = f.call_traced(("o-1".into(), 100)).await.unwrap();
        assert_eq!(first.value, "SECRET-o-1-100");
        let cached = store.get(CACHE, &first.outcome.key).await.unwrap().unwrap();
        assert!(
            cached.fingerprint.is_some(),
            "{name}: cache write keeps the fingerprint"
        );
        let hit = f.call_traced(("o-1".into(), 100)).await.unwrap();
        assert_eq!(hit.outcome.status, Status::CacheHit, "{name}");
        let e = f.call_traced(("o-1".into(), 999)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PayloadMismatch, "{name}: {e:?}");
        assert!(
            !format!("{e:?}").contains("SECRET"),
            "{name} revealed: {e:?}"
        );
        assert_eq!(count(&runs), 1, "{name}");
    }
    // A value cached by a function without validation carries no fingerprint: a validating
    // function sharing the key cannot tell whose arguments made it, so it recomputes.
    let stent = Stent::from_arc(store.clone());
    let plain = stent
        .durable("pay::shared")
        .cached()
        .key(|o: &(String, u64)| o.0.clone())
        .shared_key()
        .wrap(
            |(id, a): (String, u64)| async move { Ok::<_, Infallible>(format!("SECRET-{id}-{a}")) },
        );
    let checked = stent
        .durable("pay::shared")
        .cached()
        .validate_payload()
        .key(|o: &(String, u64)| o.0.clone())
        .shared_key()
        .wrap(|(id, a): (String, u64)| async move { Ok::<_, Infallible>(format!("own-{id}-{a}")) });
    plain.call(("o-2".into(), 1)).await.unwrap();
    let t = checked.call_traced(("o-2".into(), 2)).await.unwrap();
    assert_eq!(
        (t.value.as_str(), t.outcome.status),
        ("own-o-2-2", Status::Executed)
    );
    assert_eq!(
        checked
            .call_traced(("o-2".into(), 2))
            .await
            .unwrap()
            .outcome
            .status,
        Status::CacheHit
    );
    assert_eq!(
        checked.call(("o-2".into(), 1)).await.unwrap_err().kind(),
        ErrorKind::PayloadMismatch
    );
}

/// With `InFlight::Reject`, an identical call in the same process meets the conflict at the
/// store, as a call from another process does: `InFlight` with `retry_after` the time until
/// the running call's lease lapses.
pub async fn in_flight_reject_in_process_reports_the_lease(store: Arc<dyn ResultStore>) {
    let lease = Duration::from_secs(20);
    let started = Arc::new(tokio::sync::Notify::new());
    let finish = Arc::new(tokio::sync::Notify::new());
    let f = Stent::from_arc(store)
        .durable("busy::in_process")
        .idempotent()
        .lease(lease)
        .in_flight(InFlight::Reject)
        .wrap({
            let (started, finish) = (Arc::clone(&started), Arc::clone(&finish));
            move |_: ()| {
                let (started, finish) = (Arc::clone(&started), Arc::clone(&finish));
                async move {
                    started.notify_one();
                    finish.notified().await;
                    Ok::<_, Infallible>(7u8)
                }
            }
        });
    let running = tokio::spawn({
        let f = f.clone();
        async move { f.call(()).await }
    });
    started.notified().await;
    let e = f.call(()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InFlight, "{e:?}");
    assert!(e.is_retryable());
    let after = e.retry_after().expect("retry_after");
    assert!(
        after > lease / 2 && after <= lease,
        "retry_after {after:?} should be the running call's remaining lease (of {lease:?})"
    );
    finish.notify_one();
    assert_eq!(running.await.unwrap().unwrap(), 7);
    assert_eq!(
        f.call_traced(()).await.unwrap().outcome.status,
        Status::Replayed
    );
}

/// With payload validation, a call that finds the same key in flight with other arguments
/// is `PayloadMismatch` at once: it neither waits for nor joins the running call's result.
pub async fn payload_validation_guards_joins(store: Arc<dyn ResultStore>) {
    let started = Arc::new(tokio::sync::Notify::new());
    let finish = Arc::new(tokio::sync::Notify::new());
    let f = Stent::from_arc(store)
        .durable("pay::join")
        .idempotent()
        .validate_payload()
        .key(|o: &(String, u64)| o.0.clone())
        .wrap({
            let (started, finish) = (Arc::clone(&started), Arc::clone(&finish));
            move |(id, amount): (String, u64)| {
                let (started, finish) = (Arc::clone(&started), Arc::clone(&finish));
                async move {
                    started.notify_one();
                    finish.notified().await;
                    Ok::<_, Infallible>(format!("SECRET-{id}-{amount}"))
                }
            }
        });
    let running = tokio::spawn({
        let f = f.clone();
        async move { f.call(("o-3".into(), 100)).await }
    });
    started.notified().await;
    let e = tokio::time::timeout(Duration::from_secs(10), f.call(("o-3".into(), 999)))
        .await
        .expect("a mismatching call must not wait for the running one")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PayloadMismatch, "{e:?}");
    finish.notify_one();
    assert_eq!(running.await.unwrap().unwrap(), "SECRET-o-3-100");
    let e = f.call(("o-3".into(), 999)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PayloadMismatch);
    assert!(!format!("{e:?}").contains("SECRET"), "{e:?}");
}

/// `invalidate` deletes one call's cached result, and `invalidate_function` every cached
/// result of a function or of one of its versions, never another function's (even one whose
/// name extends it) nor a result under a shared key.
pub async fn invalidation_reaches_one_call_or_one_function(store: Arc<dyn ResultStore>) {
    let stent = Stent::from_arc(store);
    let rates = |name: &str, version: &str| {
        let f = |date: String| async move { Ok::<_, Infallible>(format!("rates of {date}")) };
        stent.durable(name).cached().version(version).wrap(f)
    };
    let (v1, v2, longer) = (
        rates("fx::rates", "v1"),
        rates("fx::rates", "v2"),
        rates("fx::rates_eu", "v1"),
    );
    let shared = stent
        .durable("fx::rates")
        .cached()
        .version("v1")
        .shared_key()
        .key(|date: &String| format!("rates:{date}"))
        .wrap(|date: String| async move { Ok::<_, Infallible>(format!("rates of {date}")) });
    let status = |t: stent_core::Traced<String>| t.outcome.status;
    for f in [&v1, &v2, &longer, &shared] {
        for date in ["d1", "d2"] {
            f.call(date.to_owned()).await.expect("seeding");
        }
    }
    assert!(v1.invalidate(&"d1".to_owned()).await.unwrap());
    assert!(!v1.invalidate(&"d1".to_owned()).await.unwrap());
    let again = v1.call_traced("d1".to_owned()).await.unwrap();
    assert_eq!(status(again), Status::Executed);
    let d2 = v1.call_traced("d2".to_owned()).await.unwrap();
    assert_eq!(status(d2), Status::CacheHit);

    let deleted = stent.invalidate_function("fx::rates", Some("v1")).await;
    assert_eq!(deleted.unwrap(), 2);
    let gone = v1.call_traced("d2".to_owned()).await.unwrap();
    assert_eq!(status(gone), Status::Executed);
    let kept = v2.call_traced("d2".to_owned()).await.unwrap();
    assert_eq!(status(kept), Status::CacheHit);

    let deleted = stent.invalidate_function("fx::rates", None).await;
    assert_eq!(
        deleted.unwrap(),
        3,
        "v1's d2 and v2's two, of both versions"
    );
    for f in [&longer, &shared] {
        let kept = f.call_traced("d1".to_owned()).await.unwrap();
        assert_eq!(status(kept), Status::CacheHit);
    }
    let err = stent
        .invalidate_function("fx|rates", None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

/// With `single_flight`, 32 concurrent misses of one cached key, each through a wrapper of
/// its own, run the function once and all get its value; a failed run leaves the key free
/// for the next caller.
pub async fn single_flight_runs_a_cached_miss_once(store: Arc<dyn ResultStore>) {
    let stent = Stent::from_arc(store);
    let runs = counter();
    let make = |fail: bool| {
        let runs = Arc::clone(&runs);
        stent
            .durable("reports::daily")
            .cached()
            .ttl(Duration::from_secs(600))
            .single_flight()
            .wrap(move |day: String| {
                let runs = Arc::clone(&runs);
                async move {
                    let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    if fail {
                        return Err(format!("run {n} failed"));
                    }
                    Ok(format!("report of {day} by run {n}"))
                }
            })
    };
    let err = make(true)
        .call("d1".into())
        .await
        .expect_err("the first run fails");
    assert_eq!(
        err.function_error().map(String::as_str),
        Some("run 1 failed")
    );
    let barrier = Arc::new(tokio::sync::Barrier::new(32));
    let calls: Vec<_> = (0..32)
        .map(|_| {
            let (f, barrier) = (make(false), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                f.call_traced("d1".to_owned()).await
            })
        })
        .collect();
    let mut executed = 0;
    for call in calls {
        let t = call
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("a caller failed: {e}"));
        assert_eq!(t.value, "report of d1 by run 2");
        executed += usize::from(t.outcome.status == Status::Executed);
    }
    assert_eq!((executed, count(&runs)), (1, 2));
    let hit = make(false).call_traced("d1".into()).await.unwrap();
    assert_eq!(hit.outcome.status, Status::CacheHit);
}

/// With `stale_if_error`, a value past its TTL but within the window is returned
/// (`Stale`) when the function fails, replaced when it succeeds, and past the window the
/// error is the caller's.
pub async fn stale_if_error_returns_a_recent_value_when_the_function_fails(
    store: Arc<dyn ResultStore>,
) {
    let stent = Stent::from_arc(store);
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let runs = counter();
    let quote = |ttl: Duration, window: Duration| {
        let (failing, runs) = (Arc::clone(&failing), Arc::clone(&runs));
        stent
            .durable("fx::quote")
            .cached()
            .ttl(ttl)
            .stale_if_error(window)
            .wrap(move |pair: String| {
                let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                let fail = failing.load(Ordering::SeqCst);
                async move {
                    if fail {
                        return Err(format!("upstream down (run {n})"));
                    }
                    Ok(format!("{pair} quote {n}"))
                }
            })
    };
    let (ttl, window) = (Duration::from_millis(300), Duration::from_secs(30));
    let f = quote(ttl, window);
    assert_eq!(f.call("EURUSD".into()).await.unwrap(), "EURUSD quote 1");
    let hit = f.call_traced("EURUSD".into()).await.unwrap();
    assert_eq!(hit.outcome.status, Status::CacheHit);
    tokio::time::sleep(ttl * 2).await;
    failing.store(true, Ordering::SeqCst);
    let stale = f
        .call_traced("EURUSD".into())
        .await
        .expect("the stale value");
    assert_eq!(
        (stale.value.as_str(), stale.outcome.status),
        ("EURUSD quote 1", Status::Stale)
    );
    failing.store(false, Ordering::SeqCst);
    let fresh = f.call_traced("EURUSD".into()).await.unwrap();
    assert_eq!(
        (fresh.value.as_str(), fresh.outcome.status),
        ("EURUSD quote 3", Status::Executed)
    );

    let short = quote(Duration::from_millis(100), Duration::from_millis(100));
    short.call("GBPUSD".into()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    failing.store(true, Ordering::SeqCst);
    let err = short
        .call("GBPUSD".into())
        .await
        .expect_err("past the window");
    assert_eq!(err.kind(), ErrorKind::Function);
}

/// With `stale_while_revalidate`, callers that find a value past its TTL but within the
/// window get it at once (`Stale`), while one refresh, across all of them, replaces it;
/// with single flight too.
pub async fn stale_while_revalidate_serves_the_old_value_and_refreshes_once(
    store: Arc<dyn ResultStore>,
) {
    for single_flight in [false, true] {
        stale_while_revalidate_with(Arc::clone(&store), single_flight).await;
    }
}

async fn stale_while_revalidate_with(store: Arc<dyn ResultStore>, single_flight: bool) {
    let stent = Stent::from_arc(store);
    let runs = counter();
    let ttl = Duration::from_millis(300);
    let name = if single_flight {
        "fx::board_sf"
    } else {
        "fx::board"
    };
    let make = || {
        let runs = Arc::clone(&runs);
        let builder = stent.durable(name).cached().ttl(ttl);
        let builder = if single_flight {
            builder.single_flight()
        } else {
            builder
        };
        builder
            .stale_while_revalidate(Duration::from_secs(30))
            .wrap(move |board: String| {
                let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if n > 1 {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    Ok::<_, Infallible>(format!("{board} v{n}"))
                }
            })
    };
    assert_eq!(make().call("rates".into()).await.unwrap(), "rates v1");
    tokio::time::sleep(ttl * 2).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (f, barrier) = (make(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                f.call_traced("rates".to_owned()).await
            })
        })
        .collect();
    for call in calls {
        let t = call.await.unwrap().unwrap();
        assert_eq!(
            (t.value.as_str(), t.outcome.status),
            ("rates v1", Status::Stale)
        );
    }
    let f = make();
    eventually("the refresh lands", || async {
        let t = f.call_traced("rates".to_owned()).await.unwrap();
        (t.outcome.status == Status::CacheHit && t.value == "rates v2").then_some(())
    })
    .await;
    assert_eq!(count(&runs), 2, "one refresh for all eight callers");
}

/// With `stale_if_error` and single flight, callers that find a value past its TTL while
/// the function fails or runs past its `timeout` all get that value (`Stale`); one of them,
/// across all, ran the function; once it succeeds, the value is replaced.
pub async fn stale_if_error_with_single_flight_runs_the_function_once(store: Arc<dyn ResultStore>) {
    let stent = Stent::from_arc(store);
    let runs = counter();
    let ttl = Duration::from_millis(300);
    let make = || {
        let runs = Arc::clone(&runs);
        stent
            .durable("fx::spot")
            .cached()
            .ttl(ttl)
            .single_flight()
            .stale_if_error(Duration::from_secs(30))
            .timeout(Duration::from_secs(1))
            .wrap(move |pair: String| {
                let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    // Both runs hold the refresh lock long enough for every caller to meet it.
                    match n {
                        2 => tokio::time::sleep(Duration::from_secs(600)).await,
                        3 => {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            return Err(format!("upstream down (run {n})"));
                        }
                        _ => {}
                    }
                    Ok(format!("{pair} spot {n}"))
                }
            })
    };
    assert_eq!(make().call("EURUSD".into()).await.unwrap(), "EURUSD spot 1");
    tokio::time::sleep(ttl * 2).await;
    for expected_runs in [2, 3] {
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let (f, barrier) = (make(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    f.call_traced("EURUSD".to_owned()).await
                })
            })
            .collect();
        for call in calls {
            let t = call.await.unwrap().expect("the stale value");
            assert_eq!(
                (t.value.as_str(), t.outcome.status),
                ("EURUSD spot 1", Status::Stale)
            );
        }
        // Run 2 timed out, run 3 failed: one run each for the eight callers.
        assert_eq!(count(&runs), expected_runs);
    }
    let fresh = make().call_traced("EURUSD".into()).await.unwrap();
    assert_eq!(
        (fresh.value.as_str(), fresh.outcome.status),
        ("EURUSD spot 4", Status::Executed)
    );
    let hit = make().call_traced("EURUSD".into()).await.unwrap();
    assert_eq!(hit.outcome.status, Status::CacheHit);
}

/// A function that runs past its `timeout` is cancelled: the call fails with a retryable
/// `Timeout` error, nothing is recorded, and the key is free for the next call at once.
pub async fn timeout_cancels_the_function_and_frees_the_key(store: Arc<dyn ResultStore>) {
    let stent = Stent::from_arc(Arc::clone(&store));
    let runs = counter();
    let r = Arc::clone(&runs);
    let f = stent
        .durable("payments::settle")
        .idempotent()
        .lease(Duration::from_secs(60))
        .timeout(Duration::from_millis(200))
        .wrap(move |id: String| {
            let n = r.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if n == 1 {
                    tokio::time::sleep(Duration::from_secs(600)).await;
                }
                Ok::<_, Infallible>(format!("settled {id} by run {n}"))
            }
        });
    let err = f.call("p1".into()).await.expect_err("run 1 times out");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.is_retryable(), "{err}");
    let key = f.key_for(&"p1".to_owned()).unwrap();
    assert_eq!(err.key(), Some(key.as_str()));
    // The claim was released, not left to lapse with its 60 s lease.
    let t = f.call_traced("p1".into()).await.unwrap();
    assert_eq!(
        (t.value.as_str(), t.outcome.status, t.outcome.attempt),
        ("settled p1 by run 2", Status::Executed, 1)
    );
    assert_eq!(f.call("p1".into()).await.unwrap(), "settled p1 by run 2");
    assert_eq!(count(&runs), 2);
}

/// With `early_refresh`, a value is stored with how long the function took, and hits on a
/// hot key refresh it before it expires: in the background (every caller gets the value it
/// found at once), once per value however many callers drew a refresh. A value stored without the time (as
/// before early refresh was set) is still a hit.
pub async fn early_refresh_refreshes_a_hot_value_before_it_expires(store: Arc<dyn ResultStore>) {
    let stent = Stent::from_arc(Arc::clone(&store));
    let runs = counter();
    let make = || {
        let runs = Arc::clone(&runs);
        stent
            .durable("fx::curve")
            .cached()
            .ttl(Duration::from_secs(600))
            // So large that every hit draws a refresh: took × beta dwarfs the TTL.
            .early_refresh(1e12)
            .wrap(move |curve: String| {
                let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, Infallible>(format!("{curve} v{n}"))
                }
            })
    };
    let f = make();
    assert_eq!(f.call("ois".into()).await.unwrap(), "ois v1");
    let key = f.key_for(&"ois".to_owned()).unwrap();
    let stored = store.get(CACHE, &key).await.unwrap().expect("the value");
    let took = stent_core::codec::computed_in(stored.value.as_deref().unwrap());
    assert!(took >= Some(Duration::from_millis(20)), "{took:?}");

    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (f, barrier) = (make(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                f.call_traced("ois".to_owned()).await
            })
        })
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for call in calls {
        let t = call.await.unwrap().unwrap();
        assert_eq!(t.outcome.status, Status::CacheHit, "no caller waits");
        seen.insert(t.value);
    }
    // Each value a caller saw was refreshed at most once, whichever callers drew a refresh:
    // under the lock, a refresh of a value already replaced is dropped, and so is one drawn
    // while another refresh holds the lock (a caller that saw the first refresh's value
    // before that refresh let go). At least the first refresh runs, and the last one lands.
    eventually("the last early refresh lands", || async {
        let runs = count(&runs);
        let record = store.get(CACHE, &key).await.unwrap()?;
        let stored = stent_core::codec::to_json(&key, record.value.as_deref()?).ok()?;
        let latest = stent_core::codec::Stored::Value(format!("ois v{runs}").into());
        (runs >= 2 && stored == latest).then_some(())
    })
    .await;
    let at_most = 1 + u32::try_from(seen.len()).unwrap();
    assert!(
        count(&runs) <= at_most,
        "at most one refresh per value seen: {} runs for {seen:?}",
        count(&runs)
    );

    let old = f.key_for(&"libor".to_owned()).unwrap();
    let bytes = stent_core::codec::encode_value("libor v0").unwrap();
    let ttl = Some(Duration::from_secs(600));
    store
        .put(CACHE, &old, &bytes, ttl, crate::support::meta())
        .await
        .unwrap();
    let t = f.call_traced("libor".into()).await.unwrap();
    assert_eq!(
        (t.value.as_str(), t.outcome.status),
        ("libor v0", Status::CacheHit)
    );
}

/// A single-flight run whose claim a refresh replaced with a value meanwhile (an early or
/// stale refresh stores with a plain write) still returns its own value: the cache holds one.
pub async fn single_flight_run_overtaken_by_a_refresh_returns_its_value(
    store: Arc<dyn ResultStore>,
) {
    let stent = Stent::from_arc(Arc::clone(&store));
    let started = Arc::new(tokio::sync::Notify::new());
    let finish = Arc::new(tokio::sync::Notify::new());
    let (s, f) = (Arc::clone(&started), Arc::clone(&finish));
    let report = stent
        .durable("reports::weekly")
        .cached()
        .ttl(Duration::from_secs(600))
        .single_flight()
        .wrap(move |week: String| {
            let (s, f) = (Arc::clone(&s), Arc::clone(&f));
            async move {
                s.notify_one();
                f.notified().await;
                Ok::<_, Infallible>(format!("report of {week}"))
            }
        });
    let key = report.key_for(&"w1".to_owned()).unwrap();
    let run = tokio::spawn({
        let report = report.clone();
        async move { report.call_traced("w1".to_owned()).await }
    });
    started.notified().await;
    let refreshed = stent_core::codec::encode_value("report of w1, refreshed").unwrap();
    let ttl = Some(Duration::from_secs(600));
    store
        .put(CACHE, &key, &refreshed, ttl, crate::support::meta())
        .await
        .unwrap();
    finish.notify_one();
    let t = run.await.unwrap().expect("its own value, not LeaseLost");
    assert_eq!(
        (t.value.as_str(), t.outcome.status),
        ("report of w1", Status::Executed)
    );
    let hit = report.call_traced("w1".into()).await.unwrap();
    assert_eq!(
        (hit.value.as_str(), hit.outcome.status),
        ("report of w1, refreshed", Status::CacheHit)
    );
}
