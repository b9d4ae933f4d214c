//! The conformance suite against a standalone Redis: the server at `STENT_REDIS_URL`, else a
//! container (see `stent_conformance::servers`).
//!
//! Each case gets its own key prefix (the case's unique id), so all cases share one server.

use std::sync::Arc;

use stent_conformance::servers::{self, Server};
use stent_core::ResultStore;
use stent_redis::RedisStore;

async fn redis(case: String) -> Result<Arc<dyn ResultStore>, String> {
    let url = servers::url(Server::Redis).await?;
    let store = RedisStore::builder()
        .url(url)
        .prefix(case)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(store))
}

stent_conformance::conformance_tests!(redis);
