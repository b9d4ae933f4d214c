//! Identical concurrent calls in one process share one trip to the store.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use stent_core::testkit::{FaultStore, Op};
use stent_core::{MemoryStore, Status, Stent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_calls_share_one_claim() {
    let store = FaultStore::new(MemoryStore::new());
    let runs = Arc::new(AtomicU32::new(0));
    let f = Stent::new(store.clone())
        .durable("slow")
        .idempotent()
        .wrap({
            let runs = Arc::clone(&runs);
            move |x: u32| {
                let runs = Arc::clone(&runs);
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, Infallible>(x + 1)
                }
            }
        });
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move { f.call_traced(1).await.unwrap() })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        let t = t.await.unwrap();
        assert_eq!(t.value, 2);
        statuses.push(t.outcome.status);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        statuses.iter().filter(|s| **s == Status::Executed).count(),
        1
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == Status::Joined).count(),
        49
    );
    assert_eq!(store.calls(Op::Claim), 1, "followers never touch the store");
    // Different arguments are different flights.
    assert_eq!(f.call(2).await.unwrap(), 3);
    assert_eq!(store.calls(Op::Claim), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_of_a_failed_leader_try_for_themselves() {
    let runs = Arc::new(AtomicU32::new(0));
    let f = Stent::new(MemoryStore::new())
        .durable("flaky")
        .idempotent()
        .wrap({
            let runs = Arc::clone(&runs);
            move |_: ()| {
                let runs = Arc::clone(&runs);
                async move {
                    let n = runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if n == 0 {
                        Err("first try fails")
                    } else {
                        Ok(n)
                    }
                }
            }
        });
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move { f.call(()).await })
        })
        .collect();
    let results: Vec<_> = join_all(tasks).await;
    assert_eq!(
        results.iter().filter(|r| r.is_err()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .all(|v| *v == 1),
        "{results:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

async fn join_all<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_obey_the_in_flight_policy() {
    use stent_core::{ErrorKind, InFlight};
    let release = Arc::new(tokio::sync::Notify::new());
    let make = |policy: InFlight| {
        let release = Arc::clone(&release);
        Stent::new(MemoryStore::new())
            .durable("held")
            .idempotent()
            .in_flight(policy)
            .wrap(move |_: ()| {
                let release = Arc::clone(&release);
                async move {
                    release.notified().await;
                    Ok::<_, Infallible>(1u8)
                }
            })
    };
    for policy in [
        InFlight::Reject,
        InFlight::Wait {
            timeout: Duration::from_millis(200),
        },
    ] {
        let f = make(policy);
        let leader = tokio::spawn({
            let f = f.clone();
            async move { f.call(()).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        let e = f.call(()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InFlight, "{policy:?}: {e}");
        assert!(e.is_retryable());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{policy:?} waited {:?}",
            started.elapsed()
        );
        release.notify_one();
        assert_eq!(leader.await.unwrap().unwrap(), 1);
    }
}
