//! [`LocalTier`] in front of this store: what it answers, and for how long.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use stent_core::testkit::{FaultStore, Op};
use stent_core::{LocalTier, RecordState, ResultStore, Status, Stent};

use crate::support::{CACHE, IDEM, LIVE};

/// Round trips that reached the store behind the tier.
fn trips(store: &FaultStore<Arc<dyn ResultStore>>) -> u64 {
    Op::ALL.iter().map(|&op| store.calls(op)).sum()
}

/// A replay from the tier is the store's replay (value, status, attempt) without a round
/// trip; a cached value is a hit without one too; an invalidation through the tier reaches
/// the next call at once.
pub async fn local_tier_replays_what_the_store_replays(store: Arc<dyn ResultStore>) {
    let counted = FaultStore::new(store);
    let tier = LocalTier::new(counted.clone(), 1000, 1 << 20).local_ttl(Duration::from_secs(60));
    let stent = Stent::new(tier);
    let runs = Arc::new(AtomicU32::new(0));
    let r = Arc::clone(&runs);
    let charge = stent
        .durable("billing::charge")
        .idempotent()
        .wrap(move |id: String| {
            let n = r.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok::<_, Infallible>(format!("receipt {id} run {n}")) }
        });
    let first = charge.call_traced("o1".into()).await.unwrap();
    assert_eq!(first.outcome.status, Status::Executed);
    let from_store = charge.call_traced("o1".into()).await.unwrap();
    let before = trips(&counted);
    let from_tier = charge.call_traced("o1".into()).await.unwrap();
    assert_eq!(trips(&counted), before, "the replay reached the store");
    assert_eq!(from_tier.value, from_store.value);
    assert_eq!(from_tier.outcome, from_store.outcome);
    assert_eq!(from_tier.outcome.status, Status::Replayed);

    let c = Arc::new(AtomicU32::new(0));
    let cr = Arc::clone(&c);
    let rates = stent
        .durable("fx::rates")
        .cached()
        .ttl(Duration::from_secs(600))
        .wrap(move |base: String| {
            let n = cr.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok::<_, Infallible>(format!("{base} v{n}")) }
        });
    assert_eq!(rates.call("EUR".into()).await.unwrap(), "EUR v1");
    rates.call("EUR".into()).await.unwrap(); // read from the store, now kept
    let before = trips(&counted);
    let hit = rates.call_traced("EUR".into()).await.unwrap();
    assert_eq!(
        (hit.value.as_str(), hit.outcome.status),
        ("EUR v1", Status::CacheHit)
    );
    assert_eq!(trips(&counted), before, "the hit reached the store");
    assert!(rates.invalidate(&"EUR".to_owned()).await.unwrap());
    assert_eq!(rates.call("EUR".into()).await.unwrap(), "EUR v2");
    // Records in progress are never kept: each read reaches the store.
    crate::support::acquire(&counted, IDEM, "in-progress", LIVE).await;
    for _ in 0..2 {
        let before = trips(&counted);
        let record = stent.store().get(IDEM, "in-progress").await.unwrap();
        assert_eq!(record.map(|r| r.state), Some(RecordState::InProgress));
        assert_eq!(trips(&counted), before + 1);
    }
}

/// Two processes, each with its own tier: a value another process deletes or replaces is
/// gone from this one's tier once its local TTL has passed, and not before a read finds it.
pub async fn local_tier_sees_another_process_within_its_local_ttl(store: Arc<dyn ResultStore>) {
    let local_ttl = Duration::from_millis(300);
    let tier = |store: &Arc<dyn ResultStore>| {
        LocalTier::new(Arc::clone(store), 1000, 1 << 20).local_ttl(local_ttl)
    };
    let (a, b) = (Stent::new(tier(&store)), Stent::new(tier(&store)));
    let runs = Arc::new(AtomicU32::new(0));
    let make = |stent: &Stent| {
        let runs = Arc::clone(&runs);
        stent
            .durable("fx::board")
            .cached()
            .ttl(Duration::from_secs(600))
            .wrap(move |board: String| {
                let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                async move { Ok::<_, Infallible>(format!("{board} v{n}")) }
            })
    };
    let (fa, fb) = (make(&a), make(&b));
    assert_eq!(fa.call("rates".into()).await.unwrap(), "rates v1");
    assert_eq!(fa.call("rates".into()).await.unwrap(), "rates v1"); // kept in a's tier
    // Another process deletes it (as `stent cache rm` would) and recomputes it.
    assert!(b.invalidate_function("fx::board", None).await.unwrap() >= 1);
    assert_eq!(fb.call("rates".into()).await.unwrap(), "rates v2");
    tokio::time::sleep(local_ttl + Duration::from_millis(50)).await;
    assert_eq!(fa.call("rates".into()).await.unwrap(), "rates v2");
    let key = fa.key_for(&"rates".to_owned()).unwrap();
    assert!(store.get(CACHE, &key).await.unwrap().is_some());
}
