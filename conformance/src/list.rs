//! `list`: records in key order, a page at a time (admin).

use std::sync::Arc;

use stent_core::{ListQuery, ResultStore};

use crate::support::{CACHE, TTL, eventually, meta};

/// Returns records whose key starts with `query.prefix`, after `query.cursor`, at most `query.limit`, in ascending key order; `next_cursor` is `Some` while more may follow.
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

/// The prefix is literal: SQL `LIKE` and glob wildcards in it are ordinary characters.
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

/// Expired records are left out unless `query.include_expired`.
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
