//! The rules that depend on the store, one case each, run on every backend.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use stent_core::key::PORTABLE_KEY_LEN;
use stent_core::{InFlight, ListQuery, Namespace, ResultStore};
use stent_http::IdempotencyLayer;

use crate::support::{App, Req, eventually, layer, post, serve};

/// A first request runs the handler; the same request again gets the stored status,
/// allowlisted headers and body, marked as a replay, without running the handler.
pub(crate) async fn first_call_runs_and_replay_repeats_it(store: Arc<dyn ResultStore>) {
    let app = serve(layer(store)).await;
    let req = post("/payments", "pay-1", r#"{"amount":500}"#);
    let first = app.send(req.clone()).await;
    assert_eq!(first.status, 201, "{first:?}");
    assert!(!first.replayed());
    let replay = app.send(req.clone()).await;
    assert_eq!(app.runs(), 1, "the replay ran the handler");
    assert!(replay.replayed(), "{replay:?}");
    assert_eq!(replay.status, first.status);
    assert_eq!(replay.body, first.body);
    for name in ["content-type", "location"] {
        assert_eq!(replay.header(name), first.header(name), "{name}");
    }
    // Never replayed: cookies and the date; nor headers outside the allowlist.
    assert_eq!(first.header("set-cookie"), Some("session=1"));
    assert_eq!(replay.header("set-cookie"), None);
    assert_eq!(replay.header("x-run"), None);
    assert_ne!(replay.header("date"), None, "the server sets its own date");
    // The key in its structured-field form is the same key.
    let quoted = app.send(req.header("idempotency-key", "\"pay-1\"")).await;
    assert!(quoted.replayed());
    assert_eq!(quoted.body, first.body);
    assert_eq!(app.runs(), 1);
}

/// The same key with another body, path, query or content type is refused with 422 and
/// never sees the stored response.
pub(crate) async fn same_key_with_another_payload_is_422(store: Arc<dyn ResultStore>) {
    let app = serve(layer(store)).await;
    let req = post("/payments", "pay-1", r#"{"amount":500}"#);
    assert_eq!(app.send(req.clone()).await.status, 201);
    let other_body = post("/payments", "pay-1", r#"{"amount":900}"#);
    let other_type = req.clone().header("content-type", "text/plain");
    let other_query = Req {
        path: "/payments?currency=eur".to_owned(),
        ..req.clone()
    };
    for other in [other_body, other_type, other_query] {
        let refused = app.send(other).await;
        assert_eq!(refused.status, 422, "{refused:?}");
        assert_eq!(refused.problem(), "PayloadMismatch");
        assert!(!refused.body.windows(6).any(|w| w == b"amount"));
    }
    assert_eq!(app.runs(), 1);
    assert!(app.send(req).await.replayed());
}

/// A duplicate while the first request runs gets 409 with `Retry-After`; once the first
/// is done, the duplicate gets the replay.
pub(crate) async fn duplicate_in_flight_is_409_with_retry_after(store: Arc<dyn ResultStore>) {
    let app = Arc::new(serve(layer(store)).await);
    let req = post("/payments", "pay-1", "{}");
    let first = tokio::spawn({
        let (app, req) = (Arc::clone(&app), req.clone());
        async move { app.send(req.delay(1500)).await }
    });
    started(&app, 1).await;
    let duplicate = app.send(req.clone()).await;
    assert_eq!(duplicate.status, 409, "{duplicate:?}");
    assert_eq!(duplicate.problem(), "InFlight");
    let after: u64 = duplicate.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&after), "Retry-After: {after}");
    let first = first.await.unwrap();
    assert_eq!(first.status, 201);
    let replay = app.send(req).await;
    assert!(replay.replayed());
    assert_eq!(replay.body, first.body);
    assert_eq!(app.runs(), 1);
}

/// With the layer set to wait, a duplicate waits for the first request and gets its replay.
pub(crate) async fn waiting_duplicate_gets_the_replay(store: Arc<dyn ResultStore>) {
    let waiting = layer(store).in_flight(InFlight::Wait {
        timeout: Duration::from_secs(20),
    });
    let app = Arc::new(serve(waiting).await);
    let req = post("/payments", "pay-1", "{}");
    let first = tokio::spawn({
        let (app, req) = (Arc::clone(&app), req.clone());
        async move { app.send(req.delay(800)).await }
    });
    started(&app, 1).await;
    let duplicate = app.send(req).await;
    let first = first.await.unwrap();
    assert_eq!(duplicate.status, 201, "{duplicate:?}");
    assert!(duplicate.replayed());
    assert_eq!(duplicate.body, first.body);
    assert_eq!(app.runs(), 1);
}

/// 64 identical requests at once: the handler runs once; every other request gets 409
/// or, arriving after the first finished, the replay.
pub(crate) async fn concurrent_identical_requests_run_once_rejecting(store: Arc<dyn ResultStore>) {
    let app = serve(layer(store)).await;
    let req = post("/payments", "race", "{}").delay(300);
    let replies = join_all((0..64).map(|_| app.send(req.clone()))).await;
    assert_eq!(app.runs(), 1);
    let executed = replies
        .iter()
        .filter(|r| r.status == 201 && !r.replayed())
        .count();
    assert_eq!(executed, 1);
    for reply in &replies {
        assert!(
            reply.status == 409 || (reply.status == 201),
            "unexpected reply: {reply:?}"
        );
    }
}

/// 64 identical requests at once, the layer set to wait: the handler runs once and all 64
/// get its response, 63 of them as replays.
pub(crate) async fn concurrent_identical_requests_run_once_waiting(store: Arc<dyn ResultStore>) {
    let waiting = layer(store).in_flight(InFlight::Wait {
        timeout: Duration::from_secs(60),
    });
    let app = serve(waiting).await;
    let req = post("/payments", "race", "{}").delay(300);
    let replies = join_all((0..64).map(|_| app.send(req.clone()))).await;
    assert_eq!(app.runs(), 1);
    assert!(replies.iter().all(|r| r.status == 201), "{replies:?}");
    assert_eq!(replies.iter().filter(|r| r.replayed()).count(), 63);
    assert!(replies.iter().all(|r| r.body == replies[0].body));
}

/// The same key sent by two clients (two scopes) runs twice, and each client replays its
/// own response only.
pub(crate) async fn one_key_from_two_scopes_never_crosses(store: Arc<dyn ResultStore>) {
    let app = serve(layer(store)).await;
    let req = post("/payments", "shared-key", "{}");
    let alice = app.send(req.clone().client("alice")).await;
    let bob = app.send(req.clone().client("bob")).await;
    assert_eq!((alice.status, bob.status), (201, 201));
    assert!(!bob.replayed(), "bob got alice's response: {bob:?}");
    assert_ne!(alice.body, bob.body);
    assert_eq!(app.runs(), 2);
    assert_eq!(app.send(req.clone().client("alice")).await.body, alice.body);
    assert_eq!(app.send(req.client("bob")).await.body, bob.body);
    assert_eq!(app.runs(), 2);
}

/// A request whose stored key would pass every store's limit (a 2,100-byte path, a
/// 1,500-byte scope, as a scope made from a token can be) runs once and replays, and two
/// such scopes still never cross: the key is stored hashed, as every store takes it.
pub(crate) async fn long_path_and_scope_are_served_and_replayed(store: Arc<dyn ResultStore>) {
    let app = serve(layer(Arc::clone(&store))).await;
    let path = format!("/payments/{}", "p".repeat(2090));
    assert_eq!(path.len(), 2100);
    let (alice, bob) = ("a".repeat(1500), format!("{}b", "a".repeat(1499)));
    let req = post(&path, "long", "{}").method("PATCH");
    let first = app.send(req.clone().client(&alice)).await;
    assert_eq!(first.status, 201, "{first:?}");
    let replay = app.send(req.clone().client(&alice)).await;
    assert!(replay.replayed(), "{replay:?}");
    assert_eq!(replay.body, first.body);
    let other = app.send(req.client(&bob)).await;
    assert_eq!(other.status, 201, "{other:?}");
    assert!(!other.replayed(), "bob got alice's response: {other:?}");
    assert_eq!(app.runs(), 2);
    let page = store
        .list(Namespace::Idempotency, &ListQuery::new())
        .await
        .unwrap();
    assert_eq!(page.records.len(), 2);
    for record in &page.records {
        assert!(record.key.len() <= PORTABLE_KEY_LEN, "{}", record.key);
    }
}

/// 2xx to 4xx responses are stored and replayed, except 408, 409, 425 and 429; those and
/// 5xx are not stored: the claim is released and a retry runs again.
pub(crate) async fn only_policy_statuses_are_stored(store: Arc<dyn ResultStore>) {
    let app = serve(layer(store)).await;
    for code in [200, 201, 204, 302, 400, 404, 422] {
        let req = post(&format!("/status/{code}"), &format!("k{code}"), "");
        let first = app.send(req.clone()).await;
        let again = app.send(req).await;
        assert_eq!((first.status, again.status), (code, code));
        assert!(again.replayed(), "{code} was not stored");
        assert_eq!(again.body, first.body);
    }
    assert_eq!(app.runs(), 7);
    for code in [408, 409, 425, 429, 500, 502, 503] {
        let req = post(&format!("/status/{code}"), &format!("k{code}"), "");
        let first = app.send(req.clone()).await;
        let again = app.send(req).await;
        assert_eq!((first.status, again.status), (code, code));
        assert!(!again.replayed(), "{code} was stored");
        assert_ne!(
            again.body, first.body,
            "{code}: the retry did not run again"
        );
    }
    assert_eq!(app.runs(), 7 + 14);
}

/// A handler that panics mid-request stores nothing and releases its claim: the retry
/// runs at once (no 409, no replay).
pub(crate) async fn handler_panic_releases_the_claim(store: Arc<dyn ResultStore>) {
    let app = serve(layer(store)).await;
    let req = post("/panic", "boom", "");
    let failed = app.try_send(req.clone()).await;
    assert!(
        failed.is_err(),
        "the panic should drop the connection: {failed:?}"
    );
    let retry = app.send(req).await;
    assert_eq!(retry.status, 201, "{retry:?}");
    assert!(!retry.replayed());
    assert_eq!(app.runs(), 2);
}

/// A request dropped while its handler runs (the client went away) stores nothing and
/// releases its claim: the retry runs.
pub(crate) async fn cancelled_request_releases_the_claim(store: Arc<dyn ResultStore>) {
    use tower::{Service as _, ServiceExt as _};

    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handler = tower::service_fn({
        let calls = Arc::clone(&calls);
        move |_req: http::Request<http_body_util::Full<bytes::Bytes>>| {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n == 0 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from("done"),
                )))
            }
        }
    });
    let mut service = tower::Layer::layer(&IdempotencyLayer::from_arc(store), handler);
    let request = || {
        http::Request::post("/payments")
            .header("idempotency-key", "gone")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    let first = service.ready().await.unwrap().call(request());
    let cut = tokio::time::timeout(Duration::from_millis(300), first).await;
    assert!(cut.is_err(), "the first request should still be running");
    let since = std::time::Instant::now();
    loop {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(request())
            .await
            .unwrap();
        if response.status() == 200 {
            break;
        }
        assert_eq!(response.status(), 409, "the retry should run once released");
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "the claim was never released"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// A client that disconnects while its request runs frees the key: the server drops the
/// request, its claim is released, and the retry runs.
pub(crate) async fn client_disconnect_frees_the_key(store: Arc<dyn ResultStore>) {
    let app = Arc::new(serve(layer(store)).await);
    let req = post("/payments", "gone", "{}");
    let hanging = tokio::spawn({
        let (app, req) = (Arc::clone(&app), req.clone());
        async move { app.send(req.delay(60_000)).await }
    });
    started(&app, 1).await;
    hanging.abort();
    let since = std::time::Instant::now();
    let retry = loop {
        let reply = app.send(req.clone()).await;
        if reply.status != 409 {
            break reply;
        }
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "the key stayed claimed"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(retry.status, 201, "{retry:?}");
    assert!(!retry.replayed());
    assert_eq!(app.runs(), 2);
}

/// A response larger than the limit still reaches the client, whole, but is not stored:
/// a retry runs again.
pub(crate) async fn too_large_response_is_sent_not_stored(store: Arc<dyn ResultStore>) {
    let app = serve(layer(store).max_response_body(16 * 1024)).await;
    let req = post("/big", "big", "");
    let first = app.send(req.clone()).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body.len(), 64 * 1024);
    let again = app.send(req).await;
    assert_eq!(again.body.len(), 64 * 1024);
    assert!(!again.replayed());
    assert_eq!(app.runs(), 2);
}

/// After the retention, a key is new again: the request runs.
pub(crate) async fn retention_ends_the_replay(store: Arc<dyn ResultStore>) {
    let app = serve(layer(store).retention(Duration::from_millis(600))).await;
    let req = post("/payments", "short-lived", "{}");
    assert_eq!(app.send(req.clone()).await.status, 201);
    assert!(app.send(req.clone()).await.replayed());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let later = app.send(req).await;
    assert!(!later.replayed(), "{later:?}");
    assert_eq!(app.runs(), 2);
}

/// Waits until the handler has started `n` runs.
async fn started(app: &App, n: usize) {
    eventually("the handler starts", || async { app.runs() >= n }).await;
}
