//! Where the conformance suites get their servers, and what happens when there is none.
//!
//! Each check runs one `#[ignore]`d probe of this binary in a child process with the
//! environment it needs (the variables are process-wide), and asserts on its exit status
//! and output. None of them needs a server or a Docker daemon: the daemon is pointed at a
//! socket that does not exist.

use std::process::{Command, Output};
use std::sync::Arc;

use stent_conformance::servers::{self, Server};
use stent_core::ResultStore;

const NO_DOCKER: &str = "unix:///nonexistent/stent-test/docker.sock";

/// What a probe did: its output, and what it wrote to its own container log.
struct Probe {
    output: Output,
    #[cfg_attr(not(feature = "containers"), allow(dead_code))]
    log: String,
}

/// Runs the probe `name` in a child process with `env` set and every variable the probes
/// read cleared otherwise; its container log is a file of its own.
fn probe(name: &str, env: &[(&str, &str)]) -> Probe {
    let dir =
        std::env::temp_dir().join(format!("stent-servers-{}", stent_conformance::unique_id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let log = dir.join("containers.log");
    let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
    command.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    // Not part of the caller's nextest run: a probe must not share (or spoil) its containers.
    command.env_remove("NEXTEST_RUN_ID");
    command.env_remove("STENT_REQUIRE_BACKENDS");
    for server in Server::ALL {
        command.env_remove(server.env_url());
        command.env_remove(server.env_image());
    }
    command.env("DOCKER_HOST", NO_DOCKER);
    command.env("STENT_CONTAINERS_LOG", &log);
    command.envs(env.iter().copied());
    let output = command.output().expect("the probe runs");
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("running 1 test"),
        "the probe {name} did not run: {}",
        text(&output)
    );
    Probe { output, log }
}

fn text(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn env_url_is_used_as_given_without_docker() {
    let Probe { output, .. } = probe(
        "probe_env_url",
        &[("STENT_REDIS_URL", "redis://db.invalid:6390")],
    );
    assert!(output.status.success(), "{}", text(&output));
}

#[test]
fn unreachable_backend_is_skipped_loudly() {
    let Probe { output, .. } = probe("probe_unreachable_backend", &[]);
    assert!(output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("SKIPPED a_case: backend unavailable: STENT_POSTGRES_URL is not set"),
        "{}",
        text(&output)
    );
}

#[test]
fn unreachable_backend_fails_under_require_backends() {
    let Probe { output, .. } = probe(
        "probe_unreachable_backend",
        &[("STENT_REQUIRE_BACKENDS", "1")],
    );
    assert!(!output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("a_case: backend unavailable and STENT_REQUIRE_BACKENDS=1"),
        "{}",
        text(&output)
    );
}

#[test]
fn image_comes_from_its_variable_or_the_official_one() {
    let Probe { output, .. } = probe(
        "probe_images",
        &[
            ("STENT_REDIS_IMAGE", "local/redis:7"),
            ("STENT_DYNAMODB_IMAGE", "local/dynamodb-moto:5.2"),
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
}

#[tokio::test]
#[ignore = "a probe: run in a child process by env_url_is_used_as_given_without_docker"]
async fn probe_env_url() {
    assert_eq!(
        servers::url(Server::Redis).await,
        Ok("redis://db.invalid:6390".to_owned())
    );
}

#[tokio::test]
#[ignore = "a probe: run in a child process by the unreachable_backend tests"]
async fn probe_unreachable_backend() {
    async fn postgres(_id: String) -> Result<Arc<dyn ResultStore>, String> {
        servers::url(Server::Postgres).await?;
        unreachable!("no server in this probe");
    }
    stent_conformance::run(postgres, "a_case", |_store| async {
        panic!("the case ran without a store");
    })
    .await;
}

#[test]
#[ignore = "a probe: run in a child process by image_comes_from_its_variable_or_the_official_one"]
fn probe_images() {
    assert_eq!(Server::Postgres.image(), "postgres:17-alpine");
    assert_eq!(Server::Redis.image(), "local/redis:7");
    assert_eq!(Server::RedisCluster.image(), "local/redis:7");
    assert_eq!(Server::DynamoDb.image(), "local/dynamodb-moto:5.2");
}

/// With the `containers` feature: a container is tried, and its failure is the reason.
#[cfg(feature = "containers")]
mod containers {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn no_docker_is_an_error_naming_the_variable_and_is_logged() {
        let began = Instant::now();
        let Probe { output, log } = probe("containers::probe_no_docker", &[]);
        assert!(output.status.success(), "{}", text(&output));
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "an absent Docker daemon took {:?} to report",
            began.elapsed()
        );
        assert!(
            log.contains("could not start container stent-conformance-postgres-p"),
            "container log: {log:?}"
        );
    }

    #[tokio::test]
    #[ignore = "a probe: run in a child process by no_docker_is_an_error_naming_the_variable_and_is_logged"]
    async fn probe_no_docker() {
        let reason = servers::url(Server::Postgres)
            .await
            .expect_err("no URL and no Docker daemon");
        assert!(
            reason.starts_with("STENT_POSTGRES_URL is not set, and no container could be started"),
            "{reason}"
        );
        // The outcome is kept: the next case of the binary does not try again.
        assert_eq!(servers::url(Server::Postgres).await, Err(reason));
    }
}
