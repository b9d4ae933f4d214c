//! Claims, leases and fencing: the atomic heart of idempotency.

use std::sync::Arc;
use std::time::Duration;

use stent_core::{ClaimOutcome, ErrorKind, LeaseToken, RecordState, ResultStore, Timestamp};

use crate::support::{IDEM, LIVE, SHORT, acquire, claim, eventually, meta};

/// An absent key is acquired with attempt 1 and a lease in the future.
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

/// A key whose owner holds a live lease reports `InFlight` and changes nothing.
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
}

/// A completed key returns `Completed` with its value and is not claimed again.
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
}

/// Of 64 concurrent claims on one key, exactly one acquires; the rest see it in flight.
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

/// After the owner's lease lapses, the next claim takes over with attempt 2 and a new token.
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

/// After a takeover the old token is refused by complete, renew and release, and writes nothing.
pub async fn stale_token_is_refused_after_takeover(store: Arc<dyn ResultStore>) {
    let (stale, _) = acquire(&*store, IDEM, "k", SHORT).await;
    let fresh = LeaseToken::generate();
    eventually("takeover", || async {
        matches!(
            claim(&*store, IDEM, "k", &fresh, LIVE).await,
            ClaimOutcome::Acquired { .. }
        )
        .then_some(())
    })
    .await;
    let e = store
        .complete(IDEM, "k", &stale, b"stale", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "{e}");
    let e = store.renew(IDEM, "k", &stale, LIVE).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "{e}");
    assert!(!store.release(IDEM, "k", &stale).await.unwrap());
    let r = store
        .get(IDEM, "k")
        .await
        .unwrap()
        .expect("new owner's record survives");
    assert_eq!(r.state, RecordState::InProgress);
    assert_eq!(r.value, None);
    assert_eq!(r.lease_token, Some(fresh.clone()));
    store
        .complete(IDEM, "k", &fresh, b"fresh", None)
        .await
        .unwrap();
    let r = store.get(IDEM, "k").await.unwrap().unwrap();
    assert_eq!(r.value.as_deref(), Some(&b"fresh"[..]));
}

/// `complete` stores the value, marks the record completed and clears the lease.
pub async fn complete_stores_value_and_clears_lease(store: Arc<dyn ResultStore>) {
    let (token, _) = acquire(&*store, IDEM, "k", LIVE).await;
    store
        .complete(IDEM, "k", &token, b"\x01[1,2]", None)
        .await
        .unwrap();
    let r = store.get(IDEM, "k").await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::Completed);
    assert_eq!(r.value.as_deref(), Some(&b"\x01[1,2]"[..]));
    assert_eq!(r.lease_token, None);
    assert_eq!(r.lease_expires_at, None);
    assert_eq!(r.expires_at, None);
    assert_eq!(r.attempt, 1);
    assert!(r.completed_at.is_some());
    assert!(r.completed_at.unwrap() >= r.created_at);
}

/// A second `complete` with the same token is refused: the first result stands.
pub async fn complete_twice_is_refused(store: Arc<dyn ResultStore>) {
    let (token, _) = acquire(&*store, IDEM, "k", LIVE).await;
    store
        .complete(IDEM, "k", &token, b"first", None)
        .await
        .unwrap();
    let e = store
        .complete(IDEM, "k", &token, b"second", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost);
    let r = store.get(IDEM, "k").await.unwrap().unwrap();
    assert_eq!(r.value.as_deref(), Some(&b"first"[..]));
}

/// `renew` moves the lease forward, so the record stays in flight past its first lease.
pub async fn renew_extends_the_lease(store: Arc<dyn ResultStore>) {
    let (token, _) = acquire(&*store, IDEM, "k", Duration::from_millis(400)).await;
    let until = store.renew(IDEM, "k", &token, LIVE).await.unwrap();
    assert!(
        until > Timestamp::now().add(Duration::from_secs(10)),
        "renewed until {until}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    match claim(&*store, IDEM, "k", &LeaseToken::generate(), LIVE).await {
        ClaimOutcome::InFlight(r) => assert_eq!(r.attempt, 1),
        other => panic!("renewed lease should still be live, got {other:?}"),
    }
    let r = store.get(IDEM, "k").await.unwrap().unwrap();
    assert_eq!(r.lease_token, Some(token));
}

/// `release` with the owning token deletes the claim (the key is free at once); any other token does nothing.
pub async fn release_deletes_only_the_owners_claim(store: Arc<dyn ResultStore>) {
    let (token, _) = acquire(&*store, IDEM, "k", LIVE).await;
    assert!(
        !store
            .release(IDEM, "k", &LeaseToken::generate())
            .await
            .unwrap()
    );
    assert!(store.get(IDEM, "k").await.unwrap().is_some());
    assert!(store.release(IDEM, "k", &token).await.unwrap());
    assert_eq!(store.get(IDEM, "k").await.unwrap(), None);
    let (_, attempt) = acquire(&*store, IDEM, "k", LIVE).await;
    assert_eq!(attempt, 1);
}

/// `release` never deletes a completed record, even with the token that completed it.
pub async fn release_never_deletes_a_completed_record(store: Arc<dyn ResultStore>) {
    let (token, _) = acquire(&*store, IDEM, "k", LIVE).await;
    store.complete(IDEM, "k", &token, b"v", None).await.unwrap();
    assert!(!store.release(IDEM, "k", &token).await.unwrap());
    store.put(IDEM, "p", b"v", None, meta()).await.unwrap();
    assert!(!store.release(IDEM, "p", &token).await.unwrap());
    assert!(store.get(IDEM, "k").await.unwrap().is_some());
    assert!(store.get(IDEM, "p").await.unwrap().is_some());
}
