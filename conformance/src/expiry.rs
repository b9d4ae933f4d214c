//! Expiry: TTLs hide records at once and purge removes only what expired.

use std::sync::Arc;
use std::time::Duration;

use stent_core::{ClaimOutcome, LeaseToken, ListQuery, ResultStore};

use crate::support::{CACHE, IDEM, LIVE, acquire, claim, eventually, meta};

const TTL: Duration = Duration::from_millis(300);

/// A record is visible before its TTL and `None` after it, removed or not.
pub async fn get_hides_expired_records(store: Arc<dyn ResultStore>) {
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

/// An expired completed record is claimed afresh: attempt 1, not a takeover.
pub async fn claim_on_expired_record_starts_fresh(store: Arc<dyn ResultStore>) {
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

/// `purge_expired` deletes expired records only, and counts them.
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

/// `list` leaves expired records out unless `include_expired` is set.
pub async fn list_hides_expired_unless_asked(store: Arc<dyn ResultStore>) {
    store
        .put(CACHE, "e", b"v", Some(TTL), meta())
        .await
        .unwrap();
    store.put(CACHE, "f", b"v", None, meta()).await.unwrap();
    eventually("record expires", || async {
        store.get(CACHE, "e").await.unwrap().is_none().then_some(())
    })
    .await;
    let live = store.list(CACHE, &ListQuery::new()).await.unwrap();
    assert_eq!(
        live.records
            .iter()
            .map(|r| r.key.as_str())
            .collect::<Vec<_>>(),
        ["f"]
    );
    let all = store
        .list(CACHE, &ListQuery::new().include_expired(true))
        .await
        .unwrap();
    // A store with native TTL may already have removed it; one without must still show it.
    let keys: Vec<_> = all.records.iter().map(|r| r.key.as_str()).collect();
    if store.capabilities().native_ttl {
        assert!(keys == ["e", "f"] || keys == ["f"], "{keys:?}");
    } else {
        assert_eq!(keys, ["e", "f"]);
    }
}
