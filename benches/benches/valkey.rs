//! One Valkey server (`STENT_VALKEY_URL`) through stent next to plain commands on a
//! connection of the same kind (`ConnectionManager`).
//!
//! `cargo bench -p stent-benches --bench valkey`

use criterion::{Criterion, criterion_group, criterion_main};

fn valkey(c: &mut Criterion) {
    stent_benches::bench_standalone_redis(c, "STENT_VALKEY_URL", "valkey", "stent-bench");
}

criterion_group! {
    name = benches;
    config = stent_benches::config();
    targets = valkey
}
criterion_main!(benches);
