//! DynamoDB's API (`STENT_DYNAMODB_URL`; moto in the project's lanes) through stent next to
//! the SDK client the store uses.
//!
//! moto serves one request at a time and costs milliseconds per request: its ratios say how
//! many requests stent makes and how heavy they are, not what DynamoDB itself would take.
//!
//! `cargo bench -p stent-benches --bench dynamodb`

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use criterion::{Criterion, criterion_group, criterion_main};
use stent::{DynamoDbStore, Namespace, Stent};
use stent_benches::{Backend, Raw, bench_backend, env_url, now_ms, runtime};

const TABLE: &str = "stent_bench";

/// The SDK client the store uses, against the store's table and items.
struct DynamoDbRaw {
    store: DynamoDbStore,
}

impl DynamoDbRaw {
    fn client(&self) -> &Client {
        self.store.client()
    }

    fn pk(&self, ns: Namespace, key: &str) -> AttributeValue {
        AttributeValue::S(self.store.partition_key(ns, key))
    }
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

impl Raw for DynamoDbRaw {
    async fn read(&self, ns: Namespace, key: &str) -> bool {
        let out = self
            .client()
            .get_item()
            .table_name(TABLE)
            .key("pk", self.pk(ns, key))
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem");
        out.item.is_some()
    }

    async fn two_writes(&self, key: &str, value: &[u8]) {
        let now = now_ms();
        self.client()
            .put_item()
            .table_name(TABLE)
            .item("pk", self.pk(Namespace::Idempotency, key))
            .item("state", s("in_progress"))
            .item("lease_token", s("token"))
            .item("lease_expires_ms", n(now + 30_000))
            .item("attempt", n(1))
            .item("created_ms", n(now))
            .send()
            .await
            .expect("PutItem");
        self.client()
            .update_item()
            .table_name(TABLE)
            .key("pk", self.pk(Namespace::Idempotency, key))
            .update_expression(
                "SET #state = :completed, #value = :value, completed_ms = :now \
                 REMOVE lease_token, lease_expires_ms",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#value", "value")
            .expression_attribute_values(":completed", s("completed"))
            .expression_attribute_values(":value", AttributeValue::B(Blob::new(value)))
            .expression_attribute_values(":now", n(now_ms()))
            .send()
            .await
            .expect("UpdateItem");
    }

    async fn read_then_write(&self, key: &str, value: &[u8]) {
        assert!(!self.read(Namespace::Cache, key).await);
        let now = now_ms();
        self.client()
            .put_item()
            .table_name(TABLE)
            .item("pk", self.pk(Namespace::Cache, key))
            .item("state", s("completed"))
            .item("value", AttributeValue::B(Blob::new(value)))
            .item("attempt", n(1))
            .item("created_ms", n(now))
            .item("completed_ms", n(now))
            .send()
            .await
            .expect("PutItem");
    }
}

fn dynamodb(c: &mut Criterion) {
    let url = env_url("STENT_DYNAMODB_URL");
    let rt = runtime();
    let store = rt
        .block_on(async {
            let store = DynamoDbStore::builder()
                .endpoint_url(url)?
                .table(TABLE)?
                .build()
                .await?;
            store.ensure_table().await?;
            Ok::<_, stent::Error>(store)
        })
        .expect("connecting stent to STENT_DYNAMODB_URL");
    let backend = Backend {
        name: "dynamodb",
        stent: Stent::new(store.clone()),
        raw: DynamoDbRaw { store },
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
