//! The conformance suite against a Redis Cluster: the one at `STENT_REDIS_CLUSTER_URL`
//! (`redis+cluster://host:port,host:port,...`; `scripts/test` starts one), else three
//! masters in a container (see `stent_conformance::servers`).
//!
//! Each case gets its own key prefix (the case's unique id), so all cases share one cluster.

use std::sync::Arc;

use stent_conformance::servers::{self, Server};
use stent_core::ResultStore;
use stent_redis::RedisStore;

mod support;

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

/// A completion is one conditional write on whichever node holds the key: `SET … IFEQ` on
/// nodes that have it (Valkey 8.1+, Redis 8.4+; `STENT_REDIS_IFEQ=1` says they must), a
/// script of the same meaning on others. Neither reads a clock, and the record reads back
/// whole.
#[tokio::test]
async fn a_completion_is_one_conditional_write_on_every_node() {
    use redis::AsyncCommands;
    use stent_core::{Claim, LeaseToken, Namespace, RecordMeta};

    let url = match servers::url(Server::RedisCluster).await {
        Ok(url) => url,
        Err(why) if stent_conformance::backends_required() => panic!("{why}"),
        Err(why) => return eprintln!("SKIPPED: {why}"),
    };
    let nodes: Vec<String> = url
        .trim_start_matches("redis+cluster://")
        .split(',')
        .map(|n| format!("redis://{n}"))
        .collect();
    let mut conn = redis::cluster::ClusterClient::new(nodes)
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    let prefix = format!("native-ifeq-{}", std::process::id());
    support::has_ifeq(&mut conn, &prefix).await;
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
        let raw: Vec<u8> = conn
            .get(format!("{prefix}:idempotency:{key}"))
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let fields: Vec<&str> = text.split('|').collect();
        assert_eq!(fields[1], "completed", "{text}");
        // completed_ms (field 6) is left to the key's expiry: `SET … IFEQ`, or a script of
        // the same meaning on nodes without it, reads no clock.
        assert!(fields[6].is_empty(), "{key}: {text}");
        let read = store.get(ns, key).await.unwrap().expect("completed");
        assert_eq!(read.value.as_deref(), Some(&b"v"[..]));
        assert!(read.completed_at.is_some());
    }
    store.clear(ns).await.unwrap();
}
