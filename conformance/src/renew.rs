//! `renew`: extends the lease of a claim the token owns.

use std::sync::Arc;
use std::time::Duration;

use stent_core::{ClaimOutcome, ErrorKind, LeaseToken, RecordState, ResultStore, Timestamp};

use crate::support::{IDEM, LIVE, acquire, claim, take_over};

/// With the owning token: the lease now lapses `lease` from now; returns that time.
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

/// With a stale token (taken over, released, completed): `ErrorKind::LeaseLost`, nothing changes.
pub async fn renew_with_a_stale_token_is_lease_lost(store: Arc<dyn ResultStore>) {
    let (stale, fresh) = take_over(&*store, IDEM, "taken").await;
    let e = store.renew(IDEM, "taken", &stale, LIVE).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "taken over: {e}");
    let r = store.get(IDEM, "taken").await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::InProgress);
    assert_eq!(r.lease_token, Some(fresh));
    assert_eq!(r.attempt, 2);

    let (released, _) = acquire(&*store, IDEM, "released", LIVE).await;
    assert!(store.release(IDEM, "released", &released).await.unwrap());
    let e = store
        .renew(IDEM, "released", &released, LIVE)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "released: {e}");
    assert_eq!(
        store.get(IDEM, "released").await.unwrap(),
        None,
        "renew must not bring a released claim back"
    );

    let (completed, _) = acquire(&*store, IDEM, "completed", LIVE).await;
    store
        .complete(IDEM, "completed", &completed, b"done", None)
        .await
        .unwrap();
    let e = store
        .renew(IDEM, "completed", &completed, LIVE)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "completed: {e}");
    let r = store.get(IDEM, "completed").await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::Completed);
    assert_eq!(r.value.as_deref(), Some(&b"done"[..]));
    assert_eq!(r.lease_token, None);
    assert_eq!(r.lease_expires_at, None);
}
