//! `claim`: takes a key for execution, the atomic heart of idempotency.

use std::sync::Arc;

use stent_core::{ClaimOutcome, LeaseToken, RecordState, ResultStore, Timestamp};

use crate::support::{IDEM, LIVE, SHORT, TTL, acquire, claim, eventually};

/// An absent key is taken: `Acquired { attempt: 1 }`, with `claim.token` installed and the lease running from now.
pub async fn claim_absent_key_acquires_attempt_one(store: Arc<dyn ResultStore>) {
    let token = LeaseToken::generate();
    let before = Timestamp::now();
    match claim(&*store, IDEM, "k", &token, LIVE).await {
        ClaimOutcome::Acquired {
            attempt,
            lease_expires_at,
        } => {
            assert_eq!(attempt, 1);
            assert!(
                lease_expires_at > before,
                "lease already over: {lease_expires_at}"
            );
        }
        other => panic!("expected Acquired, got {other:?}"),
    }
    let r = store
        .get(IDEM, "k")
        .await
        .unwrap()
        .expect("in-progress record");
    assert_eq!(r.state, RecordState::InProgress);
    assert_eq!(r.value, None);
    assert_eq!(r.lease_token.as_ref(), Some(&token));
    assert!(r.lease_expires_at.is_some());
    assert_eq!(r.function.as_deref(), Some("conformance::case"));
}

/// An expired record is taken afresh: `Acquired { attempt: 1 }`, with no trace of the old value or expiry.
pub async fn claim_expired_record_starts_fresh(store: Arc<dyn ResultStore>) {
    let (token, _) = acquire(&*store, IDEM, "k", LIVE).await;
    store
        .complete(IDEM, "k", &token, b"old", Some(TTL))
        .await
        .unwrap();
    let attempt = eventually("expired record is claimable", || async {
        match claim(&*store, IDEM, "k", &LeaseToken::generate(), LIVE).await {
            ClaimOutcome::Acquired { attempt, .. } => Some(attempt),
            ClaimOutcome::Completed(_) => None,
            other => panic!("unexpected {other:?}"),
        }
    })
    .await;
    assert_eq!(attempt, 1);
    let r = store.get(IDEM, "k").await.unwrap().unwrap();
    assert_eq!(r.value, None, "old value must not leak into the new claim");
    assert_eq!(r.expires_at, None);
}

/// An in-progress record whose lease has lapsed is taken over: `Acquired { attempt: previous + 1 }`, with the new token installed; the old token is stale from then on (see `renew`, `complete`, `release`).
pub async fn claim_after_lease_expiry_takes_over(store: Arc<dyn ResultStore>) {
    let (first, _) = acquire(&*store, IDEM, "k", SHORT).await;
    let second = LeaseToken::generate();
    let attempt = eventually("lease lapse lets a claim take over", || async {
        match claim(&*store, IDEM, "k", &second, LIVE).await {
            ClaimOutcome::Acquired { attempt, .. } => Some(attempt),
            ClaimOutcome::InFlight(_) => None,
            other => panic!("unexpected {other:?}"),
        }
    })
    .await;
    assert_eq!(attempt, 2);
    let r = store.get(IDEM, "k").await.unwrap().unwrap();
    assert_eq!(r.attempt, 2);
    assert_eq!(r.lease_token, Some(second));
    assert_ne!(r.lease_token, Some(first));
}

/// An in-progress record with a live lease: `InFlight(record)`, nothing changes.
pub async fn claim_live_lease_reports_in_flight(store: Arc<dyn ResultStore>) {
    let (owner, _) = acquire(&*store, IDEM, "k", LIVE).await;
    let other = LeaseToken::generate();
    match claim(&*store, IDEM, "k", &other, LIVE).await {
        ClaimOutcome::InFlight(r) => {
            assert_eq!(r.state, RecordState::InProgress);
            assert_eq!(r.attempt, 1);
            assert!(r.lease_expires_at.is_some());
        }
        other => panic!("expected InFlight, got {other:?}"),
    }
    let r = store.get(IDEM, "k").await.unwrap().unwrap();
    assert_eq!(r.lease_token, Some(owner));
    assert_eq!(r.attempt, 1);
}

/// A completed, unexpired record: `Completed(record)` with its value, nothing changes.
pub async fn claim_completed_returns_the_record(store: Arc<dyn ResultStore>) {
    let (token, _) = acquire(&*store, IDEM, "k", LIVE).await;
    store
        .complete(IDEM, "k", &token, b"\x01\"done\"", None)
        .await
        .unwrap();
    match claim(&*store, IDEM, "k", &LeaseToken::generate(), LIVE).await {
        ClaimOutcome::Completed(r) => {
            assert_eq!(r.value.as_deref(), Some(&b"\x01\"done\""[..]));
            assert_eq!(r.state, RecordState::Completed);
        }
        other => panic!("expected Completed, got {other:?}"),
    }
    let r = store.get(IDEM, "k").await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::Completed);
    assert_eq!(r.value.as_deref(), Some(&b"\x01\"done\""[..]));
    assert_eq!(r.lease_token, None);
    assert_eq!(r.attempt, 1);
}

/// Of any number of concurrent claims on one key, exactly one acquires; the others see it in flight.
pub async fn claim_is_exclusive_under_race(store: Arc<dyn ResultStore>) {
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                claim(&*store, IDEM, "race", &LeaseToken::generate(), LIVE).await
            })
        })
        .collect();
    let mut acquired = 0;
    let mut in_flight = 0;
    for t in tasks {
        match t.await.unwrap() {
            ClaimOutcome::Acquired { attempt, .. } => {
                assert_eq!(attempt, 1);
                acquired += 1;
            }
            ClaimOutcome::InFlight(_) => in_flight += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((acquired, in_flight), (1, 63));
}
