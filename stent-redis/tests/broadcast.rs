//! The broadcast of deletes and overwrites (`stent_conformance::broadcast`): two stores
//! built separately on one server and prefix, as two processes would hold them.
//!
//! The shared server at `STENT_REDIS_URL` (or a container), the cluster at
//! `STENT_REDIS_CLUSTER_URL`, and for the lost subscription a `redis-server` of the test's
//! own, whose subscribers `CLIENT KILL TYPE pubsub` cuts without touching other tests'.

use stent_conformance::broadcast::{
    broadcast_delete_and_overwrite_reach_another_process,
    broadcast_lost_subscription_never_serves_stale,
    broadcast_unanswered_subscription_is_taken_as_lost,
};
use stent_conformance::servers::local::{self, RedisServer};
use stent_conformance::servers::{self, Server};
use stent_redis::RedisStore;

async fn store(url: &str, prefix: &str) -> Result<RedisStore, String> {
    let built = RedisStore::builder().url(url).prefix(prefix).build().await;
    built.map_err(|e| e.to_string())
}

/// Two stores, each with its own connection, on `server` under the prefix `case`.
async fn processes(server: Server, case: String) -> Result<(RedisStore, RedisStore), String> {
    let url = servers::url(server).await?;
    Ok((store(&url, &case).await?, store(&url, &case).await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_delete_and_overwrite_reach_another_process() {
    let factory = |case| processes(Server::Redis, case);
    let name = "redis_delete_and_overwrite_reach_another_process";
    stent_conformance::run(factory, name, |pair| {
        broadcast_delete_and_overwrite_reach_another_process(pair)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_delete_and_overwrite_reach_another_process() {
    let factory = |case| processes(Server::RedisCluster, case);
    let name = "redis_cluster_delete_and_overwrite_reach_another_process";
    stent_conformance::run(factory, name, |pair| {
        broadcast_delete_and_overwrite_reach_another_process(pair)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_lost_subscription_never_serves_stale() {
    let test = "redis_lost_subscription_never_serves_stale";
    let Some(server) = local::or_skip(test, RedisServer::start(&["--save", ""])) else {
        return;
    };
    let url = server.url();
    let a = store(&url, "lost").await.unwrap();
    let b = store(&url, "lost").await.unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let admin = client.get_multiplexed_async_connection().await.unwrap();
    let kill = || {
        let mut admin = admin.clone();
        async move {
            let killed: i64 = redis::cmd("CLIENT")
                .arg(&["KILL", "TYPE", "pubsub"])
                .query_async(&mut admin)
                .await
                .unwrap();
            assert_eq!(killed, 1, "A's subscription should be the one subscriber");
        }
    };
    broadcast_lost_subscription_never_serves_stale((a, b), kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unanswered_subscription_is_taken_as_lost() {
    let test = "redis_unanswered_subscription_is_taken_as_lost";
    let Some(server) = local::or_skip(test, RedisServer::start(&["--save", ""])) else {
        return;
    };
    let url = server.url();
    let a = store(&url, "frozen").await.unwrap();
    let b = store(&url, "frozen").await.unwrap();
    // A `PING` after a second of silence, unanswered for a second: two, and a margin.
    let bound = std::time::Duration::from_secs(5);
    let freeze = || server.signal("-STOP");
    let thaw = || server.signal("-CONT");
    broadcast_unanswered_subscription_is_taken_as_lost((a, b), bound, freeze, thaw).await;
}
