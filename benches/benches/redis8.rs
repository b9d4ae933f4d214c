//! One Redis 8 server (`STENT_REDIS8_URL`) through stent next to plain commands on a
//! connection of the same kind (`ConnectionManager`).
//!
//! `cargo bench -p stent-benches --bench redis8`

use criterion::{Criterion, criterion_group, criterion_main};

fn redis8(c: &mut Criterion) {
    stent_benches::bench_standalone_redis(c, "STENT_REDIS8_URL", "redis8", "stent-bench");
}

criterion_group! {
    name = benches;
    config = stent_benches::config();
    targets = redis8
}
criterion_main!(benches);
