//! `get`: reads one record.

use std::sync::Arc;
use std::time::Duration;

use stent_core::{RecordState, ResultStore};

use crate::support::{CACHE, IDEM, LIVE, TTL, acquire, eventually, meta};

/// A missing key returns `None`.
pub async fn get_missing_key_returns_none(store: Arc<dyn ResultStore>) {
    for ns in [IDEM, CACHE] {
        assert_eq!(store.get(ns, "never-written").await.unwrap(), None);
    }
}

/// An expired record returns `None`, even if it is not yet physically removed.
pub async fn get_expired_record_returns_none(store: Arc<dyn ResultStore>) {
    store
        .put(CACHE, "ttl", b"v", Some(Duration::from_secs(5)), meta())
        .await
        .unwrap();
    let r = store
        .get(CACHE, "ttl")
        .await
        .unwrap()
        .expect("visible before its TTL");
    let expires = r.expires_at.expect("expires_at set");
    assert!(expires > r.created_at);
    store
        .put(CACHE, "short", b"v", Some(TTL), meta())
        .await
        .unwrap();
    eventually("record expires", || async {
        store
            .get(CACHE, "short")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

/// A record in progress is returned with its lease (no value).
pub async fn get_in_progress_record_returns_its_lease(store: Arc<dyn ResultStore>) {
    let (token, _) = acquire(&*store, IDEM, "k", LIVE).await;
    let r = store
        .get(IDEM, "k")
        .await
        .unwrap()
        .expect("in-progress record");
    assert_eq!(r.key, "k");
    assert_eq!(r.state, RecordState::InProgress);
    assert_eq!(r.value, None);
    assert_eq!(r.lease_token, Some(token));
    assert!(r.lease_expires_at.is_some());
    assert_eq!(r.attempt, 1);
    assert_eq!(r.completed_at, None);
    assert_eq!(r.function.as_deref(), Some("conformance::case"));
}
