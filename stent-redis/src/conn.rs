//! One connection type over a standalone server and a Redis Cluster, and `SCAN` over
//! every master.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use redis::{Client, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use stent_core::Result;

use crate::config::Timeouts;
use crate::error::from_redis;

/// Keys per `SCAN` page.
const SCAN_COUNT: usize = 1000;

/// A cheap-to-clone handle that reconnects by itself: a [`ConnectionManager`] for one
/// server, a [`ClusterConnection`] (which follows the cluster's slot map) for a cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    Standalone(ConnectionManager),
    /// The cluster connection and the response timeout, applied here by a `tokio` timer: the
    /// cluster client's own timer cost 15 µs a call (benches' `interleaved -- cluster`).
    Cluster(ClusterConnection, Option<Duration>),
}

impl Conn {
    /// Connects to the one server of `clients`, or to the cluster they are seed nodes of.
    pub(crate) async fn open(clients: &[Client], cluster: bool, t: Timeouts) -> RedisResult<Conn> {
        if let (false, [client]) = (cluster, clients) {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(t.connect))
                .set_response_timeout(t.response)
                .set_number_of_retries(t.retries)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_secs(1));
            let manager = ConnectionManager::new_with_config(client.clone(), config).await?;
            return Ok(Conn::Standalone(manager));
        }
        // Redirections during resharding use retries too: keep a few. Each call is timed by
        // `Conn` itself (see the variant's docs), redirections included.
        let nodes = clients.iter().map(|c| c.get_connection_info().clone());
        let client = ClusterClientBuilder::new(nodes)
            .connection_timeout(t.connect)
            .retries(u32::try_from(t.retries).unwrap_or(u32::MAX).max(2))
            .min_retry_wait(20)
            .max_retry_wait(1000)
            .overall_response_timeout(None)
            .build()?;
        let conn = client.get_async_connection().await?;
        Ok(Conn::Cluster(conn, t.response))
    }

    /// Starts a `SCAN` for strings matching `pattern` (keys that start with `base`) on the one
    /// server, or on each master of a cluster: the addresses that answer a `PING` to all.
    pub(crate) async fn scan(&self, pattern: Vec<u8>, base: &str) -> Result<Scan> {
        let mut nodes = vec![None];
        if let Conn::Cluster(c, timeout) = self {
            let all = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
            let masters = timed(*timeout, c.clone().route_command(redis::cmd("PING"), all)).await;
            let masters: HashMap<String, Value> = parsed(masters).map_err(scan_failed)?;
            let node = |addr: &String| {
                let (host, port) = addr.rsplit_once(':')?;
                let (host, port) = (host.to_owned(), port.parse().ok()?);
                Some(Some(RoutingInfo::SingleNode(
                    SingleNodeRoutingInfo::ByAddress { host, port },
                )))
            };
            nodes = masters.keys().filter_map(node).collect();
        }
        let (conn, base) = (self.clone(), base.as_bytes().to_vec());
        Ok(Scan {
            conn,
            pattern,
            base,
            nodes,
            cursor: 0,
        })
    }
}

/// A `SCAN` in progress, one page at a time. Like `SCAN` itself, it may return a key
/// twice and may miss keys created or deleted while it runs.
pub(crate) struct Scan {
    conn: Conn,
    pattern: Vec<u8>,
    base: Vec<u8>,
    nodes: Vec<Option<RoutingInfo>>,
    cursor: u64,
}

impl Scan {
    /// The stent keys (less `base`) of the next page; `None` once every node is scanned.
    pub(crate) async fn next_page(&mut self) -> Result<Option<Vec<String>>> {
        let Some(node) = self.nodes.last().cloned() else {
            return Ok(None);
        };
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(self.cursor).arg("MATCH").arg(&self.pattern);
        cmd.arg("COUNT").arg(SCAN_COUNT).arg("TYPE").arg("string");
        let page = match (&mut self.conn, node) {
            (Conn::Cluster(c, t), Some(route)) => {
                parsed(timed(*t, c.route_command(cmd, route)).await)
            }
            (conn, _) => cmd.query_async(conn).await,
        };
        let (cursor, keys): (u64, Vec<Vec<u8>>) = page.map_err(scan_failed)?;
        self.cursor = cursor;
        if cursor == 0 {
            self.nodes.pop();
        }
        let key = |k: Vec<u8>| String::from_utf8(k.strip_prefix(&self.base[..])?.to_vec()).ok();
        Ok(Some(keys.into_iter().filter_map(key).collect()))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Standalone(c) => c.req_packed_command(cmd),
            Conn::Cluster(c, timeout) => Box::pin(timed(*timeout, c.req_packed_command(cmd))),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c, t) => {
                Box::pin(timed(*t, c.req_packed_commands(pipeline, offset, count)))
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Standalone(c) => c.get_db(),
            Conn::Cluster(c, _) => c.get_db(),
        }
    }
}

/// The call `f`, failing with a timeout error (`Unavailable`, retryable) after `t`, if set.
async fn timed<T>(t: Option<Duration>, f: impl Future<Output = RedisResult<T>>) -> RedisResult<T> {
    let Some(t) = t else { return f.await };
    let out = tokio::time::timeout(t, f).await;
    out.unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))
}

/// A routed command's reply, read as a `T`.
fn parsed<T: redis::FromRedisValue>(reply: RedisResult<Value>) -> RedisResult<T> {
    Ok(redis::from_redis_value(reply?)?)
}

fn scan_failed(e: RedisError) -> stent_core::Error {
    from_redis(e, "scan", None)
}
