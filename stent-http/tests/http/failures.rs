//! What a client is told when the store cannot claim the key, on a real server.

use std::sync::Arc;

use stent_core::ResultStore;

use crate::support::{layer, post, serve};

/// A store error no retry fixes (here PostgreSQL without its tables) is `500`
/// (`StoreFailed`), without `Retry-After`, never `503` "store unavailable"; nothing runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_error_no_retry_fixes_is_500_not_503() {
    let name = "a_store_error_no_retry_fixes_is_500_not_503";
    let factory = crate::support::backends::postgres_without_tables;
    stent_conformance::run(factory, name, |store: Arc<dyn ResultStore>| async move {
        let app = serve(layer(store)).await;
        for _ in 0..2 {
            let reply = app.send(post("/payments", "pay-1", "{}")).await;
            assert_eq!(reply.status, 500, "{reply:?}");
            assert_eq!(reply.problem(), "StoreFailed");
            assert_eq!(reply.header("retry-after"), None);
            let detail = reply.json()["detail"].as_str().unwrap().to_owned();
            assert!(detail.contains("(store)"), "{detail}");
        }
        assert_eq!(app.runs(), 0);
    })
    .await;
}
