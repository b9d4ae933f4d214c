//! PostgreSQL (`STENT_POSTGRES_URL`) through stent next to sqlx on the store's own pool.
//!
//! `cargo bench -p stent-benches --bench postgres`

use criterion::{Criterion, criterion_group, criterion_main};
use stent::{PostgresStore, Stent};
use stent_benches::{Backend, PostgresRaw, bench_backend, env_url, runtime};

fn postgres(c: &mut Criterion) {
    let url = env_url("STENT_POSTGRES_URL");
    let rt = runtime();
    let store = rt
        .block_on(async {
            PostgresStore::builder()
                .url(url)
                .table_prefix("bench_")?
                .build()
                .await
        })
        .expect("connecting stent to STENT_POSTGRES_URL");
    let raw = PostgresRaw::new(&store);
    let backend = Backend {
        name: "postgres",
        stent: Stent::new(store),
        raw,
        slow: false,
    };
    bench_backend(c, &rt, backend);
}

criterion_group! {
    name = benches;
    config = stent_benches::config();
    targets = postgres
}
criterion_main!(benches);
