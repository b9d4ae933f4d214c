//! Metrics through the `metrics` facade: one count per guarded request, by outcome, and the
//! responses sent without being stored.
#![cfg(feature = "metrics")]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use stent_core::MemoryStore;
use stent_http::IdempotencyLayer;
use tower::{Layer as _, Service as _, ServiceExt as _};

type Snapshot = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

fn counter(snapshot: &Snapshot, name: &str, label: (&str, &str)) -> u64 {
    snapshot
        .iter()
        .filter(|(key, ..)| {
            key.key().name() == name
                && key
                    .key()
                    .labels()
                    .any(|l| l.key() == label.0 && l.value() == label.1)
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(c) => *c,
            _ => 0,
        })
        .sum()
}

#[test]
fn requests_count_by_outcome_and_unstored_responses_by_reason() {
    let recorder = DebuggingRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let handler = tower::service_fn(|req: Request<Full<Bytes>>| async move {
                let size = if req.uri().path() == "/big" { 4096 } else { 2 };
                if req.uri().path() == "/slow" {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("x".repeat(size)))))
            });
            let layer = IdempotencyLayer::new(MemoryStore::new()).max_response_body(1024);
            let service = layer.layer(handler);
            let send = |path: &'static str, key: &'static str, body: &'static str| {
                let mut service = service.clone();
                async move {
                    let req = Request::post(path)
                        .header("idempotency-key", key)
                        .body(Full::new(Bytes::from(body)))
                        .unwrap();
                    service
                        .ready()
                        .await
                        .unwrap()
                        .call(req)
                        .await
                        .unwrap()
                        .status()
                }
            };
            assert_eq!(send("/p", "a", "1").await, 200);
            assert_eq!(send("/p", "a", "1").await, 200);
            assert_eq!(send("/p", "a", "2").await, 422);
            assert_eq!(send("/p", "", "1").await, 400);
            let slow = tokio::spawn(send("/slow", "s", ""));
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(send("/slow", "s", "").await, 409);
            slow.await.unwrap();
            assert_eq!(send("/big", "b", "").await, 200);
        });
    });
    // A snapshot resets the counters: one for all the checks.
    let snapshot = &recorder.snapshotter().snapshot().into_vec();
    let requests = "stent_http_requests_total";
    assert_eq!(counter(snapshot, requests, ("outcome", "executed")), 3);
    assert_eq!(counter(snapshot, requests, ("outcome", "replayed")), 1);
    assert_eq!(counter(snapshot, requests, ("outcome", "mismatch")), 1);
    assert_eq!(counter(snapshot, requests, ("outcome", "rejected")), 1);
    assert_eq!(counter(snapshot, requests, ("outcome", "conflict")), 1);
    assert_eq!(counter(snapshot, requests, ("name", "http")), 7);
    let unrecorded = "stent_http_unrecorded_total";
    assert_eq!(counter(snapshot, unrecorded, ("reason", "too_large")), 1);
}
