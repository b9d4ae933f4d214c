//! SQLite (a file in WAL mode) through stent next to sqlx on the store's own pool.
//!
//! `cargo bench -p stent-benches --bench sqlite`

use criterion::{Criterion, criterion_group, criterion_main};
use stent::{SqliteStore, Stent};
use stent_benches::raw::SqliteRaw;
use stent_benches::{Backend, bench_backend, runtime};

fn sqlite(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = rt
        .block_on(SqliteStore::open(dir.path().join("bench.db")))
        .expect("opening the SQLite file");
    let raw = SqliteRaw::new(&store);
    let backend = Backend {
        name: "sqlite",
        stent: Stent::new(store),
        raw,
        slow: false,
    };
    bench_backend(c, &rt, backend);
}

criterion_group! {
    name = benches;
    config = stent_benches::config();
    targets = sqlite
}
criterion_main!(benches);
