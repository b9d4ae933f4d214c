//! Keys: any UTF-8 round-trips exactly, with no injection and no truncation.

use std::convert::Infallible;
use std::sync::Arc;

use stent_core::{ClaimOutcome, ErrorKind, LeaseToken, ListQuery, ResultStore, Status, Stent};

use crate::support::{CACHE, IDEM, LIVE, claim, meta};

const AWKWARD: &[&str] = &[
    "it's \"quoted\"",
    "100%_done",
    "a|b|c",
    "ns:key:*",
    "line\nbreak\r\ttab",
    "emoji 🦀🚀 and ünïcödé",
    "'; DROP TABLE cache; --",
    "{\"json\": [1, 2]}",
    "back\\slash",
    " leading and trailing ",
    "[glob]?*",
];

/// Keys with quotes, `%`, `|`, `:`, `*`, newlines, emoji and SQL/glob syntax round-trip exactly.
pub async fn keys_with_special_characters_round_trip(store: Arc<dyn ResultStore>) {
    for (i, key) in AWKWARD.iter().enumerate() {
        let value = format!("value-{i}");
        store
            .put(CACHE, key, value.as_bytes(), None, meta())
            .await
            .unwrap();
        let r = store
            .get(CACHE, key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{key:?} lost"));
        assert_eq!(r.key, *key);
        assert_eq!(r.value.as_deref(), Some(value.as_bytes()), "{key:?}");
        let token = LeaseToken::generate();
        assert!(matches!(
            claim(&*store, IDEM, key, &token, LIVE).await,
            ClaimOutcome::Acquired { .. }
        ));
        store
            .complete(IDEM, key, &token, value.as_bytes(), None)
            .await
            .unwrap();
    }
    let listed = store
        .list(CACHE, &ListQuery::new().limit(1000))
        .await
        .unwrap();
    let mut expected: Vec<&str> = AWKWARD.to_vec();
    expected.sort_unstable();
    let got: Vec<&str> = listed.records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(got, expected);
    assert!(
        store
            .delete(CACHE, "'; DROP TABLE cache; --")
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .list(CACHE, &ListQuery::new().limit(1000))
            .await
            .unwrap()
            .records
            .len(),
        AWKWARD.len() - 1
    );
}

/// A 4 KiB key round-trips, or is refused with `KeyTooLarge` when over the store's declared limit.
pub async fn long_keys_round_trip_or_are_refused_clearly(store: Arc<dyn ResultStore>) {
    let key: String = "k".repeat(4096 - 4) + "🦀";
    assert_eq!(key.len(), 4096);
    match store.capabilities().max_key_len {
        Some(max) if key.len() > max => {
            let e = store
                .put(CACHE, &key, b"v", None, meta())
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::KeyTooLarge, "{e}");
            let long_ok: String = "k".repeat(max);
            store
                .put(CACHE, &long_ok, b"v", None, meta())
                .await
                .unwrap();
            assert!(store.get(CACHE, &long_ok).await.unwrap().is_some());
        }
        _ => {
            store.put(CACHE, &key, b"v", None, meta()).await.unwrap();
            let r = store
                .get(CACHE, &key)
                .await
                .unwrap()
                .expect("long key record");
            assert_eq!(r.key, key);
            let cut = &key[..4000];
            assert_eq!(
                store.get(CACHE, cut).await.unwrap(),
                None,
                "key must not be truncated"
            );
        }
    }
}

/// Default keys are `{name}|{version or None}|{JSON args}`, hashed past 200 bytes, and stored under exactly that.
pub async fn default_keys_follow_the_seed_format(store: Arc<dyn ResultStore>) {
    let stent = Stent::from_arc(store.clone());
    let f = stent
        .durable("emails::send_welcome_email")
        .idempotent()
        .wrap(|_user: String| async { Ok::<_, Infallible>(true) });
    let t = f.call_traced("user-123".into()).await.unwrap();
    assert_eq!(
        t.outcome.key,
        r#"emails::send_welcome_email|None|["user-123"]"#
    );
    assert_eq!(t.outcome.status, Status::Executed);
    assert!(store.get(IDEM, &t.outcome.key).await.unwrap().is_some());
    let big = "x".repeat(300);
    let t = f.call_traced(big).await.unwrap();
    assert!(
        t.outcome
            .key
            .starts_with("emails::send_welcome_email|None|sha256:"),
        "{}",
        t.outcome.key
    );
    assert!(t.outcome.key.len() <= 200);
    let hashed = stent
        .durable("users::lookup")
        .hashed_key()
        .version("v2")
        .wrap(|_email: String| async { Ok::<_, Infallible>(1u8) });
    let t = hashed
        .call_traced("someone@example.com".into())
        .await
        .unwrap();
    assert!(
        !t.outcome.key.contains("someone"),
        "hashed key leaks args: {}",
        t.outcome.key
    );
    assert!(t.outcome.key.starts_with("users::lookup|v2|sha256:"));
}

/// Custom keys every store holds alike: a NUL, 10 KB, emoji, control characters, a key that
/// looks hashed. Each executes once, replays, and stays apart from the others; keys past
/// 1024 bytes, with a NUL or starting with `sha256:` are stored as `{scope}|sha256:<hex>`.
pub async fn custom_keys_are_portable_across_stores(store: Arc<dyn ResultStore>) {
    let hostile: Vec<String> = vec![
        "nul\0byte".into(),
        "\0".into(),
        "k".repeat(10 * 1024),
        "🦀".repeat(600),
        "k".repeat(1024 - "keys::portable|None|".len()),
        "k".repeat(1025 - "keys::portable|None|".len()),
        format!("sha256:{}", "0".repeat(64)),
        "tab\tnewline\nbell\u{7}".into(),
        "emoji 🦀 and ünïcödé".into(),
    ];
    let stent = Stent::from_arc(store.clone());
    let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let f = stent
        .durable("keys::portable")
        .idempotent()
        .cached()
        .key(|k: &String| k.clone())
        .wrap({
            let runs = Arc::clone(&runs);
            move |k: String| {
                let runs = Arc::clone(&runs);
                async move {
                    runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Ok::<_, Infallible>(k.len())
                }
            }
        });
    let mut keys = std::collections::BTreeSet::new();
    for k in &hostile {
        let t = f
            .call_traced(k.clone())
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((t.value, t.outcome.status), (k.len(), Status::Executed));
        let as_given = format!("keys::portable|None|{k}");
        if as_given.len() <= 1024 && !k.contains('\0') && !k.starts_with("sha256:") {
            assert_eq!(t.outcome.key, as_given);
        } else {
            assert!(
                t.outcome.key.starts_with("keys::portable|None|sha256:")
                    && t.outcome.key.len() == "keys::portable|None|sha256:".len() + 64,
                "{}",
                t.outcome.key
            );
        }
        assert!(store.get(IDEM, &t.outcome.key).await.unwrap().is_some());
        keys.insert(t.outcome.key);
    }
    assert_eq!(
        keys.len(),
        hostile.len(),
        "two custom keys shared a stored key"
    );
    store.clear(CACHE).await.unwrap();
    for k in &hostile {
        let t = f.call_traced(k.clone()).await.unwrap();
        assert_eq!((t.value, t.outcome.status), (k.len(), Status::Replayed));
    }
    assert_eq!(
        runs.load(std::sync::atomic::Ordering::SeqCst) as usize,
        hostile.len()
    );
}
