//! The fault-injecting store itself: which calls it disturbs, how, and what it counts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use stent_core::testkit::{Fault, FaultStore, Op};
use stent_core::{
    Claim, ClaimOutcome, Error, ErrorKind, LeaseToken, ListQuery, MemoryStore, Namespace,
    RecordMeta, Result, ResultStore,
};

const NS: Namespace = Namespace::Cache;

/// Calls `op` once on `store` with harmless arguments; `Ok` carries nothing.
async fn invoke(store: &dyn ResultStore, op: Op) -> Result<()> {
    let token = LeaseToken::generate();
    let lease = Duration::from_secs(30);
    match op {
        Op::Get => store.get(NS, "k").await.map(drop),
        Op::Claim => {
            let claim = Claim {
                token: &token,
                lease,
                meta: RecordMeta::default(),
            };
            store.claim(NS, "k", &claim).await.map(drop)
        }
        Op::Renew => match store.renew(NS, "k", &token, lease).await {
            Err(e) if e.kind() == ErrorKind::LeaseLost => Ok(()),
            other => other.map(drop),
        },
        Op::Complete => match store.complete(NS, "k", &token, b"\x011", None).await {
            Err(e) if e.kind() == ErrorKind::LeaseLost => Ok(()),
            other => other,
        },
        Op::Release => store.release(NS, "k", &token).await.map(drop),
        Op::Put => {
            store
                .put(NS, "k", b"\x011", None, RecordMeta::default())
                .await
        }
        Op::Delete => store.delete(NS, "k").await.map(drop),
        Op::List => store.list(NS, &ListQuery::new()).await.map(drop),
        Op::Clear => store.clear(NS).await.map(drop),
        Op::PurgeExpired => store.purge_expired(NS, 10).await.map(drop),
    }
}

#[tokio::test]
async fn without_rules_every_call_passes_through_and_is_counted() {
    let store = FaultStore::new(MemoryStore::new());
    for op in Op::ALL {
        invoke(&store, op)
            .await
            .unwrap_or_else(|e| panic!("{op}: {e}"));
    }
    for op in Op::ALL {
        assert_eq!((op, store.calls(op), store.injected(op)), (op, 1, 0));
    }
}

#[tokio::test]
async fn every_operation_can_be_failed() {
    for op in Op::ALL {
        let store = FaultStore::new(MemoryStore::new()).fail_nth(op, 1);
        let e = invoke(&store, op).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{op}");
        assert!(e.is_retryable(), "{op}");
        assert!(e.message().contains(&format!("{op} call #1")), "{op}: {e}");
        assert_eq!(store.injected(op), 1, "{op}");
        for other in Op::ALL.into_iter().filter(|o| *o != op) {
            invoke(&store, other)
                .await
                .unwrap_or_else(|e| panic!("{other}: {e}"));
        }
    }
}

#[tokio::test]
async fn fail_nth_fails_only_that_call() {
    let store = FaultStore::new(MemoryStore::new()).fail_nth(Op::Get, 2);
    let results: Vec<bool> = futures_ok(&store, Op::Get, 4).await;
    assert_eq!(results, [true, false, true, true]);
    assert_eq!((store.calls(Op::Get), store.injected(Op::Get)), (4, 1));
    assert_eq!(store.calls(Op::Put), 0, "counters are per operation");
}

#[tokio::test]
async fn fail_from_fails_every_call_from_then_on() {
    let store = FaultStore::new(MemoryStore::new()).fail_from(Op::Get, 3);
    assert_eq!(
        futures_ok(&store, Op::Get, 5).await,
        [true, true, false, false, false]
    );
}

#[tokio::test]
async fn ranges_and_custom_errors() {
    let store = FaultStore::new(MemoryStore::new())
        .with(Fault::fail(Op::Get).calls(2..4).error(ErrorKind::Store))
        .with(Fault::fail(Op::Delete).error_with(|op, n| {
            Error::new(ErrorKind::Busy, format!("{op} #{n} throttled")).set_retryable(false)
        }));
    assert_eq!(
        futures_ok(&store, Op::Get, 5).await,
        [true, false, false, true, true]
    );
    let e = store.get(NS, "k").await;
    assert!(e.is_ok(), "past the range");

    // Rules added later see the running count.
    store.inject(
        Fault::fail(Op::Get)
            .nth(store.calls(Op::Get) + 1)
            .error(ErrorKind::Store),
    );
    let e = invoke(&store, Op::Get).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Store);
    assert!(
        !e.is_retryable(),
        "a store error is not retryable by default"
    );

    let e = invoke(&store, Op::Delete).await.unwrap_err();
    assert_eq!(
        (e.kind(), e.message(), e.is_retryable()),
        (ErrorKind::Busy, "delete #1 throttled", false)
    );
}

#[tokio::test]
async fn lost_reply_takes_effect_but_reports_an_error() {
    let store = FaultStore::new(MemoryStore::new()).lose_reply_nth(Op::Put, 1);
    let e = invoke(&store, Op::Put).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.message().contains("reply was lost"), "{e}");
    assert!(
        store.inner().get(NS, "k").await.unwrap().is_some(),
        "the write was applied"
    );

    let store = FaultStore::new(MemoryStore::new()).lose_reply_nth(Op::Claim, 1);
    let token = LeaseToken::generate();
    let claim = Claim {
        token: &token,
        lease: Duration::from_secs(30),
        meta: RecordMeta::default(),
    };
    assert!(store.claim(NS, "k", &claim).await.is_err());
    let other = LeaseToken::generate();
    let again = store
        .claim(
            NS,
            "k",
            &Claim {
                token: &other,
                ..claim.clone()
            },
        )
        .await
        .unwrap();
    assert!(matches!(again, ClaimOutcome::InFlight(_)), "{again:?}");
}

#[tokio::test]
async fn a_failure_wins_over_a_lost_reply_and_nothing_is_applied() {
    let store = FaultStore::new(MemoryStore::new())
        .lose_reply_nth(Op::Put, 1)
        .fail_nth(Op::Put, 1);
    assert!(invoke(&store, Op::Put).await.is_err());
    assert!(store.inner().get(NS, "k").await.unwrap().is_none());
    assert_eq!(store.injected(Op::Put), 1, "one call disturbed");
}

#[tokio::test]
async fn delays_hold_the_call_and_an_abandoned_call_changes_nothing() {
    let store = FaultStore::new(MemoryStore::new())
        .delay_nth(Op::Put, 1, Duration::from_secs(3600))
        .delay_nth(Op::Get, 1, Duration::from_millis(100))
        .with(Fault::delay(Op::Get, Duration::from_millis(50)).nth(1));
    let dropped = tokio::time::timeout(Duration::from_millis(20), invoke(&store, Op::Put)).await;
    assert!(dropped.is_err(), "still delayed");
    assert!(store.inner().get(NS, "k").await.unwrap().is_none());

    let started = Instant::now();
    invoke(&store, Op::Get).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "delays of matching rules add up: {:?}",
        started.elapsed()
    );
    invoke(&store, Op::Put).await.unwrap();
    assert_eq!((store.calls(Op::Put), store.injected(Op::Put)), (2, 1));
}

#[tokio::test]
async fn clones_share_rules_counters_and_data() {
    let store = FaultStore::new(MemoryStore::new());
    let shared: Arc<dyn ResultStore> = Arc::new(store.clone());
    store.inject(Fault::fail(Op::Clear));
    assert!(invoke(&*shared, Op::Clear).await.is_err());
    invoke(&*shared, Op::Put).await.unwrap();
    assert_eq!(store.calls(Op::Put), 1);
    assert!(store.get(NS, "k").await.unwrap().is_some());
    store.heal();
    assert!(invoke(&*shared, Op::Clear).await.is_ok());
    let debug = format!("{store:?}");
    assert!(debug.starts_with("FaultStore"), "{debug}");
}

async fn futures_ok(store: &dyn ResultStore, op: Op, n: usize) -> Vec<bool> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(invoke(store, op).await.is_ok());
    }
    out
}
