//! The conformance suite against a Redis Cluster at `STENT_REDIS_CLUSTER_URL`
//! (`redis+cluster://host:port,host:port,...`; `scripts/test` starts one).
//!
//! Each case gets its own key prefix (the case's unique id), so all cases share one cluster.

use std::sync::Arc;

use stent_core::ResultStore;
use stent_redis::RedisStore;

async fn redis_cluster(case: String) -> Result<Arc<dyn ResultStore>, String> {
    let url = std::env::var("STENT_REDIS_CLUSTER_URL").map_err(|_| {
        "STENT_REDIS_CLUSTER_URL is not set (e.g. redis+cluster://127.0.0.1:7101,127.0.0.1:7102)"
            .to_owned()
    })?;
    let store = RedisStore::builder()
        .url(url)
        .prefix(case)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(store))
}

stent_conformance::conformance_tests!(redis_cluster);
