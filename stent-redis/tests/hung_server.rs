//! A server that stops answering mid-run (a frozen process, `SIGSTOP`): calls fail with the
//! retryable `Unavailable` once the response timeout passes, instead of hanging, and the
//! same store works again once the server answers (`SIGCONT`). Standalone and Redis Cluster
//! (where the store times each call itself).
//!
//! Each test starts its own `redis-server` on a free loopback port, so freezing it touches
//! no other test.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stent_core::{Claim, ErrorKind, LeaseToken, Namespace, RecordMeta, ResultStore};
use stent_redis::RedisStore;

/// A `redis-server` child process, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Server {
    /// Starts a server; with `cluster`, a one-node cluster that holds every slot.
    fn start(cluster: bool) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("stent-hung-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if cluster {
            cmd.args(["--cluster-enabled", "yes"]);
        }
        let server = Server {
            child: cmd.spawn().expect("starting redis-server"),
            port,
            dir,
        };
        let mut conn = server.wait_ready();
        if cluster {
            let _: () = redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(0)
                .arg(16383)
                .query(&mut conn)
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn).unwrap();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster never became ok: {info}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        server
    }

    fn wait_ready(&self) -> redis::Connection {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("redis://127.0.0.1:{}", self.port);
        loop {
            let conn = redis::Client::open(url.as_str()).and_then(|c| c.get_connection());
            if let Ok(mut conn) = conn
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return conn;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on {} never answered",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn redis_server_available(test: &str) -> bool {
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
        eprintln!("SKIPPED {test}: redis-server is not installed");
    }
    found
}

async fn frozen_server_fails_calls_then_recovers(cluster: bool) {
    let server = Server::start(cluster);
    let scheme = if cluster { "redis+cluster" } else { "redis" };
    let store = RedisStore::builder()
        .url(format!("{scheme}://127.0.0.1:{}", server.port))
        .response_timeout(Some(Duration::from_millis(300)))
        .build()
        .await
        .unwrap();
    let ns = Namespace::Idempotency;
    store
        .put(ns, "kept", b"v", None, RecordMeta::default())
        .await
        .unwrap();

    server.signal("-STOP");
    let token = LeaseToken::generate();
    let claim = Claim {
        token: &token,
        lease: Duration::from_secs(30),
        meta: RecordMeta::default(),
    };
    let started = Instant::now();
    let errors = [
        ("get", store.get(ns, "kept").await.map(drop)),
        ("claim", store.claim(ns, "new", &claim).await.map(drop)),
        (
            "complete",
            store.complete(ns, "new", &token, b"v", None).await,
        ),
    ];
    let waited = started.elapsed();
    server.signal("-CONT");
    for (op, result) in errors {
        let e = result.expect_err(op);
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{op}: {e}");
        assert!(e.is_retryable(), "{op}: {e}");
    }
    // Three calls of a 300 ms timeout: a call that hung would have waited for SIGCONT.
    assert!(waited < Duration::from_secs(10), "calls took {waited:?}");

    // The same store works again, and nothing was lost.
    let deadline = Instant::now() + Duration::from_secs(30);
    let record = loop {
        match store.get(ns, "kept").await {
            Ok(record) => break record,
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                assert!(Instant::now() < deadline, "never recovered: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(record.unwrap().value.as_deref(), Some(&b"v"[..]));
}

#[tokio::test]
async fn a_frozen_server_fails_calls_after_the_response_timeout_then_recovers() {
    if redis_server_available(
        "a_frozen_server_fails_calls_after_the_response_timeout_then_recovers",
    ) {
        frozen_server_fails_calls_then_recovers(false).await;
    }
}

#[tokio::test]
async fn a_frozen_cluster_node_fails_calls_after_the_response_timeout_then_recovers() {
    if redis_server_available(
        "a_frozen_cluster_node_fails_calls_after_the_response_timeout_then_recovers",
    ) {
        frozen_server_fails_calls_then_recovers(true).await;
    }
}
