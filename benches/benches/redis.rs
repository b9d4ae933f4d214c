//! One Redis server (`STENT_REDIS_URL`) through stent next to plain Redis commands on a
//! connection of the same kind (`ConnectionManager`).
//!
//! `cargo bench -p stent-benches --bench redis`

use criterion::{Criterion, criterion_group, criterion_main};
use stent::{RedisStore, Stent};
use stent_benches::{Backend, RedisRaw, bench_backend, env_url, runtime};

const PREFIX: &str = "stent-bench";

fn redis(c: &mut Criterion) {
    let url = env_url("STENT_REDIS_URL");
    let rt = runtime();
    let (store, conn) = rt.block_on(async {
        let store = RedisStore::builder()
            .url(url.as_str())
            .prefix(PREFIX)
            .build()
            .await
            .expect("connecting stent to STENT_REDIS_URL");
        let client = redis::Client::open(url.as_str()).expect("STENT_REDIS_URL");
        let conn = client
            .get_connection_manager()
            .await
            .expect("connecting to STENT_REDIS_URL");
        (store, conn)
    });
    let backend = Backend {
        name: "redis",
        stent: Stent::new(store),
        raw: RedisRaw::new(conn, PREFIX),
        slow: false,
    };
    bench_backend(c, &rt, backend);
}

criterion_group! {
    name = benches;
    config = stent_benches::config();
    targets = redis
}
criterion_main!(benches);
