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
    for ns in [Namespace::Idempotency, Namespace::Cache] {
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
        store.migrate().await.unwrap();
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

/// Every form `connect` accepts, as its errors list them.
const SCHEMES: [&str; 8] = [
    "memory://",
    "sqlite://",
    "postgres://",
    "postgresql://",
    "redis://",
    "rediss://",
    "redis+cluster://",
    "dynamodb://",
];

#[tokio::test]
async fn a_string_without_a_scheme_is_not_a_store_url_and_the_error_lists_the_schemes() {
    for url in [
        "garbage",
        "",
        "stent.db",
        "/tmp/stent.db",
        "://host",
        "1db:x",
    ] {
        let e = stent::connect(url).await.expect_err(url);
        assert_eq!(e.kind(), ErrorKind::Config, "{url}: {e}");
        let text = e.to_string();
        assert!(text.contains("is not a store URL"), "{url}: {text}");
        assert!(text.contains(&format!("{url:?}")), "{url}: {text}");
        for scheme in SCHEMES {
            assert!(text.contains(scheme), "{scheme} missing: {text}");
        }
    }
    let e = stent::connect("mongodb://u:hunter2@localhost/x")
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(r#"unknown store URL scheme "mongodb""#),
        "{text}"
    );
    for scheme in SCHEMES {
        assert!(text.contains(scheme), "{scheme} missing: {text}");
    }
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn a_memory_url_takes_no_options_and_names_the_unknown_ones() {
    for url in ["memory://", "memory:"] {
        stent::connect(url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    let e = stent::connect("memory://?x=1").await.expect_err("option");
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains(r#"unknown option "x""#), "{e}");
    let e = stent::connect("memory://?x=1&prefix")
        .await
        .expect_err("options");
    assert!(e.to_string().contains(r#"options "x", "prefix""#), "{e}");
    let e = stent::connect("memory://somewhere")
        .await
        .expect_err("path");
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("use memory://"), "{e}");
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_sqlite_url_names_its_unknown_options() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?table_prefix=app_&prefix=x",
        dir.path().join("o.db").display()
    );
    let e = stent::connect(&url).await.expect_err(&url);
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains(r#""prefix=x""#), "{e}");
    assert!(!dir.path().join("o.db").exists(), "refused before opening");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_postgres_url_names_its_user_and_only_known_options() {
    // Port 1: nothing listens, so a URL that passed the checks would fail as unreachable.
    let e = stent::connect("postgres://u:hunter2@127.0.0.1:1/db?sslmod=require&schema=s")
        .await
        .expect_err("unknown option");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains(r#"unknown option "sslmod""#), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    // Without a user, unless PGUSER names one (as for psql).
    if std::env::var_os("PGUSER").is_none() {
        for url in [
            "postgres://127.0.0.1:1/db",
            "postgresql://:pw@127.0.0.1:1/db",
        ] {
            let e = stent::connect(url).await.expect_err(url);
            assert_eq!(e.kind(), ErrorKind::Config, "{url}: {e}");
            let text = e.to_string();
            assert!(text.contains("names no user"), "{text}");
            assert!(text.contains("PGUSER"), "{text}");
            assert!(text.contains("postgres://USER@"), "{text}");
        }
    }
    let e = stent::connect("postgres://app@127.0.0.1:1/db?user=app&application_name=x")
        .await
        .expect_err("unreachable");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn a_dynamodb_url_names_its_unknown_options() {
    let e = stent::connect("dynamodb://stent?endpoint=http://127.0.0.1:1&secret=s")
        .await
        .expect_err("unknown option");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains(r#"unknown option "secret""#), "{e}");
}
