//! A Redis cache hit through stent next to the `cached` crate's Redis store
//! (`#[concurrent_cached]` over its `AsyncRedisCache`) on the same server, and the two
//! plain reads they are made of (`GET` of stent's record string, `GET` of `cached`'s
//! string value).
//!
//! `cargo bench -p stent-benches --bench cached`

use std::time::Duration;

use cached::AsyncRedisCache;
use cached::macros::concurrent_cached;
use criterion::{Criterion, criterion_group, criterion_main};
use stent::{Namespace, RedisStore, ResultStore, Stent};
use stent_benches::{Functions, Raw, RedisRaw, env_url, hit_args, runtime, stored_value};

const PREFIX: &str = "stent-bench";

/// The benchmarked function as the `cached` crate's users write it.
#[concurrent_cached(
    map_error = r##"|e| format!("{e:?}")"##,
    ty = "AsyncRedisCache<String, String>",
    key = "String",
    convert = r##"{ format!("{id}:{amount}") }"##,
    create = r##"{
        AsyncRedisCache::builder("quote")
            .namespace("stent-bench-cached")
            .connection_string(&env_url("STENT_REDIS_URL"))
            .ttl(Duration::from_secs(600))
            .build()
            .await
            .expect("connecting the cached crate to STENT_REDIS_URL")
    }"##
)]
async fn quote(id: String, amount: u64) -> Result<String, String> {
    Ok(format!("receipt-{id}-{amount}"))
}

fn versus_cached(c: &mut Criterion) {
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
    let f = Functions::new(&Stent::new(store.clone()));
    let raw = RedisRaw::new(conn.clone(), PREFIX);
    let (id, amount) = hit_args();
    let get_key = format!("{PREFIX}:raw-get");
    rt.block_on(async {
        f.cached.call(hit_args()).await.expect("seeding stent");
        quote(id.clone(), amount).await.expect("seeding cached");
        let mut conn = conn.clone();
        redis::cmd("SET")
            .arg(&get_key)
            .arg(stored_value(&id))
            .exec_async(&mut conn)
            .await
            .expect("SET");
    });

    let mut g = c.benchmark_group("cached/redis_hit");
    let cached = &f.cached;
    g.bench_function("stent_cache_hit", |b| {
        b.to_async(&rt)
            .iter(|| async move { cached.call(hit_args()).await.expect("hit") });
    });
    g.bench_function("cached_crate_hit", |b| {
        b.to_async(&rt).iter(|| async move {
            let (id, amount) = hit_args();
            quote(id, amount).await.expect("hit")
        });
    });
    let key = cached.key_for(&hit_args()).expect("a key");
    let (raw, key) = (&raw, key.as_str());
    g.bench_function("raw_get_record", |b| {
        b.to_async(&rt)
            .iter(|| async move { assert!(raw.read(Namespace::Cache, key).await) });
    });
    let (conn, get_key) = (&conn, get_key.as_str());
    g.bench_function("raw_get_plain", |b| {
        b.to_async(&rt).iter(|| async move {
            let mut conn = conn.clone();
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(get_key)
                .query_async(&mut conn)
                .await
                .expect("GET");
            assert!(value.is_some());
        });
    });
    g.finish();

    rt.block_on(async {
        store.clear(Namespace::Cache).await.expect("clearing");
        let mut conn = conn.clone();
        redis::cmd("DEL")
            .arg(get_key)
            .exec_async(&mut conn)
            .await
            .expect("DEL");
    });
}

criterion_group! {
    name = benches;
    config = stent_benches::config();
    targets = versus_cached
}
criterion_main!(benches);
