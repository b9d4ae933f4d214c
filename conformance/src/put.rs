//! `put`: the cache's unconditional write.

use std::sync::Arc;
use std::time::Duration;

use stent_core::{Capabilities, ErrorKind, RecordMeta, RecordState, ResultStore, Timestamp};

use crate::support::{CACHE, IDEM, meta};

/// Creates a completed record with `value` and `meta`, which `get` returns as written.
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

/// Replaces an existing record: its value and its expiry.
pub async fn put_replaces_existing_record(store: Arc<dyn ResultStore>) {
    store
        .put(CACHE, "k", b"one", Some(Duration::from_secs(3600)), meta())
        .await
        .unwrap();
    store.put(CACHE, "k", b"two", None, meta()).await.unwrap();
    let r = store.get(CACHE, "k").await.unwrap().expect("record");
    assert_eq!(r.value.as_deref(), Some(&b"two"[..]));
    assert_eq!(r.expires_at, None);
}

/// The record expires `ttl` from now (never, if `None`).
pub async fn put_expires_ttl_from_now(store: Arc<dyn ResultStore>) {
    let hour = Duration::from_secs(3600);
    store
        .put(CACHE, "hour", b"v", Some(hour), meta())
        .await
        .unwrap();
    let r = store.get(CACHE, "hour").await.unwrap().expect("record");
    let expires = r.expires_at.expect("a TTL sets expires_at");
    // The store may take the time from its server, so only the TTL's length is exact enough.
    let skew = Duration::from_secs(60);
    assert!(
        expires > r.created_at.add(hour - skew) && expires < r.created_at.add(hour + skew),
        "expires_at {expires} is not an hour after created_at {}",
        r.created_at
    );
    assert!(expires > Timestamp::now().add(hour / 2), "{expires}");
    store
        .put(CACHE, "forever", b"v", None, meta())
        .await
        .unwrap();
    let r = store.get(CACHE, "forever").await.unwrap().expect("record");
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

/// The same key in the two namespaces names two different records.
pub async fn put_keeps_the_two_namespaces_apart(store: Arc<dyn ResultStore>) {
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

/// A value over [`Capabilities::max_value_len`]: `ErrorKind::ValueTooLarge`, and nothing is written.
pub async fn put_oversized_value_is_value_too_large(store: Arc<dyn ResultStore>) {
    let caps: Capabilities = store.capabilities();
    let Some(max) = caps.max_value_len else {
        // No declared limit: nothing is over it.
        return;
    };
    for ns in [CACHE, IDEM] {
        let e = store
            .put(ns, "big", &vec![7u8; max + 1], None, meta())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueTooLarge, "{e}");
        assert_eq!(store.get(ns, "big").await.unwrap(), None);
    }
    store
        .put(CACHE, "kept", b"old", None, meta())
        .await
        .unwrap();
    let e = store
        .put(CACHE, "kept", &vec![7u8; max + 1], None, meta())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ValueTooLarge, "{e}");
    let r = store.get(CACHE, "kept").await.unwrap().expect("record");
    assert_eq!(r.value.as_deref(), Some(&b"old"[..]));
}
