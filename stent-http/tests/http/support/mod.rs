//! A small payments API behind the layer on a real TCP port, a real HTTP client, and the
//! stores the cases run on.
#![allow(dead_code)] // each test binary uses its own part

pub(crate) mod backends;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use stent_core::ResultStore;
use stent_http::IdempotencyLayer;

/// The layer every case starts from: the store, and the `x-client` header as the scope.
pub(crate) fn layer(store: Arc<dyn ResultStore>) -> IdempotencyLayer {
    IdempotencyLayer::from_arc(store).scope(|req| {
        req.headers
            .get("x-client")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    })
}

/// The API on 127.0.0.1, a client for it, and the count of handler runs.
pub(crate) struct App {
    pub(crate) addr: SocketAddr,
    runs: Arc<AtomicUsize>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn replayed(&self) -> bool {
        self.header("idempotent-replayed") == Some("true")
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The problem type's last part, after checking the body is problem+json.
    pub(crate) fn problem(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let json = self.json();
        assert_eq!(json["status"], self.status, "{json}");
        assert!(json["title"].is_string(), "{json}");
        let ty = json["type"].as_str().expect("a type URI").to_owned();
        ty.rsplit('.').next().unwrap().to_owned()
    }
}

/// A request to send: method, path, key, body and extra headers.
#[derive(Clone, Debug)]
pub(crate) struct Req {
    pub(crate) method: &'static str,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

/// `POST path` with `Idempotency-Key: key` (bare) and `body` as JSON.
pub(crate) fn post(path: &str, key: &str, body: &str) -> Req {
    Req {
        method: "POST",
        path: path.to_owned(),
        headers: vec![
            ("idempotency-key".into(), key.into()),
            ("content-type".into(), "application/json".into()),
        ],
        body: body.to_owned(),
    }
}

impl Req {
    pub(crate) fn method(mut self, method: &'static str) -> Self {
        self.method = method;
        self
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name.into(), value.into()));
        self
    }

    pub(crate) fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self
    }

    /// The handler sleeps this long after counting its run.
    pub(crate) fn delay(self, ms: u64) -> Self {
        self.header("x-delay-ms", &ms.to_string())
    }

    pub(crate) fn client(self, client: &str) -> Self {
        self.header("x-client", client)
    }
}

impl App {
    /// How many times a handler body has run.
    pub(crate) fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    pub(crate) async fn try_send(&self, req: Req) -> Result<Reply, String> {
        let mut builder = http::Request::builder()
            .method(req.method)
            .uri(format!("http://{}{}", self.addr, req.path));
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        let request = builder.body(Full::new(Bytes::from(req.body))).unwrap();
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    pub(crate) async fn send(&self, req: Req) -> Reply {
        let shown = format!("{} {}", req.method, req.path);
        self.try_send(req)
            .await
            .unwrap_or_else(|e| panic!("{shown}: {e}"))
    }
}

/// Serves the API behind `layer` on a free port of 127.0.0.1.
pub(crate) async fn serve(layer: IdempotencyLayer) -> App {
    let runs = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route("/payments", routing::post(create).get(list).put(create))
        .route("/payments/{id}", axum::routing::patch(create))
        .route("/status/{code}", routing::post(status))
        .route("/panic", routing::post(panic_once))
        .route("/big", routing::post(big))
        .with_state(Arc::clone(&runs))
        .layer(layer);
    App::on(router, runs).await
}

/// Serves another API on a free port of 127.0.0.1 (its runs are not counted).
pub(crate) async fn serve_router(router: Router) -> App {
    App::on(router, Arc::default()).await
}

impl App {
    async fn on(router: Router, runs: Arc<AtomicUsize>) -> App {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(5))
            .build_http();
        App { addr, runs, client }
    }
}

/// Counts the run, sleeps for `x-delay-ms`, then answers 201 with the payment.
async fn create(
    State(runs): State<Arc<AtomicUsize>>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let id = runs.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(ms) = headers
        .get("x-delay-ms")
        .and_then(|v| v.to_str().ok()?.parse().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let body = serde_json::json!({ "id": id, "request": body });
    (
        StatusCode::CREATED,
        [
            ("content-type", "application/json".to_owned()),
            ("location", format!("/payments/{id}")),
            ("set-cookie", format!("session={id}")),
            ("x-run", id.to_string()),
        ],
        body.to_string(),
    )
}

async fn list(State(runs): State<Arc<AtomicUsize>>) -> impl IntoResponse {
    runs.fetch_add(1, Ordering::SeqCst);
    "[]"
}

/// Answers with the status of the path, and the run's number as the body.
async fn status(State(runs): State<Arc<AtomicUsize>>, Path(code): Path<u16>) -> impl IntoResponse {
    let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
    (StatusCode::from_u16(code).unwrap(), n.to_string())
}

/// Panics on its first run, answers 201 after.
async fn panic_once(State(runs): State<Arc<AtomicUsize>>) -> impl IntoResponse {
    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
        panic!("the handler fails mid-request");
    }
    StatusCode::CREATED
}

/// 64 KiB of body.
async fn big(State(runs): State<Arc<AtomicUsize>>) -> impl IntoResponse {
    runs.fetch_add(1, Ordering::SeqCst);
    "x".repeat(64 * 1024)
}

/// Polls `check` until it holds, or panics after 20 s.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Stamps one test per case for a store factory (`async fn(String) -> Result<Arc<dyn
/// ResultStore>, String>`), skipped loudly when the backend is unreachable (a failure
/// under `STENT_REQUIRE_BACKENDS=1`).
#[macro_export]
macro_rules! http_cases {
    ($factory:path; $($case:ident),+ $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            stent_conformance::run($factory, stringify!($case), $crate::cases::$case).await;
        }
    )+};
    ($factory:path) => {
        $crate::http_cases!($factory;
            first_call_runs_and_replay_repeats_it,
            same_key_with_another_payload_is_422,
            duplicate_in_flight_is_409_with_retry_after,
            waiting_duplicate_gets_the_replay,
            concurrent_identical_requests_run_once_rejecting,
            concurrent_identical_requests_run_once_waiting,
            one_key_from_two_scopes_never_crosses,
            long_path_and_scope_are_served_and_replayed,
            only_policy_statuses_are_stored,
            handler_panic_releases_the_claim,
            cancelled_request_releases_the_claim,
            client_disconnect_frees_the_key,
            too_large_response_is_sent_not_stored,
            retention_ends_the_replay,
        );
    };
}
