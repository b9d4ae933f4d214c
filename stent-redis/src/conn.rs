//! One connection type over a standalone server and a Redis Cluster, and `SCAN` over
//! every master.

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use std::collections::HashMap;
use std::time::Duration;

use crate::config::{Target, Timeouts};

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
    pub(crate) async fn open(target: &Target, t: Timeouts) -> RedisResult<Conn> {
        match target {
            Target::Standalone(url) => {
                Self::standalone(redis::Client::open(url.as_str())?, t).await
            }
            Target::Client(client) => Self::standalone(client.clone(), t).await,
            Target::Cluster(nodes) => {
                // Redirections during resharding use retries too: keep a few. Each call is
                // timed by `Conn` itself (see the variant's docs), redirections included.
                let client = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(t.connect)
                    .retries(u32::try_from(t.retries).unwrap_or(u32::MAX).max(2))
                    .min_retry_wait(20)
                    .max_retry_wait(1000)
                    .overall_response_timeout(None)
                    .build()?;
                let conn = client.get_async_connection().await?;
                Ok(Conn::Cluster(conn, t.response))
            }
        }
    }

    async fn standalone(client: redis::Client, t: Timeouts) -> RedisResult<Conn> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(t.connect))
            .set_response_timeout(t.response)
            .set_number_of_retries(t.retries)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let manager = ConnectionManager::new_with_config(client, config).await?;
        Ok(Conn::Standalone(manager))
    }

    /// Where a full `SCAN` must look: the one server, or each master of a cluster (the
    /// addresses that answer a `PING` sent to all of them).
    async fn scan_nodes(&mut self) -> RedisResult<Vec<Option<RoutingInfo>>> {
        let Conn::Cluster(c, timeout) = self else {
            return Ok(vec![None]);
        };
        let all = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        let masters = timed(*timeout, c.route_command(redis::cmd("PING"), all)).await?;
        let masters: HashMap<String, Value> = redis::from_redis_value(masters)?;
        let node = |addr: &str| {
            let (host, port) = addr.rsplit_once(':')?;
            let (host, port) = (host.to_owned(), port.parse().ok()?);
            let node = SingleNodeRoutingInfo::ByAddress { host, port };
            Some(RoutingInfo::SingleNode(node))
        };
        Ok(masters.keys().filter_map(|a| node(a)).map(Some).collect())
    }

    /// Starts a `SCAN` for strings matching `pattern` over every master.
    pub(crate) async fn scan(&self, pattern: Vec<u8>) -> RedisResult<Scan> {
        let mut conn = self.clone();
        let nodes = conn.scan_nodes().await?;
        Ok(Scan {
            conn,
            pattern,
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
    nodes: Vec<Option<RoutingInfo>>,
    cursor: u64,
}

impl Scan {
    /// The next page of keys; `None` once every node has been scanned.
    pub(crate) async fn next_page(&mut self) -> RedisResult<Option<Vec<Vec<u8>>>> {
        let Some(node) = self.nodes.last().cloned() else {
            return Ok(None);
        };
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(self.cursor).arg("MATCH").arg(&self.pattern);
        cmd.arg("COUNT").arg(SCAN_COUNT).arg("TYPE").arg("string");
        let (cursor, keys): (u64, Vec<Vec<u8>>) = match (&mut self.conn, node) {
            (Conn::Cluster(c, timeout), Some(route)) => {
                let v = timed(*timeout, c.route_command(cmd, route)).await?;
                redis::from_redis_value(v)?
            }
            (conn, _) => cmd.query_async(conn).await?,
        };
        self.cursor = cursor;
        if cursor == 0 {
            self.nodes.pop();
        }
        Ok(Some(keys))
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

/// `call`, failing with a timeout error (`Unavailable`, retryable) after `t`, if set.
async fn timed<T>(
    t: Option<Duration>,
    call: impl Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    let Some(t) = t else { return call.await };
    let out = tokio::time::timeout(t, call).await;
    out.unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))
}
