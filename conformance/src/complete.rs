//! `complete`: stores the value of a claim the token owns, fenced against stale tokens.

use std::sync::Arc;
use std::time::Duration;

use stent_core::{Capabilities, ErrorKind, RecordState, ResultStore, Timestamp};

use crate::support::{IDEM, LIVE, acquire, take_over};

/// With the owning token: the record becomes completed with `value`, the lease is cleared, and it expires `ttl` from now (never, if `None`).
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

    let hour = Duration::from_secs(3600);
    let (token, _) = acquire(&*store, IDEM, "ttl", LIVE).await;
    store
        .complete(IDEM, "ttl", &token, b"v", Some(hour))
        .await
        .unwrap();
    let r = store.get(IDEM, "ttl").await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::Completed);
    let expires = r.expires_at.expect("a TTL sets expires_at");
    let completed = r.completed_at.expect("completed_at set");
    // The store may take the time from its server, so only the TTL's length is exact enough.
    let skew = Duration::from_secs(60);
    assert!(
        expires > completed.add(hour - skew) && expires < completed.add(hour + skew),
        "expires_at {expires} is not an hour after completed_at {completed}"
    );
    assert!(expires > Timestamp::now().add(hour / 2), "{expires}");
}

/// With a stale token (taken over, released): `ErrorKind::LeaseLost` and **nothing is written** (fencing).
pub async fn complete_with_a_stale_token_is_lease_lost_and_writes_nothing(
    store: Arc<dyn ResultStore>,
) {
    let (stale, fresh) = take_over(&*store, IDEM, "k").await;
    let e = store
        .complete(IDEM, "k", &stale, b"stale", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "{e}");
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

    let (released, _) = acquire(&*store, IDEM, "released", LIVE).await;
    assert!(store.release(IDEM, "released", &released).await.unwrap());
    let e = store
        .complete(IDEM, "released", &released, b"late", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost, "{e}");
    assert_eq!(store.get(IDEM, "released").await.unwrap(), None);
}

/// A second `complete` with the same token: `ErrorKind::LeaseLost`, and the first value stands.
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

/// A value over [`Capabilities::max_value_len`]: `ErrorKind::ValueTooLarge`, and the record stays in progress.
pub async fn complete_oversized_value_is_value_too_large(store: Arc<dyn ResultStore>) {
    let caps: Capabilities = store.capabilities();
    let Some(max) = caps.max_value_len else {
        // No declared limit: nothing is over it.
        return;
    };
    let (token, _) = acquire(&*store, IDEM, "big", LIVE).await;
    let e = store
        .complete(IDEM, "big", &token, &vec![7u8; max + 1], None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ValueTooLarge, "{e}");
    let r = store.get(IDEM, "big").await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::InProgress);
    assert_eq!(r.value, None);
    assert_eq!(r.lease_token, Some(token.clone()));
    store
        .complete(IDEM, "big", &token, b"small", None)
        .await
        .unwrap();
}
