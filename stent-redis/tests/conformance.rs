//! The conformance suite against a standalone Redis at `STENT_REDIS_URL`.
//!
//! Each case gets its own key prefix (the case's unique id), so all cases share one server.

use std::sync::Arc;

use stent_core::ResultStore;
use stent_redis::RedisStore;

async fn redis(case: String) -> Result<Arc<dyn ResultStore>, String> {
    let url = std::env::var("STENT_REDIS_URL")
        .map_err(|_| "STENT_REDIS_URL is not set (e.g. redis://127.0.0.1:6379)".to_owned())?;
    let store = RedisStore::builder()
        .url(url)
        .prefix(case)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(store))
}

stent_conformance::conformance_tests!(redis);
