//! `purge_expired`: deletes expired records a batch at a time (admin).

use std::sync::Arc;
use std::time::Duration;

use stent_core::{ListQuery, ResultStore};

use crate::support::{CACHE, IDEM, LIVE, TTL, acquire, eventually, meta};

/// Deletes only records whose expiry has passed, of this namespace; returns how many.
pub async fn purge_expired_deletes_only_expired_records(store: Arc<dyn ResultStore>) {
    store
        .put(CACHE, "gone-1", b"v", Some(TTL), meta())
        .await
        .unwrap();
    store
        .put(CACHE, "gone-2", b"v", Some(TTL), meta())
        .await
        .unwrap();
    store
        .put(CACHE, "forever", b"v", None, meta())
        .await
        .unwrap();
    store
        .put(
            CACHE,
            "later",
            b"v",
            Some(Duration::from_secs(3600)),
            meta(),
        )
        .await
        .unwrap();
    let (_token, _) = acquire(&*store, CACHE, "running", LIVE).await;
    store
        .put(IDEM, "other-ns", b"v", Some(TTL), meta())
        .await
        .unwrap();
    store
        .put(IDEM, "other-ns-kept", b"v", None, meta())
        .await
        .unwrap();
    eventually("both records expire", || async {
        (store.get(CACHE, "gone-1").await.unwrap().is_none()
            && store.get(CACHE, "gone-2").await.unwrap().is_none())
        .then_some(())
    })
    .await;
    let mut purged = 0;
    for _ in 0..10 {
        let n = store.purge_expired(CACHE, 1000).await.unwrap();
        purged += n;
        if n == 0 {
            break;
        }
    }
    if store.capabilities().native_ttl {
        // The store may have removed some of them itself already.
        assert!(purged <= 2, "purged {purged}, only 2 had expired");
    } else {
        assert_eq!(purged, 2);
    }
    let left = store
        .list(CACHE, &ListQuery::new().include_expired(true))
        .await
        .unwrap();
    let keys: Vec<_> = left.records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["forever", "later", "running"]);
    let other = store
        .list(IDEM, &ListQuery::new().include_expired(true))
        .await
        .unwrap();
    let other: Vec<_> = other.records.iter().map(|r| r.key.as_str()).collect();
    if store.capabilities().native_ttl {
        // The store may have removed the expired one itself (Redis does, the moment it expires).
        assert!(
            other == ["other-ns", "other-ns-kept"] || other == ["other-ns-kept"],
            "purge must not touch the other namespace: {other:?}"
        );
    } else {
        assert_eq!(
            other,
            ["other-ns", "other-ns-kept"],
            "purge must not touch the other namespace"
        );
    }
}

/// Deletes at most `limit` records per call.
pub async fn purge_expired_deletes_at_most_limit(store: Arc<dyn ResultStore>) {
    for k in ["e1", "e2", "e3"] {
        store.put(CACHE, k, b"v", Some(TTL), meta()).await.unwrap();
    }
    eventually("the records expire", || async {
        let mut gone = true;
        for k in ["e1", "e2", "e3"] {
            gone &= store.get(CACHE, k).await.unwrap().is_none();
        }
        gone.then_some(())
    })
    .await;
    let mut purged = 0;
    for _ in 0..10 {
        let n = store.purge_expired(CACHE, 1).await.unwrap();
        assert!(n <= 1, "purge_expired(limit 1) deleted {n}");
        purged += n;
        if n == 0 {
            break;
        }
    }
    if store.capabilities().native_ttl {
        // The store may have removed some of them itself already.
        assert!(purged <= 3, "purged {purged}, only 3 had expired");
    } else {
        assert_eq!(purged, 3);
    }
}
