//! One path of a call, repeated, for an instruction profiler: the wrapper over `MemoryStore`
//! on a current-thread runtime, so that what `valgrind --tool=callgrind` counts is the
//! wrapper's own work and the store's, without a network or a second thread.
//!
//! ```text
//! cargo build --release -p stent-benches --example profile
//! valgrind --tool=callgrind target/release/examples/profile first-call 20000
//! ```
//!
//! Paths: `hit` (a cache hit), `replay` (an idempotent replay), `first-call` (an idempotent
//! first call on a fresh key), `miss` (a cache miss on a fresh key), `get` (the store's `get`
//! alone), `key` (key derivation alone). The second argument is the number of calls
//! (default 10 000); the difference between two counts is the cost of the calls between them.
//!
//! `claim-complete` is the store's own claim and completion of a fresh key, without the wrapper.
//! The same paths prefixed `redis-` (`redis-hit`, `redis-get`, …) run over a `RedisStore` on
//! `STENT_REDIS_URL`, prefixed `cluster-` over one on `STENT_REDIS_CLUSTER_URL`, and
//! `redis-raw` is the raw driver's `GET` of the cached record: what the
//! profiler counts is then the client's own work per call, the part of a call that limits
//! throughput when many tasks share the machine's cores. A run over Redis clears what it
//! wrote at the end; with `STENT_PROFILE_KEEP=1` it leaves the keys (under `stent-profile:`,
//! cleared by the next run without it), so that the count holds the calls alone.

use std::sync::Arc;

use stent::{MemoryStore, Namespace, RedisStore, ResultStore, Stent};
use stent_benches::{
    Fresh, Functions, Raw, RedisRaw, env_url, hit_args, store_claim_complete, stored_value,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "hit".to_owned());
    let calls: u32 = args
        .next()
        .map(|n| n.parse().expect("a number of calls"))
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let prefix = "stent-profile";
    let (path, server) = match (path.strip_prefix("redis-"), path.strip_prefix("cluster-")) {
        (Some(rest), _) => (rest.to_owned(), Some("STENT_REDIS_URL")),
        (_, Some(rest)) => (rest.to_owned(), Some("STENT_REDIS_CLUSTER_URL")),
        _ => (path, None),
    };
    let redis = server.map(|var| {
        let url = env_url(var);
        rt.block_on(async {
            let store = RedisStore::builder()
                .url(url.as_str())
                .prefix(prefix)
                .build()
                .await
                .unwrap_or_else(|e| panic!("connecting stent to {var}: {e}"));
            // The raw driver's read, on standalone Redis only.
            let raw = match var {
                "STENT_REDIS_URL" => {
                    let client = redis::Client::open(url.as_str()).expect("STENT_REDIS_URL");
                    let conn = redis::aio::ConnectionManager::new(client)
                        .await
                        .expect("connecting to STENT_REDIS_URL");
                    Some(RedisRaw::new(conn, prefix))
                }
                _ => None,
            };
            (store, raw)
        })
    });
    let store: Arc<dyn ResultStore> = match &redis {
        Some((store, _)) => Arc::new(store.clone()),
        None => Arc::new(MemoryStore::new()),
    };
    let f = Functions::new(&Stent::from_arc(Arc::clone(&store)));
    let fresh = Fresh::new(stent_benches::run_tag());
    rt.block_on(async {
        f.idempotent.call(hit_args()).await.expect("seeding");
        f.cached.call(hit_args()).await.expect("seeding");
        let key = f.cached.key_for(&hit_args()).expect("a key");
        let value = stored_value("ord-000042");
        for _ in 0..calls {
            match path.as_str() {
                "hit" => drop(f.cached.call(hit_args()).await.expect("hit")),
                "replay" => drop(f.idempotent.call(hit_args()).await.expect("replay")),
                "first-call" => drop(
                    f.idempotent
                        .call((fresh.next(), 500))
                        .await
                        .expect("first call"),
                ),
                "miss" => drop(f.cached.call((fresh.next(), 500)).await.expect("miss")),
                "get" => assert!(
                    store
                        .get(Namespace::Cache, &key)
                        .await
                        .expect("get")
                        .is_some()
                ),
                "key" => drop(std::hint::black_box(
                    f.idempotent.key_for(&hit_args()).expect("a key"),
                )),
                "sizes" => {
                    // What a task spawned for one call carries: its future, inline.
                    let hit = f.cached.call(hit_args());
                    let replay = f.idempotent.call(hit_args());
                    let get = store.get(Namespace::Cache, &key);
                    println!(
                        "future sizes: call {} B, idempotent call {} B, store get {} B",
                        std::mem::size_of_val(&hit),
                        std::mem::size_of_val(&replay),
                        std::mem::size_of_val(&get)
                    );
                    break;
                }
                "claim-complete" => {
                    store_claim_complete(&*store, &fresh.next(), &value).await;
                }
                "raw" => {
                    let raw = redis.as_ref().and_then(|(_, raw)| raw.as_ref());
                    let raw = raw.expect("`raw` is `redis-raw`");
                    assert!(raw.read(Namespace::Cache, &key).await);
                }
                other => panic!(
                    "unknown path {other} (hit, replay, first-call, miss, get, key, \
                     claim-complete, each also with `redis-` or `cluster-`, and redis-raw)"
                ),
            }
        }
        if redis.is_some() && std::env::var_os("STENT_PROFILE_KEEP").is_none() {
            // The server outlives the run: leave nothing of it behind.
            for ns in Namespace::ALL {
                store.clear(ns).await.expect("clearing");
            }
        }
    });
}
