//! Bad configuration and input get typed errors that name what is wrong: an invalid table
//! name, a missing table, a wrong endpoint, a table of another shape, oversized values and
//! keys (refused before anything is sent).

mod support;

use std::net::TcpListener;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use stent_core::{Claim, ErrorKind, LeaseToken, Namespace, RecordMeta, ResultStore};
use stent_dynamodb::{DynamoDbStore, MAX_VALUE_LEN};

/// An endpoint where nothing listens.
fn closed_endpoint() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

/// The shared server, or `None` when the test should be skipped.
fn moto() -> Option<String> {
    match support::moto_url() {
        Ok(url) => Some(url),
        Err(reason) if !support::required() => {
            eprintln!("SKIPPED: {reason}");
            None
        }
        Err(reason) => panic!("{reason} and STENT_REQUIRE_BACKENDS=1"),
    }
}

#[test]
fn invalid_table_names_are_config_errors_naming_the_table() {
    for bad in ["ab", "has space", "bad/name", "émoji", &"t".repeat(256)] {
        let e = DynamoDbStore::builder().table(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{bad}");
        assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
    }
    let e = DynamoDbStore::builder()
        .url("dynamodb://a?endpoint=http://127.0.0.1:1")
        .unwrap_err();
    assert!(e.to_string().contains("\"a\""), "{e}");
}

#[test]
fn invalid_prefixes_and_endpoints_are_config_errors() {
    let e = DynamoDbStore::builder().key_prefix("cache").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    let e = DynamoDbStore::builder()
        .endpoint_url("127.0.0.1:5599")
        .unwrap_err();
    assert!(e.to_string().contains("127.0.0.1:5599"), "{e}");
    let e = DynamoDbStore::builder()
        .url("dynamodb://stent?endpoint=localhost:8000")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}

#[tokio::test]
async fn wrong_endpoint_is_a_retryable_error_naming_it() {
    let endpoint = closed_endpoint();
    let store = support::builder(&endpoint, "stent_nowhere", "p")
        .max_attempts(1)
        .timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let e = store.get(Namespace::Cache, "k").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable());
    assert_eq!(e.key(), Some("k"));
    let shown = e.to_string();
    assert!(
        shown.contains(&endpoint) && shown.contains("stent_nowhere"),
        "{shown}"
    );
    let e = store.migrate().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains(&endpoint), "{e}");
}

#[tokio::test]
async fn oversized_values_and_keys_are_refused_before_any_request() {
    // Nothing listens at this endpoint: a request would fail with Unavailable instead.
    let store = support::builder(&closed_endpoint(), "stent_nowhere", "p")
        .max_attempts(1)
        .build()
        .await
        .unwrap();
    let caps = store.capabilities();
    assert_eq!(caps.max_value_len, Some(MAX_VALUE_LEN));
    let big = vec![0u8; MAX_VALUE_LEN + 1];
    let e = store
        .put(Namespace::Cache, "k", &big, None, RecordMeta::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ValueTooLarge, "{e}");
    let e = store
        .complete(
            Namespace::Idempotency,
            "k",
            &LeaseToken::generate(),
            &big,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ValueTooLarge, "{e}");
    let max_key = caps.max_key_len.expect("a key limit");
    assert_eq!(max_key, 2048 - "p#idempotency#".len());
    let long = "k".repeat(max_key + 1);
    let e = store.get(Namespace::Cache, &long).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyTooLarge, "{e}");
    let token = LeaseToken::generate();
    let claim = Claim {
        token: &token,
        lease: Duration::from_secs(30),
        meta: RecordMeta::default(),
    };
    let e = store
        .claim(Namespace::Idempotency, &long, &claim)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyTooLarge, "{e}");
}

#[tokio::test]
async fn missing_table_is_a_config_error_naming_it() {
    let Some(url) = moto() else { return };
    let table = format!("stent_missing_{}", stent_conformance::unique_id());
    let store = support::builder(&url, &table, "p").build().await.unwrap();
    let e = store.get(Namespace::Idempotency, "k").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(!e.is_retryable());
    let shown = e.to_string();
    assert!(
        shown.contains(&table) && shown.contains("migrate"),
        "{shown}"
    );
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.get(Namespace::Idempotency, "k").await.unwrap(), None);
    store
        .client()
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn table_with_another_key_schema_is_refused() {
    let Some(url) = moto() else { return };
    let table = format!("stent_other_{}", stent_conformance::unique_id());
    let store = support::builder(&url, &table, "p").build().await.unwrap();
    store
        .client()
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::N)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let e = store.migrate().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(
        e.to_string().contains(&table) && e.to_string().contains("id (HASH)"),
        "{e}"
    );
    store
        .client()
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
}
