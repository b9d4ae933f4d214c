//! One Redis server (`STENT_REDIS_URL`) through stent next to plain Redis commands on a
//! connection of the same kind (`ConnectionManager`).
//!
//! `cargo bench -p stent-benches --bench redis`

use criterion::{Criterion, criterion_group, criterion_main};

fn redis(c: &mut Criterion) {
    stent_benches::bench_standalone_redis(c, "STENT_REDIS_URL", "redis", "stent-bench");
}

criterion_group! {
    name = benches;
    config = stent_benches::config();
    targets = redis
}
criterion_main!(benches);
