//! DynamoDB's API (`STENT_DYNAMODB_URL`; moto in the project's lanes) through stent next to
//! the SDK client the store uses.
//!
//! moto serves one request at a time and costs milliseconds per request: its ratios say how
//! many requests stent makes and how heavy they are, not what DynamoDB itself would take.
//!
//! `cargo bench -p stent-benches --bench dynamodb`

use criterion::{Criterion, criterion_group, criterion_main};
use stent::Stent;
use stent_benches::raw::{DynamoDbRaw, dynamodb_store};
use stent_benches::{Backend, bench_backend, runtime};

fn dynamodb(c: &mut Criterion) {
    let rt = runtime();
    let store = rt.block_on(dynamodb_store());
    let backend = Backend {
        name: "dynamodb",
        stent: Stent::new(store.clone()),
        raw: DynamoDbRaw::new(store),
        slow: true,
    };
    bench_backend(c, &rt, backend);
}

criterion_group! {
    name = benches;
    config = stent_benches::config();
    targets = dynamodb
}
criterion_main!(benches);
