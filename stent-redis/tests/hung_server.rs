//! A server that stops answering mid-run (a frozen process, `SIGSTOP`): calls fail with the
//! retryable `Unavailable` once the response timeout passes, instead of hanging, and the
//! same store works again once the server answers (`SIGCONT`). Standalone and Redis Cluster
//! (where the store times each call itself).
//!
//! Each test starts its own `redis-server` on a free loopback port, so freezing it touches
//! no other test.

use std::time::{Duration, Instant};

use stent_core::{Claim, ErrorKind, LeaseToken, Namespace, RecordMeta, ResultStore};
use stent_redis::RedisStore;

use stent_conformance::servers::local::{self, RedisServer};

/// Starts a private server in `dir`; with `cluster`, a one-node cluster that holds every
/// slot.
fn start(cluster: bool) -> Option<RedisServer> {
    let mut args = vec!["--save", "", "--appendonly", "no"];
    if cluster {
        args.extend(["--cluster-enabled", "yes"]);
    }
    let test = format!("a_frozen_server_fails_calls_then_recovers (cluster: {cluster})");
    let server = local::or_skip(&test, RedisServer::start(&args))?;
    if cluster {
        let mut conn = redis::Client::open(server.url())
            .and_then(|c| c.get_connection())
            .unwrap();
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
    Some(server)
}

async fn frozen_server_fails_calls_then_recovers(cluster: bool) {
    let Some(server) = start(cluster) else {
        return;
    };
    let scheme = if cluster { "redis+cluster" } else { "redis" };
    let store = RedisStore::builder()
        .url(format!("{scheme}://127.0.0.1:{}", server.port()))
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
    frozen_server_fails_calls_then_recovers(false).await;
}

#[tokio::test]
async fn a_frozen_cluster_node_fails_calls_after_the_response_timeout_then_recovers() {
    frozen_server_fails_calls_then_recovers(true).await;
}
