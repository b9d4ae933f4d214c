//! Credentials are resolved when a store is built: a URL store without any is refused at
//! connect with an error naming the variables to set, not at its first call with the
//! instance-metadata error the SDK would give.
//!
//! Each case runs this test binary again with a controlled environment (the environment of
//! a running test is not for a test to change), and the child runs [`child`].

mod support;

use std::process::Command;

use stent_core::{ErrorKind, Namespace, RecordMeta, ResultStore};
use stent_dynamodb::DynamoDbStore;

/// Set in the child's environment: what [`child`] expects of `connect`.
const EXPECT: &str = "STENT_TEST_CREDENTIALS_EXPECT";

/// Runs [`child`] in a fresh process whose environment holds only `vars` (plus `PATH`, the
/// endpoint, and settings that keep the AWS SDK away from this machine's files and instance
/// metadata).
fn run_child(endpoint: &str, expect: &str, vars: &[(&str, &str)]) {
    let exe = std::env::current_exe().unwrap();
    let home = tempfile_dir();
    let mut cmd = Command::new(exe);
    cmd.args(["child", "--exact", "--ignored", "--nocapture"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("AWS_CONFIG_FILE", home.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("STENT_DYNAMODB_URL", endpoint)
        .env(EXPECT, expect);
    for (name, value) in vars {
        cmd.env(name, value);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child ({expect}) failed:\n{stdout}\n{stderr}"
    );
    let _ = std::fs::remove_dir_all(&home);
}

/// An empty directory of this test's own, for `HOME`.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "stent-dynamodb-credentials-{}-{}",
        std::process::id(),
        stent_conformance::unique_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

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

/// Without credentials anywhere, `connect` fails at once with a config error that says
/// which variables to set.
#[test]
fn a_url_store_without_credentials_is_refused_at_connect_naming_the_variables() {
    let Some(endpoint) = moto() else {
        return;
    };
    run_child(&endpoint, "missing", &[]);
}

/// With the variables the error names, the same URL connects and works.
#[test]
fn a_url_store_with_credentials_in_the_environment_connects_and_works() {
    let Some(endpoint) = moto() else {
        return;
    };
    run_child(
        &endpoint,
        "ok",
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
    );
}

/// The body of the cases above, in the child process; does nothing elsewhere.
#[tokio::test]
#[ignore = "run by the other cases of this file, in an environment of their making"]
async fn child() {
    let Ok(expect) = std::env::var(EXPECT) else {
        return;
    };
    let endpoint = std::env::var("STENT_DYNAMODB_URL").unwrap();
    let prefix = stent_conformance::unique_id();
    let url = format!(
        "dynamodb://{}?endpoint={endpoint}&prefix={prefix}",
        support::TABLE
    );
    let result = DynamoDbStore::connect(&url).await;
    match expect.as_str() {
        "missing" => {
            let e = result.expect_err("no credentials: refused at connect");
            assert_eq!(e.kind(), ErrorKind::Config, "{e}");
            let text = e.to_string();
            for needle in [
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_PROFILE",
                &endpoint,
            ] {
                assert!(text.contains(needle), "{needle:?} missing from: {text}");
            }
            assert!(!e.is_retryable(), "{e}");
        }
        "ok" => {
            let store = result.unwrap_or_else(|e| panic!("{e}"));
            store.migrate().await.unwrap();
            store
                .put(Namespace::Cache, "k", b"v", None, RecordMeta::default())
                .await
                .unwrap();
            let r = store.get(Namespace::Cache, "k").await.unwrap().unwrap();
            assert_eq!(r.value.as_deref(), Some(&b"v"[..]));
        }
        other => panic!("unknown expectation {other:?}"),
    }
}
