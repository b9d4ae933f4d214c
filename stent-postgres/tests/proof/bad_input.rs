//! Bad configuration is a `Config` error that names the problem, and no message or
//! `Debug` output ever shows the password.

use std::time::Duration;

use stent_core::{Error, ErrorKind};
use stent_postgres::{PostgresStore, PostgresStoreBuilder};

use crate::support;
use crate::{PASSWORD, own_server, url_with};

/// Asserts a config error whose text names `needle` and shows no `secret`, in Display and Debug.
fn assert_config(e: &Error, needle: &str, secret: &str) {
    let shown = format!("{e}\n{e:?}");
    assert_eq!(e.kind(), ErrorKind::Config, "{shown}");
    assert!(!e.is_retryable(), "{shown}");
    assert!(
        shown.contains(needle),
        "the error should name {needle:?}: {shown}"
    );
    assert!(
        !shown.contains(secret),
        "password {secret:?} leaked: {shown}"
    );
}

async fn connect(url: &str) -> Error {
    PostgresStore::builder()
        .url(url)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .await
        .expect_err(url)
}

#[tokio::test]
async fn malformed_urls_are_config_errors_without_the_password() {
    for (url, needle) in [
        (
            "mysql://app:hunter2-pw@127.0.0.1/db",
            "not a PostgreSQL URL",
        ),
        (
            "postgres://app:hunter2-pw@127.0.0.1:notaport/db",
            "app:***@127.0.0.1:notaport/db",
        ),
        (
            "postgres://app:hunter2-pw@127.0.0.1/db?sslmode=sometimes",
            "sslmode",
        ),
        ("localhost:5432", "not a PostgreSQL URL"),
    ] {
        assert_config(&connect(url).await, needle, "hunter2");
    }
}

/// `url`'s server as `user`, with a password (ignored by trust auth), on `database` or on
/// `url`'s own.
fn on_same_server(url: &str, user: &str, database: Option<&str>) -> String {
    let (base, db) = url.rsplit_once('/').expect("URL with a database");
    let rest = base.split_once("://").map_or(base, |(_, r)| r);
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!(
        "postgres://{user}:hunter2-pw@{host}/{}",
        database.unwrap_or(db)
    )
}

#[tokio::test]
async fn a_missing_database_is_a_config_error_naming_it() {
    let Some(url) = support::url_or_skip("a_missing_database_is_a_config_error_naming_it") else {
        return;
    };
    let url = on_same_server(&url, "postgres", Some("stent_no_such_database"));
    assert_config(
        &connect(&url).await,
        "\"stent_no_such_database\" does not exist",
        "hunter2",
    );
}

#[tokio::test]
async fn a_missing_role_is_a_config_error_naming_it() {
    let Some(url) = support::url_or_skip("a_missing_role_is_a_config_error_naming_it") else {
        return;
    };
    // SQLSTATE 28000, as for a connection pg_hba.conf refuses: the server's message tells
    // them apart.
    let url = on_same_server(&url, "stent_no_such_role", None);
    assert_config(
        &connect(&url).await,
        "role \"stent_no_such_role\" does not exist",
        "hunter2",
    );
}

#[tokio::test]
async fn a_wrong_password_is_a_config_error_that_never_shows_it() {
    let Some(server) = own_server("a_wrong_password_is_a_config_error_that_never_shows_it") else {
        return;
    };
    let e = connect(&url_with(&server, "wrong-Passw0rd")).await;
    assert_config(&e, "password", "wrong-Passw0rd");
    // Percent-encoded, and as a query option: the decoded text must not show either.
    let e = connect(&url_with(&server, "wr%40ng-Passw0rd")).await;
    assert_config(&e, "password", "wr@ng-Passw0rd");
    let url = url_with(&server, "").replace("postgres:@", "postgres@");
    let e = connect(&format!("{url}?password=wrong-Passw0rd")).await;
    assert_config(&e, "password", "wrong-Passw0rd");
    // The right one works.
    PostgresStore::connect(&url_with(&server, PASSWORD))
        .await
        .unwrap();
}

#[test]
fn invalid_prefixes_and_schemas_are_refused_by_name() {
    for prefix in [
        "app-",
        "App_",
        "1app",
        "a b",
        "x\";DROP TABLE cache;--",
        &"p".repeat(41),
    ] {
        let e = PostgresStore::builder().table_prefix(prefix).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("table prefix"), "{e}");
    }
    for schema in ["", "Public", "pg_stent", "a.b", "s\"x", &"s".repeat(64)] {
        let e = PostgresStore::builder().schema(schema).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("schema"), "{e}");
    }
    assert!(PostgresStore::builder().table_prefix("").is_ok());
    assert!(
        PostgresStore::builder()
            .table_prefix("p".repeat(40))
            .is_ok()
    );
    assert!(PostgresStore::builder().schema("stent_2").is_ok());
}

/// `?schema=` and `?table_prefix=` in the URL place the tables as the builder's calls do,
/// and are checked as strictly, before any connection.
#[tokio::test]
async fn url_options_place_the_tables_and_are_checked_like_the_builders() {
    for (query, needle) in [
        ("table_prefix=App-", "table prefix"),
        ("schema=pg_x", "schema"),
        ("schema=a.b&table_prefix=ok_", "schema"),
    ] {
        // Nothing listens on port 1: a Config error proves the check came first.
        let e = connect(&format!("postgres://u@127.0.0.1:1/db?{query}")).await;
        assert_config(&e, needle, "no password");
    }
    let Some(url) =
        support::url_or_skip("url_options_place_the_tables_and_are_checked_like_the_builders")
    else {
        return;
    };
    support::sweep_old_schemas(&url).await;
    let schema = support::schema_for(&format!("urlopts{}", std::process::id()));
    let sep = if url.contains('?') { '&' } else { '?' };
    let store = PostgresStore::connect(&format!("{url}{sep}schema={schema}&table_prefix=viaurl_"))
        .await
        .unwrap();
    assert_eq!(
        store.table(stent_core::Namespace::Cache),
        format!("{schema}.viaurl_cache")
    );
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 \
         ORDER BY 1",
    )
    .bind(&schema)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        tables,
        ["viaurl_cache", "viaurl_idempotency", "viaurl_progress"]
    );
}

#[test]
fn builder_debug_redacts_the_password() {
    let b: PostgresStoreBuilder =
        PostgresStore::builder().url("postgres://app:hunter2-pw@db:5432/app?password=hunter2-pw");
    let shown = format!("{b:?}");
    assert!(
        shown.contains("postgres://app:***@db:5432/app?password=***"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
}

/// `from_env` reads `STENT_POSTGRES_URL` (stent's `table_prefix=` in it included), and says
/// so when it is missing.
#[tokio::test]
async fn from_env_reads_stent_postgres_url() {
    const CHILD: &str = "STENT_PG_PROOF_FROM_ENV_CHILD";
    match std::env::var(CHILD).as_deref() {
        Ok("unset") => {
            let e = PostgresStore::from_env().await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            assert!(
                e.to_string().contains("STENT_POSTGRES_URL is not set"),
                "{e}"
            );
            return;
        }
        Ok("set") => {
            let store = PostgresStore::from_env().await.unwrap();
            assert!(format!("{store:?}").contains("@"), "{store:?}");
            return;
        }
        _ => {}
    }
    let Some(url) = support::url_or_skip("from_env_reads_stent_postgres_url") else {
        return;
    };
    support::sweep_old_schemas(&url).await;
    // The child's tables go to a fresh schema through the URL's search_path option.
    let schema = support::schema_for(&format!("env{}", std::process::id()));
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&mut conn)
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    // And with stent's own option, which the environment's URL takes as `url` does.
    let scoped = format!("{url}{sep}options=-c%20search_path%3D{schema}&table_prefix=env_");
    let exe = std::env::current_exe().unwrap();
    let name = format!(
        "{}::from_env_reads_stent_postgres_url",
        module_path!().split_once("::").map_or("", |(_, m)| m)
    );
    for (mode, env) in [("unset", None), ("set", Some(scoped.as_str()))] {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args(["--exact", &name, "--nocapture"]).env(CHILD, mode);
        match env {
            Some(url) => cmd.env(stent_postgres::ENV_URL, url),
            None => cmd.env_remove(stent_postgres::ENV_URL),
        };
        let out = cmd.output().await.unwrap();
        assert!(
            out.status.success(),
            "child ({mode}) failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY tablename",
    )
    .bind(&schema)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, ["env_cache", "env_idempotency", "env_progress"]);
}
