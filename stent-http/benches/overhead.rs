//! What the layer costs per request, next to the same axum handler without it, and next to
//! that handler reading the store by hand: SQLite (a temp file) and Redis
//! (`STENT_REDIS_URL`, default `redis://127.0.0.1:6379`).
//!
//! ```text
//! cargo bench -p stent-http --bench overhead            # both stores
//! cargo bench -p stent-http --bench overhead -- redis   # one
//! ```
//!
//! The requests go through the router in process (`tower::ServiceExt::oneshot`), no socket:
//! what is measured is the layer and the store, not the network stack. The variants take
//! turns, in rounds, so that a machine's drift touches all alike; each figure is the median
//! of the rounds' mean times per request.
//!
//! | variant | what a request does |
//! |---|---|
//! | `bare` | the handler, no layer |
//! | `bare + get` | the handler, plus one `ResultStore::get` by hand (a hand-made replay) |
//! | `replay` | the layer replays a stored response (one `claim`) |
//! | `execute` | the layer runs the handler on a fresh key (`claim` + `complete`) |

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::post;
use stent_core::{Namespace, ResultStore};
use stent_http::IdempotencyLayer;
use tower::ServiceExt as _;

const ROUNDS: usize = 9;
const PER_ROUND: Duration = Duration::from_millis(300);

fn request(key: &str) -> Request<Body> {
    Request::post("/payments")
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(Body::from(r#"{"amount":500,"currency":"eur"}"#))
        .unwrap()
}

async fn handler() -> &'static str {
    r#"{"id":"pay_1","status":"succeeded"}"#
}

async fn measure(store: Arc<dyn ResultStore>, label: &str) {
    let bare = Router::new().route("/payments", post(handler));
    let by_hand = Router::new().route(
        "/payments",
        post({
            let store = Arc::clone(&store);
            move || async move {
                let _ = store.get(Namespace::Idempotency, "by-hand").await.unwrap();
                handler().await
            }
        }),
    );
    let layered = Router::new()
        .route("/payments", post(handler))
        .layer(IdempotencyLayer::from_arc(Arc::clone(&store)));
    let _ = layered.clone().oneshot(request("stored")).await.unwrap();
    let fresh = AtomicU64::new(0);

    let names = ["bare", "bare + get", "replay", "execute"];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for _ in 0..ROUNDS {
        for (i, sample) in samples.iter_mut().enumerate() {
            let (mut n, started) = (0u32, Instant::now());
            while started.elapsed() < PER_ROUND {
                let response = match i {
                    0 => bare.clone().oneshot(request("k")).await,
                    1 => by_hand.clone().oneshot(request("k")).await,
                    2 => layered.clone().oneshot(request("stored")).await,
                    _ => {
                        let key = format!("fresh-{}", fresh.fetch_add(1, Ordering::Relaxed));
                        layered.clone().oneshot(request(&key)).await
                    }
                };
                assert!(response.unwrap().status().is_success());
                n += 1;
            }
            sample.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(n));
        }
    }
    let medians: Vec<f64> = samples
        .iter_mut()
        .map(|s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect();
    println!("\n{label}: median of {ROUNDS} interleaved rounds, µs per request");
    for (name, median) in names.iter().zip(&medians) {
        println!("  {name:<12} {median:>9.1}");
    }
    println!(
        "  replay / (bare + get) = {:.2}   execute / bare = {:.2}",
        medians[2] / medians[1],
        medians[3] / medians[0]
    );
    // The fresh keys of a run on a shared server go with it.
    store.clear(Namespace::Idempotency).await.unwrap();
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if wanted("sqlite") {
            let dir = std::env::temp_dir().join(format!("stent-http-bench-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let store = stent_sqlite::SqliteStore::open(dir.join("bench.db"))
                .await
                .unwrap();
            measure(Arc::new(store), "sqlite (temp file)").await;
            let _ = std::fs::remove_dir_all(dir);
        }
        if wanted("redis") {
            let url = std::env::var("STENT_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
            let store = stent_redis::RedisStore::builder()
                .url(&url)
                .prefix(format!("http-bench-{}", std::process::id()))
                .build()
                .await
                .unwrap();
            measure(Arc::new(store), &format!("redis ({url})")).await;
        }
    });
}
