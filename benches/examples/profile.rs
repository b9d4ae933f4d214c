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

use stent::{MemoryStore, Namespace, ResultStore, Stent};
use stent_benches::{Fresh, Functions, hit_args};

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
    let store = MemoryStore::new();
    let f = Functions::new(&Stent::new(store.clone()));
    let fresh = Fresh::new("profile");
    rt.block_on(async {
        f.idempotent.call(hit_args()).await.expect("seeding");
        f.cached.call(hit_args()).await.expect("seeding");
        let key = f.cached.key_for(&hit_args()).expect("a key");
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
                other => panic!("unknown path {other} (hit, replay, first-call, miss, get, key)"),
            }
        }
    });
}
