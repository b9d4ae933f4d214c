//! Bad input gets a clear, typed error and loses nothing.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use stent_core::{ClaimOutcome, ErrorKind, LeaseToken, ResultStore, Status, Stent};

use crate::support::{CACHE, IDEM, LIVE, claim, meta};

/// Arguments JSON cannot express (NaN, a map with tuple keys) are a `Key` error; the function never runs.
pub async fn unencodable_args_are_a_key_error(store: Arc<dyn ResultStore>) {
    let runs = Arc::new(AtomicU32::new(0));
    let stent = Stent::from_arc(store);
    let f = stent.durable("math::sqrt").cached().wrap({
        let runs = Arc::clone(&runs);
        move |x: f64| {
            let runs = Arc::clone(&runs);
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Infallible>(x.sqrt())
            }
        }
    });
    let e = f.call(f64::NAN).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Key, "{e}");
    assert!(e.to_string().contains("non-finite"), "{e}");
    let g = stent
        .durable("maps")
        .idempotent()
        .wrap(|m: HashMap<(u8, u8), u8>| async move { Ok::<_, Infallible>(m.len()) });
    let e = g.call(HashMap::from([((1, 2), 3)])).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Key, "{e}");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

/// Corrupt bytes in an idempotency record are a `Decode` error naming the key; the record is kept and nothing re-runs.
pub async fn corrupt_idempotency_record_is_a_decode_error_and_kept(store: Arc<dyn ResultStore>) {
    let runs = Arc::new(AtomicU32::new(0));
    let f = Stent::from_arc(store.clone())
        .durable("payments::charge")
        .idempotent()
        .wrap({
            let runs = Arc::clone(&runs);
            move |_: ()| {
                let runs = Arc::clone(&runs);
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(1u8)
                }
            }
        });
    let key = f.key_for(&()).unwrap();
    for garbage in [&b"\x01{not json"[..], b"\xff\xfe", b""] {
        store.put(IDEM, &key, garbage, None, meta()).await.unwrap();
        let e = f.call(()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
        assert_eq!(e.key(), Some(key.as_str()));
        let r = store.get(IDEM, &key).await.unwrap().expect("record kept");
        assert_eq!(
            r.value.as_deref(),
            Some(garbage),
            "record must not be overwritten"
        );
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "never re-execute because of a decoding problem"
    );
}

/// An undecodable cached value is a miss: the function runs and overwrites it.
pub async fn corrupt_cached_value_is_a_self_healing_miss(store: Arc<dyn ResultStore>) {
    let f = Stent::from_arc(store.clone())
        .durable("reports::build")
        .cached()
        .wrap(|n: u32| async move { Ok::<_, Infallible>(vec![n; 3]) });
    let key = f.key_for(&4).unwrap();
    store
        .put(CACHE, &key, b"\x01\"not a vec\"", None, meta())
        .await
        .unwrap();
    let t = f.call_traced(4).await.unwrap();
    assert_eq!(
        (t.value, t.outcome.status),
        (vec![4, 4, 4], Status::Executed)
    );
    assert_eq!(
        f.call_traced(4).await.unwrap().outcome.status,
        Status::CacheHit
    );
    let r = store.get(CACHE, &key).await.unwrap().unwrap();
    assert_eq!(r.value.as_deref(), Some(&b"\x01[4,4,4]"[..]));
}

/// A stored value of the wrong type is a `Decode` error that names the key and the expected type.
pub async fn stored_value_of_wrong_type_is_a_decode_error_naming_the_key(
    store: Arc<dyn ResultStore>,
) {
    let f = Stent::from_arc(store.clone())
        .durable("counters::get")
        .idempotent()
        .wrap(|_: ()| async { Ok::<_, Infallible>(5u64) });
    let key = f.key_for(&()).unwrap();
    let token = LeaseToken::generate();
    assert!(matches!(
        claim(&*store, IDEM, &key, &token, LIVE).await,
        ClaimOutcome::Acquired { .. }
    ));
    store
        .complete(IDEM, &key, &token, b"\x01\"five\"", None)
        .await
        .unwrap();
    let e = f.call(()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode);
    assert_eq!(e.key(), Some(key.as_str()));
    let msg = e.to_string();
    assert!(
        msg.contains("u64") && msg.contains("counters::get"),
        "{msg}"
    );
    assert!(store.get(IDEM, &key).await.unwrap().is_some());
}

/// A value over the store's size limit is `ValueTooLarge` and the claim is released; under it, 1 MiB round-trips.
pub async fn oversized_value_is_refused_or_round_trips(store: Arc<dyn ResultStore>) {
    // Limits past a few MiB (SQLite's 1 GB) are not worth allocating in a test.
    let max = store.capabilities().max_value_len.filter(|&m| m <= 8 << 20);
    let size = max.map_or(1 << 20, |m| m + 1);
    let f = Stent::from_arc(store.clone())
        .durable("blobs::make")
        .idempotent()
        .wrap(move |_: ()| async move { Ok::<_, Infallible>("x".repeat(size)) });
    let key = f.key_for(&()).unwrap();
    match max {
        Some(_) => {
            let e = f.call(()).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ValueTooLarge, "{e}");
            assert_eq!(store.get(IDEM, &key).await.unwrap(), None, "claim released");
            let e = store
                .put(CACHE, "big", &vec![0u8; size], None, meta())
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ValueTooLarge);
        }
        None => {
            assert_eq!(f.call(()).await.unwrap().len(), size);
            let t = f.call_traced(()).await.unwrap();
            assert_eq!((t.value.len(), t.outcome.status), (size, Status::Replayed));
        }
    }
}
