//! Plain record operations: get, put, delete, list, clear.

use std::sync::Arc;

use stent_core::{ListQuery, RecordMeta, RecordState, ResultStore, Timestamp};

use crate::support::{CACHE, IDEM, meta};

/// A key that was never written reads as `None`.
pub async fn get_missing_key_returns_none(store: Arc<dyn ResultStore>) {
    for ns in [IDEM, CACHE] {
        assert_eq!(store.get(ns, "never-written").await.unwrap(), None);
    }
}

/// `put` then `get` returns the value, state completed, and the metadata written with it.
pub async fn put_then_get_round_trips_value_and_metadata(store: Arc<dyn ResultStore>) {
    let before = Timestamp::now();
    let m = RecordMeta {
        function: Some("reports::generate"),
        version: Some("v7"),
        fingerprint: Some("fp-1"),
    };
    store
        .put(CACHE, "k", b"\x01{\"a\":1}", None, m)
        .await
        .unwrap();
    let r = store.get(CACHE, "k").await.unwrap().expect("record");
    assert_eq!(r.key, "k");
    assert_eq!(r.state, RecordState::Completed);
    assert_eq!(r.value.as_deref(), Some(&b"\x01{\"a\":1}"[..]));
    assert_eq!(r.function.as_deref(), Some("reports::generate"));
    assert_eq!(r.version.as_deref(), Some("v7"));
    assert_eq!(r.fingerprint.as_deref(), Some("fp-1"));
    assert_eq!(r.expires_at, None);
    assert_eq!(r.lease_token, None);
    // Server clocks may differ a little from this process's.
    let skew = 10 * 60 * 1000;
    assert!(
        (r.created_at.as_millis() - before.as_millis()).abs() < skew,
        "created_at {} far from now {before}",
        r.created_at
    );
    assert!(r.completed_at.is_some());
}

/// A second `put` replaces the value and the expiry of the first.
pub async fn put_replaces_existing_record(store: Arc<dyn ResultStore>) {
    store
        .put(
            CACHE,
            "k",
            b"one",
            Some(std::time::Duration::from_secs(3600)),
            meta(),
        )
        .await
        .unwrap();
    store.put(CACHE, "k", b"two", None, meta()).await.unwrap();
    let r = store.get(CACHE, "k").await.unwrap().expect("record");
    assert_eq!(r.value.as_deref(), Some(&b"two"[..]));
    assert_eq!(r.expires_at, None);
}

/// Every byte value, including NUL and invalid UTF-8, round-trips exactly.
pub async fn put_round_trips_every_byte_value(store: Arc<dyn ResultStore>) {
    let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    store.put(IDEM, "bytes", &all, None, meta()).await.unwrap();
    let r = store.get(IDEM, "bytes").await.unwrap().expect("record");
    assert_eq!(r.value.as_deref(), Some(&all[..]));
}

/// An empty value is stored as empty, not as absent.
pub async fn put_round_trips_empty_value(store: Arc<dyn ResultStore>) {
    store.put(CACHE, "empty", b"", None, meta()).await.unwrap();
    let r = store.get(CACHE, "empty").await.unwrap().expect("record");
    assert_eq!(r.value.as_deref(), Some(&b""[..]));
}

/// `delete` returns whether a record was there, and removes it.
pub async fn delete_reports_whether_a_record_was_there(store: Arc<dyn ResultStore>) {
    store.put(CACHE, "d", b"v", None, meta()).await.unwrap();
    assert!(store.delete(CACHE, "d").await.unwrap());
    assert_eq!(store.get(CACHE, "d").await.unwrap(), None);
    assert!(!store.delete(CACHE, "d").await.unwrap());
}

/// The same key in the two namespaces names two different records.
pub async fn namespaces_are_independent(store: Arc<dyn ResultStore>) {
    store
        .put(CACHE, "same", b"cache", None, meta())
        .await
        .unwrap();
    assert_eq!(store.get(IDEM, "same").await.unwrap(), None);
    store
        .put(IDEM, "same", b"idem", None, meta())
        .await
        .unwrap();
    let c = store.get(CACHE, "same").await.unwrap().unwrap();
    let i = store.get(IDEM, "same").await.unwrap().unwrap();
    assert_eq!(c.value.as_deref(), Some(&b"cache"[..]));
    assert_eq!(i.value.as_deref(), Some(&b"idem"[..]));
}

/// `list` returns prefix matches in ascending key order, `limit` at a time, with a cursor.
pub async fn list_pages_in_key_order_with_cursor(store: Arc<dyn ResultStore>) {
    for k in ["a3", "b1", "a1", "a2", "a4", "a5"] {
        store
            .put(CACHE, k, k.as_bytes(), None, meta())
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = store
            .list(CACHE, &ListQuery::new().prefix("a").limit(2).cursor(cursor))
            .await
            .unwrap();
        assert!(
            page.records.len() <= 2,
            "page over limit: {:?}",
            page.records
        );
        seen.extend(page.records.iter().map(|r| r.key.clone()));
        pages += 1;
        assert!(pages < 10, "list never ended");
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ["a1", "a2", "a3", "a4", "a5"]);
    let all = store
        .list(CACHE, &ListQuery::new().limit(100))
        .await
        .unwrap();
    assert_eq!(all.records.len(), 6);
    assert_eq!(all.next_cursor, None);
    assert_eq!(all.records[0].value.as_deref(), Some(&b"a1"[..]));
}

/// SQL `LIKE` and glob wildcards in a prefix are ordinary characters.
pub async fn list_matches_prefix_literally(store: Arc<dyn ResultStore>) {
    for k in ["a%c", "abc", "a_c", "a*c", "a[b]c", "a?c", "a\\c"] {
        store.put(CACHE, k, b"v", None, meta()).await.unwrap();
    }
    for (prefix, expect) in [
        ("a%", "a%c"),
        ("a_", "a_c"),
        ("a*", "a*c"),
        ("a[", "a[b]c"),
        ("a?", "a?c"),
        ("a\\", "a\\c"),
    ] {
        let page = store
            .list(CACHE, &ListQuery::new().prefix(prefix))
            .await
            .unwrap();
        let keys: Vec<_> = page.records.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, [expect], "prefix {prefix:?}");
    }
}

/// `clear` deletes every record of one namespace, reports how many, and leaves the other.
pub async fn clear_empties_only_its_namespace(store: Arc<dyn ResultStore>) {
    for k in ["x1", "x2", "x3"] {
        store.put(CACHE, k, b"v", None, meta()).await.unwrap();
    }
    store.put(IDEM, "kept", b"v", None, meta()).await.unwrap();
    assert_eq!(store.clear(CACHE).await.unwrap(), 3);
    assert!(
        store
            .list(CACHE, &ListQuery::new())
            .await
            .unwrap()
            .records
            .is_empty()
    );
    assert!(store.get(IDEM, "kept").await.unwrap().is_some());
    assert_eq!(store.clear(CACHE).await.unwrap(), 0);
}
