//! A server process killed mid-request and started again: until the dead request's lease
//! lapses a retry gets 409, after it the retry runs once more, as attempt 2. The server is
//! this test binary run again as `child_server` (an ignored test that serves only when
//! the parent gives it a store and a port).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use stent_conformance::servers::{self, Server};
use stent_core::{ListQuery, Namespace, ResultStore};
use stent_http::{IdempotencyLayer, Outcome};

/// The lease of the child's claims: renewed every second while the handler runs.
const LEASE: Duration = Duration::from_secs(3);

/// Which store the child opens: `sqlite <path>`, `postgres <url> <schema>`,
/// `redis <url> <prefix>` (a cluster's URL too) or `dynamodb <endpoint> <prefix>`.
const STORE_VAR: &str = "STENT_HTTP_CHILD_STORE";
const ADDR_VAR: &str = "STENT_HTTP_CHILD_ADDR";

async fn open(spec: &str) -> Arc<dyn ResultStore> {
    let parts: Vec<&str> = spec.split(' ').collect();
    match parts[..] {
        ["sqlite", path] => Arc::new(stent_sqlite::SqliteStore::open(path).await.unwrap()),
        ["redis", url, prefix] => Arc::new(
            stent_redis::RedisStore::builder()
                .url(url)
                .prefix(prefix)
                .build()
                .await
                .unwrap(),
        ),
        ["postgres", url, schema] => Arc::new(
            stent_postgres::PostgresStore::builder()
                .url(url)
                .schema(schema)
                .unwrap()
                .build()
                .await
                .unwrap(),
        ),
        ["dynamodb", endpoint, prefix] => Arc::new(
            stent_dynamodb::DynamoDbStore::builder()
                .endpoint_url(endpoint)
                .and_then(|b| b.table("stent_http_tests"))
                .and_then(|b| b.key_prefix(prefix))
                .unwrap()
                .region("us-east-1")
                .credentials("test", "test")
                .create_tables(true)
                .build()
                .await
                .unwrap(),
        ),
        _ => panic!("{STORE_VAR}={spec:?}"),
    }
}

/// The server the parent starts and kills: `POST /charge` hangs on its first run, then
/// answers 201; `x-attempt` tells which attempt ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by server_killed_mid_request_* as a child process"]
async fn child_server() {
    let (Ok(spec), Ok(addr)) = (std::env::var(STORE_VAR), std::env::var(ADDR_VAR)) else {
        return;
    };
    let layer = IdempotencyLayer::from_arc(open(&spec).await).lease(LEASE);
    let app = Router::new()
        .route(
            "/charge",
            post(|headers: axum::http::HeaderMap| async move {
                if headers.contains_key("x-hang") {
                    std::future::pending::<()>().await;
                }
                axum::http::StatusCode::CREATED
            }),
        )
        .layer(layer)
        .layer(axum::middleware::map_response(
            |mut res: Response| async move {
                if let Some(Outcome::Executed { attempt }) = res.extensions().get::<Outcome>() {
                    let attempt = attempt.to_string().parse().unwrap();
                    res.headers_mut().insert("x-attempt", attempt);
                }
                res
            },
        ));
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    axum::serve(listener, app).await.unwrap();
}

/// A child server on a free port of 127.0.0.1, once it accepts connections.
async fn start(spec: &str) -> (Child, String) {
    let addr = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["child_server", "--exact", "--ignored", "--nocapture"])
        .env(STORE_VAR, spec)
        .env(ADDR_VAR, &addr)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let since = Instant::now();
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "the child server did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (child, addr)
}

/// `POST /charge` with the key, `hang` adding `x-hang`: the status and `x-attempt`.
async fn charge(addr: &str, hang: bool) -> Result<(u16, Option<String>), String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = http::Request::post(format!("http://{addr}/charge"))
        .header("idempotency-key", "\"order-1\"");
    if hang {
        req = req.header("x-hang", "1");
    }
    let res = client
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let attempt = res
        .headers()
        .get("x-attempt")
        .map(|v| v.to_str().unwrap().to_owned());
    let status = res.status().as_u16();
    let _ = res.into_body().collect().await;
    Ok((status, attempt))
}

async fn killed_mid_request(spec: String) {
    let store = open(&spec).await;
    let (mut first, addr) = start(&spec).await;
    // The fingerprint covers the body and the path, not the `x-hang` header: the retry
    // is the same request.
    let hanging = tokio::spawn(async move { charge(&addr, true).await });
    let since = Instant::now();
    while store
        .list(Namespace::Idempotency, &ListQuery::new())
        .await
        .unwrap()
        .records
        .is_empty()
    {
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "the request never claimed its key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        hanging.await.unwrap().is_err(),
        "the killed server answered"
    );

    let (mut second, addr) = start(&spec).await;
    let early = charge(&addr, false).await.unwrap();
    assert_eq!(early.0, 409, "a retry within the dead request's lease");
    tokio::time::sleep(LEASE).await;
    let late = charge(&addr, false).await.unwrap();
    assert_eq!(
        late,
        (201, Some("2".to_owned())),
        "a retry after the lease takes over"
    );
    let replay = charge(&addr, false).await.unwrap();
    assert_eq!(replay, (201, None), "the takeover's response is replayed");
    second.kill().unwrap();
    second.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_request_on_sqlite() {
    let dir = std::env::temp_dir().join("stent-http-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("restart-{}.db", stent_conformance::unique_id()));
    killed_mid_request(format!("sqlite {}", path.display())).await;
    let _ = std::fs::remove_file(path);
}

/// The URL of `server`, or `None` (the test skips) when there is none and none is required.
async fn server_url(server: Server) -> Option<String> {
    match servers::url(server).await {
        Ok(url) => Some(url),
        Err(why) if stent_conformance::backends_required() => panic!("{why}"),
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_request_on_postgres() {
    let Some(url) = server_url(Server::Postgres).await else {
        return;
    };
    // Named as stent-postgres's tests name their schemas, so their sweep drops it later.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let schema = format!("stent_test_{secs}_{}", stent_conformance::unique_id());
    killed_mid_request(format!("postgres {url} {schema}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_request_on_redis() {
    let Some(url) = server_url(Server::Redis).await else {
        return;
    };
    let prefix = format!("http-restart-{}", stent_conformance::unique_id());
    killed_mid_request(format!("redis {url} {prefix}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_request_on_redis_cluster() {
    let Some(url) = server_url(Server::RedisCluster).await else {
        return;
    };
    let prefix = format!("http-restart-{}", stent_conformance::unique_id());
    killed_mid_request(format!("redis {url} {prefix}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_request_on_dynamodb() {
    let Some(url) = server_url(Server::DynamoDb).await else {
        return;
    };
    // The shared server's turn, held while this test and its server processes use it.
    let _turn = stent_conformance::servers::turn::turn().await;
    let prefix = format!("http-restart-{}", stent_conformance::unique_id());
    killed_mid_request(format!("dynamodb {url} {prefix}")).await;
}
