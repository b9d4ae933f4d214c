//! The conformance suite against a Redis Cluster: the one at `STENT_REDIS_CLUSTER_URL`
//! (`redis+cluster://host:port,host:port,...`; `scripts/test` starts one), else three
//! masters in a container (see `stent_conformance::servers`).
//!
//! Each case gets its own key prefix (the case's unique id), so all cases share one cluster.

use std::sync::Arc;

use stent_conformance::servers::{self, Server};
use stent_core::ResultStore;
use stent_redis::RedisStore;

async fn redis_cluster(case: String) -> Result<Arc<dyn ResultStore>, String> {
    let url = servers::url(Server::RedisCluster).await?;
    let store = RedisStore::builder()
        .url(url)
        .prefix(case)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(store))
}

stent_conformance::conformance_tests!(redis_cluster);

/// Claim and completion run as scripts on whichever node holds the key, and the record
/// reads back whole, with the times of that node's clock.
#[tokio::test]
async fn every_node_runs_the_claim_and_completion_scripts() {
    use stent_core::{Claim, LeaseToken, Namespace, RecordMeta};

    let url = match servers::url(Server::RedisCluster).await {
        Ok(url) => url,
        Err(why) if stent_conformance::backends_required() => panic!("{why}"),
        Err(why) => return eprintln!("SKIPPED: {why}"),
    };
    let prefix = format!("nodes-{}", std::process::id());
    let store = RedisStore::builder()
        .url(url)
        .prefix(prefix.clone())
        .build()
        .await
        .unwrap();
    let ns = Namespace::Idempotency;
    // Keys on several slots, so on several masters.
    for key in ["a", "b", "c", "d", "e", "f"] {
        let token = LeaseToken::generate();
        let claim = Claim {
            token: &token,
            lease: std::time::Duration::from_secs(30),
            meta: RecordMeta::default(),
        };
        store.claim(ns, key, &claim).await.unwrap();
        let ttl = Some(std::time::Duration::from_secs(60));
        store.complete(ns, key, &token, b"v", ttl).await.unwrap();
        let read = store.get(ns, key).await.unwrap().expect("completed");
        assert_eq!(read.value.as_deref(), Some(&b"v"[..]));
        let completed = read.completed_at.expect("completed_at");
        assert!(read.created_at <= completed);
        assert_eq!(
            read.expires_at.map(|t| t.as_millis()),
            Some(completed.as_millis() + 60_000)
        );
    }
    store.clear(ns).await.unwrap();
}
