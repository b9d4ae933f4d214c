//! Metrics through the `metrics` facade: what each kind of call counts.
#![cfg(feature = "metrics")]

use std::convert::Infallible;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use stent_core::{InFlight, LeaseToken, MemoryStore, Namespace, ResultStore, Stent};

type Sample = (String, Vec<(String, String)>, DebugValue);

fn counter(snapshot: &[Sample], name: &str, labels: &[(&str, &str)]) -> u64 {
    snapshot
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| match v {
            DebugValue::Counter(c) => *c,
            _ => 0,
        })
        .sum()
}

#[test]
fn calls_count_executions_hits_replays_waits_takeovers_and_errors() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = MemoryStore::new();
            let stent = Stent::new(store.clone());
            let cached = stent
                .durable("m::cached")
                .cached()
                .wrap(|x: u32| async move { Ok::<_, Infallible>(x) });
            cached.call(1).await.unwrap();
            cached.call(1).await.unwrap();
            let idem = stent
                .durable("m::idem")
                .idempotent()
                .wrap(|x: u32| async move { if x == 0 { Err("zero") } else { Ok(x) } });
            idem.call(1).await.unwrap();
            idem.call(1).await.unwrap();
            idem.call(0).await.unwrap_err();
            // A crashed owner: the next call waits, then takes over.
            let key = idem.key_for(&2).unwrap();
            let token = LeaseToken::generate();
            let claim = stent_core::Claim {
                token: &token,
                lease: Duration::from_millis(100),
                meta: Default::default(),
            };
            store
                .claim(Namespace::Idempotency, &key, &claim)
                .await
                .unwrap();
            idem.call(2).await.unwrap();
            // In flight elsewhere, rejected.
            let reject = stent
                .durable("m::reject")
                .idempotent()
                .in_flight(InFlight::Reject)
                .wrap(|x: u32| async move { Ok::<_, Infallible>(x) });
            let key = reject.key_for(&3).unwrap();
            let claim = stent_core::Claim {
                token: &token,
                lease: Duration::from_secs(30),
                meta: Default::default(),
            };
            store
                .claim(Namespace::Idempotency, &key, &claim)
                .await
                .unwrap();
            reject.call(3).await.unwrap_err();
        });
    });
    let snapshot: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(k, _, _, v)| {
            let key = k.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels, v)
        })
        .collect();
    let c = |name, labels: &[(&str, &str)]| counter(&snapshot, name, labels);
    assert_eq!(c("stent_executions_total", &[("function", "m::cached")]), 1);
    assert_eq!(c("stent_cache_hits_total", &[("function", "m::cached")]), 1);
    assert_eq!(c("stent_executions_total", &[("function", "m::idem")]), 3);
    assert_eq!(c("stent_replays_total", &[("function", "m::idem")]), 1);
    assert_eq!(
        c(
            "stent_calls_total",
            &[("function", "m::idem"), ("outcome", "failed")]
        ),
        1
    );
    assert_eq!(
        c("stent_in_flight_waits_total", &[("function", "m::idem")]),
        1
    );
    assert_eq!(c("stent_takeovers_total", &[("function", "m::idem")]), 1);
    assert_eq!(
        c(
            "stent_calls_total",
            &[("function", "m::reject"), ("outcome", "error")]
        ),
        1
    );
    assert_eq!(c("stent_executions_total", &[("function", "m::reject")]), 0);
    let histograms = snapshot
        .iter()
        .filter(|(n, _, v)| {
            n == "stent_call_duration_seconds"
                && matches!(v, DebugValue::Histogram(h) if !h.is_empty())
        })
        .count();
    assert!(histograms >= 4, "latency recorded per function and outcome");
}

#[test]
fn a_local_tier_counts_its_broadcast_events() {
    use futures_util::StreamExt;
    use stent_core::LocalTier;
    use stent_core::broadcast::{Invalidation, Invalidations};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let events = futures_util::stream::iter([
                Invalidation::Subscribed,
                Invalidation::Key(Namespace::Cache, "k".into()),
                Invalidation::Namespace(Namespace::Cache),
                Invalidation::Lost,
            ])
            .chain(futures_util::stream::pending::<Invalidation>());
            let tier = LocalTier::new(MemoryStore::new(), 10, 1 << 10)
                .broadcast(Invalidations::new(events));
            tokio::time::sleep(Duration::from_millis(50)).await;
            tier.get(Namespace::Idempotency, "k").await.unwrap();
        });
    });
    let snapshot: Vec<Sample> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(k, _, _, v)| {
            let key = k.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels, v)
        })
        .collect();
    let local = |event| counter(&snapshot, "stent_local_total", &[("event", event)]);
    assert_eq!(local("subscribed"), 1);
    assert_eq!(local("broadcast"), 2);
    assert_eq!(local("subscription_lost"), 1);
    assert_eq!(local("bypass"), 1);
}
