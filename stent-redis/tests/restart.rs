//! A Redis restart in the middle of a run: calls made while the server is away fail with
//! a retryable error, the same store reconnects by itself once it is back, and no function
//! runs twice.
//!
//! The test starts its own `redis-server` on a free loopback port, with an append-only
//! file synced on every write (so the restart keeps what was recorded), and kills it with
//! SIGKILL mid-run.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stent_core::{Durable, ErrorKind, Status, Stent};
use stent_redis::RedisStore;

const TEST: &str = "redis_restart_gives_retryable_errors_then_recovers_without_rerunning";

/// A `redis-server` child process, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(port: u16, dir: &Path) -> std::io::Result<Server> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = Server { child, port };
        server.wait_ready();
        Ok(server)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("redis://127.0.0.1:{}", self.port);
        loop {
            let pong = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on {} never answered",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn redis_server_available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            !stent_conformance::backends_required(),
            "redis-server is not installed and STENT_REQUIRE_BACKENDS=1"
        );
        eprintln!("SKIPPED {TEST}: redis-server is not installed");
    }
    found
}

type Runs = Arc<Mutex<HashMap<String, u32>>>;

/// A function that counts its executions per key and takes `ms` to run.
fn counted(stent: &Stent, runs: &Runs) -> Durable<(String, u64), String, std::convert::Infallible> {
    let runs = Arc::clone(runs);
    stent
        .durable("proof::restart")
        .idempotent()
        .wrap(move |(key, ms): (String, u64)| {
            let runs = Arc::clone(&runs);
            async move {
                *runs.lock().unwrap().entry(key.clone()).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(format!("done:{key}"))
            }
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_gives_retryable_errors_then_recovers_without_rerunning() {
    if !redis_server_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Server::start(port, dir.path()).unwrap();
    let store = RedisStore::connect(format!("redis://127.0.0.1:{port}"))
        .await
        .unwrap();
    let runs: Runs = Arc::default();
    let f = counted(&Stent::new(store), &runs);

    // Before the restart: eight results recorded.
    for i in 0..8 {
        let t = f.call_traced((format!("a{i}"), 0)).await.unwrap();
        assert_eq!(t.outcome.status, Status::Executed);
    }

    // Four long calls are running when the server dies.
    let long: Vec<_> = (0..4)
        .map(|i| {
            let f = f.clone();
            tokio::spawn(async move { f.call_traced((format!("b{i}"), 1500)).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (0..4).any(|i| !runs.lock().unwrap().contains_key(&format!("b{i}"))) {
        assert!(Instant::now() < deadline, "the long calls never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    server.kill();

    // While the server is away: replays and new calls alike fail, retryably.
    let during: Vec<_> = (0..8)
        .flat_map(|i| [format!("a{i}"), format!("c{i}")])
        .map(|key| {
            let f = f.clone();
            tokio::spawn(async move { f.call((key, 0)).await })
        })
        .collect();
    for (i, call) in during.into_iter().enumerate() {
        let e = call.await.unwrap().expect_err("the server is down");
        assert!(e.is_retryable(), "{e:?}");
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e:?}");
        if i == 0 {
            eprintln!("{TEST}: while down: {e}");
        }
    }
    // The long calls finish while the server is still away: recording their results
    // fails, and the wrapper keeps retrying.
    tokio::time::sleep(
        (started + Duration::from_millis(2500)).saturating_duration_since(Instant::now()),
    )
    .await;
    assert!(
        !long.iter().any(|c| c.is_finished()),
        "a long call ended during the outage"
    );

    // The server comes back on the same port, with what it had recorded.
    let mut server = Server::start(port, dir.path()).unwrap();
    let back = Instant::now();

    // The same store, never rebuilt: retried calls succeed once it has reconnected.
    let mut failures_after_restart = 0;
    for key in (0..8).flat_map(|i| [format!("a{i}"), format!("c{i}")]) {
        let t = loop {
            match f.call_traced((key.clone(), 0)).await {
                Ok(t) => break t,
                Err(e) => {
                    assert!(e.is_retryable(), "{e:?}");
                    failures_after_restart += 1;
                    assert!(
                        back.elapsed() < Duration::from_secs(30),
                        "never recovered: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        assert_eq!(t.value, format!("done:{key}"));
        let expected = if key.starts_with('a') {
            Status::Replayed
        } else {
            Status::Executed
        };
        assert_eq!(t.outcome.status, expected, "{key}");
    }
    eprintln!(
        "{TEST}: recovered {:?} after the restart ({failures_after_restart} retried calls)",
        back.elapsed()
    );

    // The long calls ran through the outage and recorded their results.
    for (i, call) in long.into_iter().enumerate() {
        let t = call
            .await
            .unwrap()
            .expect("the long call records its result after the restart");
        assert_eq!(t.value, format!("done:b{i}"));
        assert_eq!(t.outcome.status, Status::Executed);
        let again = f.call_traced((format!("b{i}"), 1500)).await.unwrap();
        assert_eq!(again.outcome.status, Status::Replayed);
    }

    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 20, "{runs:?}");
    assert!(
        runs.values().all(|&n| n == 1),
        "something ran twice: {runs:?}"
    );
    server.kill();
}
