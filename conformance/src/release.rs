//! `release`: gives up a claim so the key is free at once.

use std::sync::Arc;

use stent_core::{LeaseToken, RecordState, ResultStore};

use crate::support::{IDEM, LIVE, acquire, meta, take_over};

/// With the owning token: deletes the in-progress record and returns `true`; the key can be claimed at once.
pub async fn release_deletes_the_owners_claim(store: Arc<dyn ResultStore>) {
    let (token, _) = acquire(&*store, IDEM, "k", LIVE).await;
    assert!(store.get(IDEM, "k").await.unwrap().is_some());
    assert!(store.release(IDEM, "k", &token).await.unwrap());
    assert_eq!(store.get(IDEM, "k").await.unwrap(), None);
    let (_, attempt) = acquire(&*store, IDEM, "k", LIVE).await;
    assert_eq!(attempt, 1);
}

/// With any other token (a stranger's, or one taken over): returns `false` and deletes nothing.
pub async fn release_with_another_token_deletes_nothing(store: Arc<dyn ResultStore>) {
    let (owner, _) = acquire(&*store, IDEM, "k", LIVE).await;
    assert!(
        !store
            .release(IDEM, "k", &LeaseToken::generate())
            .await
            .unwrap()
    );
    let r = store.get(IDEM, "k").await.unwrap().expect("owner's claim");
    assert_eq!(r.lease_token, Some(owner));

    let (stale, fresh) = take_over(&*store, IDEM, "taken").await;
    assert!(!store.release(IDEM, "taken", &stale).await.unwrap());
    let r = store
        .get(IDEM, "taken")
        .await
        .unwrap()
        .expect("new owner's record survives");
    assert_eq!(r.state, RecordState::InProgress);
    assert_eq!(r.lease_token, Some(fresh));
}

/// A completed record is never deleted, not even with the token that completed it: returns `false`.
pub async fn release_never_deletes_a_completed_record(store: Arc<dyn ResultStore>) {
    let (token, _) = acquire(&*store, IDEM, "k", LIVE).await;
    store.complete(IDEM, "k", &token, b"v", None).await.unwrap();
    assert!(!store.release(IDEM, "k", &token).await.unwrap());
    store.put(IDEM, "p", b"v", None, meta()).await.unwrap();
    assert!(!store.release(IDEM, "p", &token).await.unwrap());
    assert!(store.get(IDEM, "k").await.unwrap().is_some());
    assert!(store.get(IDEM, "p").await.unwrap().is_some());
}
