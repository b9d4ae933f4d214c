//! The server going away: calls fail with a retryable error instead of hanging, and once
//! it is back no key runs twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use stent_core::{ErrorKind, Status, Stent};
use stent_postgres::PostgresStore;
use tokio::sync::Notify;

use crate::cluster::{self, PASSWORD};

fn assert_retryable<E: std::fmt::Debug + std::fmt::Display>(e: &stent_core::Error<E>, what: &str) {
    assert!(
        matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Busy) && e.is_retryable(),
        "{what}: expected a retryable Unavailable/Busy error, got {e} ({e:?})"
    );
}

/// A store pointed at a port nobody listens on fails at once, retryably, naming the address.
#[tokio::test]
async fn connecting_to_a_closed_port_is_a_retryable_unavailable_error() {
    let port = cluster::free_port();
    let url = format!("postgres://postgres:hunter2-pw@127.0.0.1:{port}/test");
    let started = Instant::now();
    let e = PostgresStore::builder()
        .url(url)
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap_err();
    assert_retryable(&e, "closed port");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a refused port must fail fast: {:?}",
        started.elapsed()
    );
    let shown = format!("{e} {e:?}");
    assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
    assert!(!shown.contains("hunter2"), "password leaked: {shown}");
}

/// The server stops while the closure runs: other callers get retryable errors at once;
/// the owner records its result when the server is back within the lease; nothing runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stopping_mid_call_is_retryable_and_nothing_runs_twice() {
    let Some(server) =
        cluster::start_or_skip("server_stopping_mid_call_is_retryable_and_nothing_runs_twice")
    else {
        return;
    };
    let store = PostgresStore::builder()
        .url(server.url(PASSWORD, "postgres"))
        .acquire_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let started = Arc::new(Notify::new());
    let finish = Arc::new(Notify::new());
    let charge = Stent::new(store)
        .durable("outage::charge")
        .idempotent()
        .lease(Duration::from_secs(30))
        .wrap({
            let (runs, started, finish) = (runs.clone(), started.clone(), finish.clone());
            move |order: String| {
                let (runs, started, finish) = (runs.clone(), started.clone(), finish.clone());
                async move {
                    let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    started.notify_one();
                    finish.notified().await;
                    Ok::<_, std::convert::Infallible>(format!("{order}:run{n}"))
                }
            }
        });

    let owner = tokio::spawn({
        let charge = charge.clone();
        async move { charge.call_traced("ord-1".to_string()).await }
    });
    started.notified().await;
    server.stop_server();

    // While it is down, callers fail retryably and promptly, on the key in flight and on others.
    for order in ["ord-1", "ord-2"] {
        let t = Instant::now();
        let e = charge.call(order.to_string()).await.unwrap_err();
        assert_retryable(&e, &format!("call on {order} while the server is down"));
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "took {:?}",
            t.elapsed()
        );
    }
    // The owner finishes its work while the server is still down: recording it must wait.
    finish.notify_one();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.start_server().unwrap();

    let t = owner
        .await
        .unwrap()
        .expect("the owner records its result once the server is back");
    assert_eq!(
        (t.value.as_str(), t.outcome.status),
        ("ord-1:run1", Status::Executed)
    );

    // Afterwards 16 concurrent callers all replay it.
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let charge = charge.clone();
            tokio::spawn(async move { charge.call_traced("ord-1".to_string()).await })
        })
        .collect();
    for c in callers {
        let t = c
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("caller after restart failed: {e}"));
        assert_eq!(t.value, "ord-1:run1");
        assert_ne!(t.outcome.status, Status::Executed);
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the closure must not run again"
    );
}

/// An outage longer than the lease: the owner's call fails retryably (its result could
/// not be recorded); once the server is back, 16 concurrent retries run the closure once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_longer_than_the_lease_fails_retryably_then_one_retry_runs() {
    let Some(server) =
        cluster::start_or_skip("outage_longer_than_the_lease_fails_retryably_then_one_retry_runs")
    else {
        return;
    };
    let store = PostgresStore::builder()
        .url(server.url(PASSWORD, "postgres"))
        // Connecting with SCRAM costs a few hundred ms in a debug build: leave room for a pool's worth.
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let started = Arc::new(Notify::new());
    let finish = Arc::new(Notify::new());
    let charge = Stent::new(store)
        .durable("outage::charge")
        .idempotent()
        .lease(Duration::from_secs(2))
        .wrap_with_context({
            let (runs, started, finish) = (runs.clone(), started.clone(), finish.clone());
            move |order: String, exec| {
                let (runs, started, finish) = (runs.clone(), started.clone(), finish.clone());
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    if exec.attempt == 1 {
                        started.notify_one();
                        finish.notified().await;
                    }
                    Ok::<_, std::convert::Infallible>(format!("{order}:attempt{}", exec.attempt))
                }
            }
        });
    let owner = tokio::spawn({
        let charge = charge.clone();
        async move { charge.call("ord-1".to_string()).await }
    });
    started.notified().await;
    server.stop_server();
    finish.notify_one();
    let e = owner.await.unwrap().unwrap_err();
    assert_retryable(&e, "the owner's call when its result cannot be recorded");
    server.start_server().unwrap();

    let callers: Vec<_> = (0..16)
        .map(|_| {
            let charge = charge.clone();
            tokio::spawn(async move { charge.call_traced("ord-1".to_string()).await })
        })
        .collect();
    let mut executed = 0;
    for c in callers {
        let t = c
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("retry after restart failed: {e}"));
        assert_eq!(t.value, "ord-1:attempt2");
        executed += usize::from(t.outcome.status == Status::Executed);
    }
    assert_eq!(executed, 1);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "one execution before the outage, one takeover after"
    );
}
