//! The broadcast of deletes and overwrites (`stent_conformance::broadcast`): two stores
//! built separately on one server and prefix, as two processes would hold them.
//!
//! The stamped cases run on a `redis-server` of each case's own, so that `CLIENT KILL TYPE
//! pubsub` and stopping the server (`SIGSTOP`) touch no other test; the delete case runs
//! on the shared server at `STENT_REDIS_URL` and the cluster at `STENT_REDIS_CLUSTER_URL`
//! too.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use stent_conformance::broadcast::{Action, Processes};
use stent_conformance::servers::local::RedisServer;
use stent_conformance::servers::{self, Server};
use stent_redis::RedisStore;

async fn store(url: &str, prefix: &str) -> Result<RedisStore, String> {
    let built = RedisStore::builder().url(url).prefix(prefix).build().await;
    built.map_err(|e| e.to_string())
}

/// Stops or resumes a server by signal.
fn signal(server: &Arc<RedisServer>, signal: &'static str) -> Action {
    let server = Arc::clone(server);
    Box::new(move || {
        server.signal(signal);
        async {}.boxed()
    })
}

/// Two processes on a server of the case's own.
async fn processes(case: String) -> Result<Processes<RedisStore>, String> {
    let server = Arc::new(RedisServer::start(&["--save", ""])?);
    let url = server.url();
    let (a, b) = (store(&url, &case).await?, store(&url, &case).await?);
    let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
    let admin = client.get_multiplexed_async_connection().await;
    let admin = admin.map_err(|e| e.to_string())?;
    let kill: Action = Box::new(move || {
        let mut admin = admin.clone();
        async move {
            let killed: i64 = redis::cmd("CLIENT")
                .arg(&["KILL", "TYPE", "pubsub"])
                .query_async(&mut admin)
                .await
                .unwrap();
            assert_eq!(killed, 1, "A's subscription should be the one subscriber");
        }
        .boxed()
    });
    Ok(Processes {
        a,
        b,
        kill,
        freeze: signal(&server, "-STOP"),
        thaw: signal(&server, "-CONT"),
        // A `PING` after a second of silence, unanswered for a second: two, and a margin.
        heartbeat_bound: Duration::from_secs(5),
        keep: Box::new(server),
    })
}

stent_conformance::broadcast_tests!(processes);

/// Two processes on a shared server or cluster (the delete case only: it touches nothing
/// but its own prefix).
async fn shared(server: Server, case: String) -> Result<Processes<RedisStore>, String> {
    let url = servers::url(server).await?;
    let unused = || -> Action { Box::new(|| unreachable!("not on a shared server")) };
    Ok(Processes {
        a: store(&url, &case).await?,
        b: store(&url, &case).await?,
        kill: unused(),
        freeze: unused(),
        thaw: unused(),
        heartbeat_bound: Duration::from_secs(5),
        keep: Box::new(()),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_redis_delete_and_overwrite_reach_another_process() {
    let factory = |case| shared(Server::Redis, case);
    let name = "shared_redis_delete_and_overwrite_reach_another_process";
    stent_conformance::run(
        factory,
        name,
        stent_conformance::broadcast::broadcast_delete_and_overwrite_reach_another_process,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_delete_and_overwrite_reach_another_process() {
    let factory = |case| shared(Server::RedisCluster, case);
    let name = "redis_cluster_delete_and_overwrite_reach_another_process";
    stent_conformance::run(
        factory,
        name,
        stent_conformance::broadcast::broadcast_delete_and_overwrite_reach_another_process,
    )
    .await;
}
