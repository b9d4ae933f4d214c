//! `stent::connect` opens every compiled-in backend from its URL, and a wrapped function
//! works end to end on each; a backend whose URL is missing fails the run under
//! `STENT_REQUIRE_BACKENDS=1`.

use std::convert::Infallible;
use std::sync::Arc;

use stent::{ErrorKind, Namespace, ResultStore, Status, Stent};

#[allow(dead_code)]
fn url_from_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) => Some(url),
        Err(_) if std::env::var("STENT_REQUIRE_BACKENDS").is_ok_and(|v| v == "1") => {
            panic!("{var} is not set and STENT_REQUIRE_BACKENDS=1")
        }
        Err(_) => {
            eprintln!("SKIPPED: {var} is not set");
            None
        }
    }
}

/// One round trip through the wrapper and the admin operations on `store`.
async fn exercise(store: Arc<dyn ResultStore>, label: &str) {
    let unique = format!("connect-{label}-{}", std::process::id());
    let f = Stent::from_arc(store.clone())
        .durable(unique.clone())
        .idempotent()
        .cached()
        .wrap(|x: u32| async move { Ok::<_, Infallible>(x * 2) });
    assert_eq!(f.call(21).await.unwrap(), 42, "{label}");
    let t = f.call_traced(21).await.unwrap();
    assert_eq!(t.outcome.status, Status::CacheHit, "{label}");
    for ns in Namespace::ALL {
        assert!(
            store.delete(ns, &t.outcome.key).await.unwrap(),
            "{label} {ns}"
        );
    }
}

#[tokio::test]
async fn memory_and_sqlite_urls_open_their_stores() {
    exercise(stent::connect("memory://").await.unwrap(), "memory").await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    exercise(stent::connect(&url).await.unwrap(), "sqlite").await;
}

#[tokio::test]
async fn unknown_and_malformed_urls_are_config_errors_without_secrets() {
    for url in [
        "mongodb://u:hunter2@localhost/x",
        "",
        "no-scheme",
        "sqlite://",
    ] {
        let e = stent::connect(url).await.expect_err(url);
        assert_eq!(e.kind(), ErrorKind::Config, "{url}: {e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
    }
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_urls_open_a_postgres_store() {
    if let Some(url) = url_from_env("STENT_POSTGRES_URL") {
        exercise(stent::connect(&url).await.unwrap(), "postgres").await;
    }
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_urls_open_a_redis_store() {
    if let Some(url) = url_from_env("STENT_REDIS_URL") {
        exercise(stent::connect(&url).await.unwrap(), "redis").await;
    }
    if let Some(url) = url_from_env("STENT_REDIS_CLUSTER_URL") {
        exercise(stent::connect(&url).await.unwrap(), "redis-cluster").await;
    }
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn dynamodb_urls_open_a_dynamodb_store() {
    if let Some(endpoint) = url_from_env("STENT_DYNAMODB_URL") {
        let url = format!("dynamodb://stent-connect-test?endpoint={endpoint}&region=us-east-1");
        let store = stent::DynamoDbStore::connect(&url).await.unwrap();
        store.ensure_table().await.unwrap();
        exercise(stent::connect(&url).await.unwrap(), "dynamodb").await;
    }
}

/// With a backend's feature off, its URLs say which feature to enable.
#[tokio::test]
async fn urls_of_backends_not_compiled_in_name_the_feature() {
    for (url, feature, on) in [
        (
            "postgres://localhost/db",
            "postgres",
            cfg!(feature = "postgres"),
        ),
        ("redis://localhost", "redis", cfg!(feature = "redis")),
        ("dynamodb://table", "dynamodb", cfg!(feature = "dynamodb")),
    ] {
        if !on {
            let e = stent::connect(url).await.expect_err(url);
            assert_eq!(e.kind(), ErrorKind::Config);
            assert!(
                e.to_string()
                    .contains(&format!("`{feature}` cargo feature")),
                "{e}"
            );
        }
    }
}
