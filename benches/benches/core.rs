//! Core overhead without a network: the wrapper over `MemoryStore`, and key derivation.
//!
//! `cargo bench -p stent-benches --bench core`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use stent::{MemoryStore, Namespace, ResultStore, Stent};
use stent_benches::{Fresh, Functions, hit_args, run_tag, runtime};

fn memory(c: &mut Criterion) {
    let rt = runtime();
    let store = MemoryStore::new();
    let f = Functions::new(&Stent::new(store.clone()));
    rt.block_on(async {
        f.idempotent.call(hit_args()).await.expect("seed");
        f.cached.call(hit_args()).await.expect("seed");
    });

    let mut g = c.benchmark_group("core/memory");
    let (idem, cached) = (&f.idempotent, &f.cached);
    g.bench_function("idempotent_replay", |b| {
        b.to_async(&rt)
            .iter(|| async move { idem.call(hit_args()).await.expect("replay") });
    });
    g.bench_function("cache_hit", |b| {
        b.to_async(&rt)
            .iter(|| async move { cached.call(hit_args()).await.expect("hit") });
    });
    // The store alone, without the wrapper: the floor of a hit.
    let key = cached.key_for(&hit_args()).expect("a key");
    let (store, key) = (&store, key.as_str());
    g.bench_function("store_get", |b| {
        b.to_async(&rt).iter(|| async move {
            let record = store.get(Namespace::Cache, key).await.expect("get");
            assert!(record.is_some());
            record
        });
    });
    let fresh = &Fresh::new(run_tag());
    g.bench_function("idempotent_first_call", |b| {
        b.to_async(&rt)
            .iter(|| async move { idem.call((fresh.next(), 500)).await.expect("call") });
    });
    g.bench_function("cache_miss", |b| {
        b.to_async(&rt)
            .iter(|| async move { cached.call((fresh.next(), 500)).await.expect("call") });
    });
    g.finish();
}

fn keys(c: &mut Criterion) {
    let f = Functions::new(&Stent::new(MemoryStore::new()));
    let small = hit_args();
    let large = ("x".repeat(10 * 1024), 500);
    let mut g = c.benchmark_group("core/key");
    g.bench_function("small", |b| {
        b.iter(|| f.idempotent.key_for(black_box(&small)).expect("key"));
    });
    g.bench_function("10KiB", |b| {
        b.iter(|| f.idempotent.key_for(black_box(&large)).expect("key"));
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = stent_benches::config();
    targets = keys, memory
}
criterion_main!(benches);
