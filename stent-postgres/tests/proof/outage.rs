//! The server going away: calls fail with a retryable error instead of hanging, and once
//! it is back no key runs twice.
//!
//! Callers that stand for other processes get a wrapper of their own: identical calls
//! through one wrapper share one trip to the store, which would hide the store's answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use stent_core::{Durable, ErrorKind, Status, Stent};
use stent_postgres::PostgresStore;
use tokio::sync::Notify;

use crate::{PASSWORD, own_server, url_with};

type Charge = Durable<String, String, std::convert::Infallible>;

fn assert_retryable<E: std::fmt::Debug + std::fmt::Display>(e: &stent_core::Error<E>, what: &str) {
    assert!(
        matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Busy) && e.is_retryable(),
        "{what}: expected a retryable Unavailable/Busy error, got {e} ({e:?})"
    );
}

/// What the wrapped closure shares with the test: how often it ran, and a gate that holds
/// the first execution until the test opens it.
#[derive(Clone, Default)]
struct Probe {
    runs: Arc<AtomicU32>,
    started: Arc<Notify>,
    finish: Arc<Notify>,
}

impl Probe {
    fn runs(&self) -> u32 {
        self.runs.load(Ordering::SeqCst)
    }

    /// A wrapper of its own over `store`, as another process would have.
    fn charge(&self, store: &PostgresStore, lease: Duration) -> Charge {
        let probe = self.clone();
        Stent::new(store.clone())
            .durable("outage::charge")
            .idempotent()
            .lease(lease)
            .wrap_with_context(move |order: String, exec| {
                let probe = probe.clone();
                async move {
                    if probe.runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        probe.started.notify_one();
                        probe.finish.notified().await;
                    }
                    Ok(format!("{order}:attempt{}", exec.attempt))
                }
            })
    }
}

/// 16 callers, each with its own wrapper, all at once; returns how many executed.
async fn sixteen_callers(
    store: &PostgresStore,
    probe: &Probe,
    lease: Duration,
    expect: &str,
) -> usize {
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let charge = probe.charge(store, lease);
            tokio::spawn(async move { charge.call_traced("ord-1".to_string()).await })
        })
        .collect();
    let mut executed = 0;
    for c in callers {
        let t = c
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("caller after restart failed: {e}"));
        assert_eq!(t.value, expect);
        executed += usize::from(t.outcome.status == Status::Executed);
    }
    executed
}

/// A store pointed at a port nobody listens on fails at once, retryably, naming the address.
#[tokio::test]
async fn connecting_to_a_closed_port_is_a_retryable_unavailable_error() {
    let port = stent_conformance::servers::local::free_port();
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
    let test = "server_stopping_mid_call_is_retryable_and_nothing_runs_twice";
    let Some(server) = own_server(test) else {
        return;
    };
    // Connecting with SCRAM costs a few hundred ms in a debug build on a loaded machine:
    // the owner and the callers after the restart leave room for a pool's worth; the
    // callers during the outage, another process with a store of its own, give up sooner.
    let store = PostgresStore::builder()
        .url(url_with(&server, PASSWORD))
        .acquire_timeout(Duration::from_secs(20))
        .build()
        .await
        .unwrap();
    let impatient = PostgresStore::builder()
        .url(url_with(&server, PASSWORD))
        .acquire_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let lease = Duration::from_secs(30);
    let probe = Probe::default();
    let charge = probe.charge(&store, lease);
    let owner = tokio::spawn(async move { charge.call_traced("ord-1".to_string()).await });
    probe.started.notified().await;
    server.shut_down().unwrap();

    // While it is down, callers fail retryably and promptly, on the key in flight and on others.
    for order in ["ord-1", "ord-2"] {
        let t = Instant::now();
        let e = probe
            .charge(&impatient, lease)
            .call(order.to_string())
            .await
            .unwrap_err();
        assert_retryable(&e, &format!("call on {order} while the server is down"));
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "took {:?}",
            t.elapsed()
        );
    }
    // The owner finishes its work while the server is still down: recording it must wait.
    probe.finish.notify_one();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.start_again().unwrap();

    let t = owner
        .await
        .unwrap()
        .expect("the owner records its result once the server is back");
    assert_eq!(
        (t.value.as_str(), t.outcome.status),
        ("ord-1:attempt1", Status::Executed)
    );
    // Afterwards 16 concurrent callers all replay it.
    assert_eq!(
        sixteen_callers(&store, &probe, lease, "ord-1:attempt1").await,
        0
    );
    assert_eq!(probe.runs(), 1, "the closure must not run again");
}

/// An outage longer than the lease: the owner's call fails retryably (its result could
/// not be recorded); once the server is back, 16 concurrent retries run the closure once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_longer_than_the_lease_fails_retryably_then_one_retry_runs() {
    let test = "outage_longer_than_the_lease_fails_retryably_then_one_retry_runs";
    let Some(server) = own_server(test) else {
        return;
    };
    // The owner's process gives up on the server within its lease; the retries after the
    // restart (connecting with SCRAM costs a few hundred ms in a debug build on a loaded
    // machine) leave room for a pool's worth of connections.
    let owner_store = PostgresStore::builder()
        .url(url_with(&server, PASSWORD))
        .acquire_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let store = PostgresStore::builder()
        .url(url_with(&server, PASSWORD))
        .acquire_timeout(Duration::from_secs(20))
        .build()
        .await
        .unwrap();
    let lease = Duration::from_secs(2);
    let probe = Probe::default();
    let charge = probe.charge(&owner_store, lease);
    let owner = tokio::spawn(async move { charge.call("ord-1".to_string()).await });
    probe.started.notified().await;
    server.shut_down().unwrap();
    probe.finish.notify_one();
    let e = owner.await.unwrap().unwrap_err();
    assert_retryable(&e, "the owner's call when its result cannot be recorded");
    server.start_again().unwrap();

    assert_eq!(
        sixteen_callers(&store, &probe, lease, "ord-1:attempt2").await,
        1
    );
    assert_eq!(
        probe.runs(),
        2,
        "one execution before the outage, one takeover after"
    );
}
