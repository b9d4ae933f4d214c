//! The rules that do not depend on the store, on a memory store.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use stent_core::MemoryStore;
use stent_http::{Fingerprint, IdempotencyLayer, Outcome};

use crate::support::{layer, post, serve};

fn memory() -> IdempotencyLayer {
    layer(Arc::new(MemoryStore::new()))
}

/// Safe methods, and unsafe methods not configured, pass through: every request runs.
#[tokio::test]
async fn only_unsafe_methods_are_guarded() {
    let app = serve(memory()).await;
    for method in ["GET", "PUT"] {
        let req = post("/payments", &format!("k-{method}"), "").method(method);
        for _ in 0..2 {
            let reply = app.send(req.clone()).await;
            assert!(
                reply.status < 300 && !reply.replayed(),
                "{method}: {reply:?}"
            );
        }
    }
    assert_eq!(app.runs(), 4);
    // PATCH is guarded by default.
    let patch = post("/payments/1", "k-patch", "{}").method("PATCH");
    assert_eq!(app.send(patch.clone()).await.status, 201);
    assert!(app.send(patch).await.replayed());
    assert_eq!(app.runs(), 5);
}

/// The guarded methods are configurable.
#[tokio::test]
async fn guarded_methods_are_configurable() {
    let app = serve(memory().methods([Method::PUT])).await;
    let put = post("/payments", "k", "{}").method("PUT");
    assert_eq!(app.send(put.clone()).await.status, 201);
    assert!(app.send(put).await.replayed());
    let post_req = post("/payments", "k2", "{}");
    assert!(!app.send(post_req.clone()).await.replayed());
    assert!(!app.send(post_req).await.replayed());
    assert_eq!(app.runs(), 3);
}

/// Without a key, a request passes through; with the key required, it gets 400.
#[tokio::test]
async fn a_missing_key_passes_through_unless_required() {
    let optional = serve(memory()).await;
    let keyless = post("/payments", "", "{}").without("idempotency-key");
    for _ in 0..2 {
        let reply = optional.send(keyless.clone()).await;
        assert_eq!(reply.status, 201);
        assert!(!reply.replayed());
    }
    assert_eq!(optional.runs(), 2);

    let required = serve(memory().require_key(true)).await;
    let refused = required.send(keyless).await;
    assert_eq!(refused.status, 400, "{refused:?}");
    assert_eq!(refused.problem(), "MissingKey");
    assert_eq!(required.runs(), 0);
    // Safe methods need no key, even then.
    let get = post("/payments", "", "")
        .without("idempotency-key")
        .method("GET");
    assert_eq!(required.send(get).await.status, 200);
}

/// Malformed keys get 400: empty, too long, with spaces or control characters, an
/// unterminated string, two headers; a bare key when strict.
#[tokio::test]
async fn malformed_keys_are_400() {
    let app = serve(memory()).await;
    let long = "k".repeat(256);
    for bad in [
        "\"\"",
        &long,
        "a b",
        "\"unterminated",
        "\"a\\x\"",
        "\"a\" junk",
    ] {
        let reply = app.send(post("/payments", bad, "{}")).await;
        assert_eq!(reply.status, 400, "{bad:?}: {reply:?}");
        assert_eq!(reply.problem(), "MalformedKey");
    }
    let mut twice = post("/payments", "a", "{}");
    twice.headers.push(("idempotency-key".into(), "b".into()));
    assert_eq!(app.send(twice).await.status, 400);
    assert_eq!(
        app.send(post("/payments", &"k".repeat(255), "{}"))
            .await
            .status,
        201
    );
    assert_eq!(app.runs(), 1);

    let strict = serve(memory().strict(true).key_length(8..=16)).await;
    let bare = strict.send(post("/payments", "abcdefgh", "{}")).await;
    assert_eq!(bare.problem(), "MalformedKey");
    let short = strict.send(post("/payments", "\"abc\"", "{}")).await;
    assert_eq!(short.problem(), "MalformedKey");
    assert_eq!(
        strict
            .send(post("/payments", "\"abcdefgh\"", "{}"))
            .await
            .status,
        201
    );
}

/// A request body over the limit gets 413 before anything runs.
#[tokio::test]
async fn request_body_over_the_limit_is_413() {
    let app = serve(memory().max_request_body(1024)).await;
    let reply = app.send(post("/payments", "big", &"x".repeat(1025))).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(reply.problem(), "BodyTooLarge");
    assert_eq!(app.runs(), 0);
    assert_eq!(
        app.send(post("/payments", "fits", &"x".repeat(1024)))
            .await
            .status,
        201
    );
}

/// Problem types are URIs under the configured base, one per case.
#[tokio::test]
async fn problems_name_their_type_under_the_base() {
    let app = serve(
        memory()
            .require_key(true)
            .problem_base("https://api.example/problems/"),
    )
    .await;
    let reply = app
        .send(post("/payments", "", "").without("idempotency-key"))
        .await;
    assert_eq!(
        reply.json()["type"],
        "https://api.example/problems/MissingKey"
    );
    assert_eq!(reply.json()["status"], 400);
}

/// The replay marker's name is configurable.
#[tokio::test]
async fn the_replay_header_is_configurable() {
    let app = serve(memory().replayed_header(http::HeaderName::from_static("x-replayed"))).await;
    let req = post("/payments", "k", "{}");
    app.send(req.clone()).await;
    let replay = app.send(req).await;
    assert_eq!(replay.header("x-replayed"), Some("true"));
    assert_eq!(replay.header("idempotent-replayed"), None);
}

/// The headers replayed are the allowlist's; cookies only when listed.
#[tokio::test]
async fn replayed_headers_follow_the_allowlist() {
    let headers = [http::header::SET_COOKIE, http::header::TRANSFER_ENCODING];
    let app = serve(memory().replay_headers(headers)).await;
    let req = post("/payments", "k", "{}");
    app.send(req.clone()).await;
    let replay = app.send(req).await;
    assert_eq!(replay.header("set-cookie"), Some("session=1"));
    assert_eq!(replay.header("location"), None);
}

/// A closure over the parsed body decides the fingerprint: ignored fields may change.
#[tokio::test]
async fn a_json_fingerprint_ignores_chosen_fields() {
    let fingerprint = Fingerprint::json(|body| {
        if let Some(fields) = body.as_object_mut() {
            fields.remove("sent_at");
        }
    });
    let app = serve(memory().fingerprint(fingerprint)).await;
    let first = app
        .send(post("/payments", "k", r#"{"amount":5,"sent_at":1}"#))
        .await;
    let retry = app
        .send(post("/payments", "k", r#"{"sent_at":2, "amount":5}"#))
        .await;
    assert!(retry.replayed());
    assert_eq!(retry.body, first.body);
    let changed = app
        .send(post("/payments", "k", r#"{"amount":6,"sent_at":2}"#))
        .await;
    assert_eq!(changed.status, 422);
    let off = serve(memory().fingerprint(Fingerprint::off())).await;
    off.send(post("/payments", "k", "a")).await;
    assert!(off.send(post("/payments", "k", "b")).await.replayed());
}

/// A closure can override the storage policy.
#[tokio::test]
async fn the_storage_policy_is_a_closure() {
    let app = serve(memory().store_if(|status, _| status.as_u16() == 503)).await;
    let unavailable = post("/status/503", "a", "");
    app.send(unavailable.clone()).await;
    assert!(app.send(unavailable).await.replayed());
    let ok = post("/status/200", "b", "");
    app.send(ok.clone()).await;
    assert!(!app.send(ok).await.replayed());
    assert_eq!(app.runs(), 3);
}

/// Each response says what the layer did, in its extensions.
#[tokio::test]
async fn the_outcome_is_a_response_extension() {
    use tower::{Service as _, ServiceExt as _};

    let handler = tower::service_fn(
        |_req: http::Request<http_body_util::Full<bytes::Bytes>>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                bytes::Bytes::from("ok"),
            )))
        },
    );
    let mut service = tower::Layer::layer(&memory().lease(Duration::from_secs(5)), handler);
    let request = |body: &'static str| {
        http::Request::post("/p")
            .header("idempotency-key", "k")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap()
    };
    let mut outcome = async |body| {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(request(body))
            .await
            .unwrap();
        *response.extensions().get::<Outcome>().unwrap()
    };
    assert_eq!(outcome("a").await, Outcome::Executed { attempt: 1 });
    assert_eq!(outcome("a").await, Outcome::Replayed);
    assert_eq!(outcome("b").await, Outcome::Mismatch);
}
