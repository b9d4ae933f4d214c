//! A Redis Cluster (`STENT_REDIS_CLUSTER_URL`) through stent next to plain Redis commands
//! on a `ClusterConnection`.
//!
//! `cargo bench -p stent-benches --bench redis_cluster`

use criterion::{Criterion, criterion_group, criterion_main};
use redis::cluster::ClusterClient;
use stent::{RedisStore, Stent};
use stent_benches::{Backend, RedisRaw, bench_backend, env_url, runtime};

const PREFIX: &str = "stent-bench";

fn redis_cluster(c: &mut Criterion) {
    let url = env_url("STENT_REDIS_CLUSTER_URL");
    let nodes: Vec<String> = url
        .strip_prefix("redis+cluster://")
        .unwrap_or_else(|| panic!("STENT_REDIS_CLUSTER_URL is not redis+cluster://…: {url}"))
        .split(',')
        .map(|node| format!("redis://{node}"))
        .collect();
    let rt = runtime();
    let (store, conn) = rt.block_on(async {
        let store = RedisStore::builder()
            .url(url.as_str())
            .prefix(PREFIX)
            .build()
            .await
            .expect("connecting stent to STENT_REDIS_CLUSTER_URL");
        let client = ClusterClient::new(nodes).expect("STENT_REDIS_CLUSTER_URL");
        let conn = client
            .get_async_connection()
            .await
            .expect("connecting to STENT_REDIS_CLUSTER_URL");
        (store, conn)
    });
    let backend = Backend {
        name: "redis_cluster",
        stent: Stent::new(store),
        raw: RedisRaw::new(conn, PREFIX),
        slow: false,
    };
    bench_backend(c, &rt, backend);
}

criterion_group! {
    name = benches;
    config = stent_benches::config();
    targets = redis_cluster
}
criterion_main!(benches);
