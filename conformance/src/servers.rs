//! The servers the conformance suites run against, one URL per [`Server`].
//!
//! [`url`] gives, in this order:
//!
//! 1. the URL in the server's environment variable (`STENT_POSTGRES_URL`, …) when it is set;
//! 2. otherwise a container started with [testcontainers] from the server's image
//!    (`STENT_<SERVER>_IMAGE`, or the official image), when a Docker daemon answers and the
//!    crate's `containers` feature is on (it is by default);
//! 3. otherwise `Err(reason)`, which [`run`](crate::run) turns into a loud skip, or a failure
//!    under `STENT_REQUIRE_BACKENDS=1`.
//!
//! One container serves a whole test binary under `cargo test` (its tests share a
//! process), and a whole run under `cargo nextest run` (each test is a process of its own:
//! the first one starts the container under a file lock, the others read its URL). A
//! watchdog process removes the container once the test binary, or the nextest run, is
//! gone, however it ended: returned, panicked or killed. Containers carry the label
//! `dev.stent.conformance`. Each start and removal is a line on stderr and in the file
//! named by `STENT_CONTAINERS_LOG` (default: `stent-conformance-containers.log` in the
//! temporary directory).
//!
//! An image other than the official one must behave like it where the provisioning relies
//! on it: PostgreSQL on port 5432 honouring `POSTGRES_PASSWORD` and
//! `POSTGRES_HOST_AUTH_METHOD=trust`, with the official image's readiness lines; Redis on
//! port 6379 logging `Ready to accept connections`, running `sh -c …` as given (the
//! cluster); a DynamoDB API on port 8000 (DynamoDB Local's), ready once it answers HTTP.
//! The cluster's nodes announce `127.0.0.1`, so it needs a daemon whose published ports are
//! on the tests' loopback (a local one).
//!
//! [testcontainers]: https://docs.rs/testcontainers

use tokio::sync::OnceCell;

#[cfg(all(feature = "containers", unix))]
mod container;
#[cfg(unix)]
pub mod local;
pub mod turn;

/// A server a conformance suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Server {
    /// PostgreSQL: `postgres://user:password@host:port/database`.
    Postgres,
    /// A standalone Redis: `redis://host:port`.
    Redis,
    /// A Redis Cluster of three masters: `redis+cluster://host:port,host:port,host:port`.
    RedisCluster,
    /// A DynamoDB API endpoint: `http://host:port`.
    DynamoDb,
}

impl Server {
    /// Every server, in a fixed order.
    pub const ALL: [Server; 4] = [
        Server::Postgres,
        Server::Redis,
        Server::RedisCluster,
        Server::DynamoDb,
    ];

    /// A short lower-case name: `postgres`, `redis`, `redis-cluster`, `dynamodb`.
    pub fn name(self) -> &'static str {
        match self {
            Server::Postgres => "postgres",
            Server::Redis => "redis",
            Server::RedisCluster => "redis-cluster",
            Server::DynamoDb => "dynamodb",
        }
    }

    /// The environment variable whose URL, when set, is used instead of a container.
    pub fn env_url(self) -> &'static str {
        match self {
            Server::Postgres => "STENT_POSTGRES_URL",
            Server::Redis => "STENT_REDIS_URL",
            Server::RedisCluster => "STENT_REDIS_CLUSTER_URL",
            Server::DynamoDb => "STENT_DYNAMODB_URL",
        }
    }

    /// The environment variable naming the image (`name[:tag]`) a container is started from.
    pub fn env_image(self) -> &'static str {
        match self {
            Server::Postgres => "STENT_POSTGRES_IMAGE",
            Server::Redis => "STENT_REDIS_IMAGE",
            Server::RedisCluster => "STENT_REDIS_CLUSTER_IMAGE",
            Server::DynamoDb => "STENT_DYNAMODB_IMAGE",
        }
    }

    /// The image used when [`env_image`](Self::env_image) is not set: the official one. The
    /// cluster runs three masters in one container of the Redis image
    /// (`STENT_REDIS_IMAGE` when set).
    pub fn default_image(self) -> &'static str {
        match self {
            Server::Postgres => "postgres:17-alpine",
            Server::Redis | Server::RedisCluster => "redis:7-alpine",
            Server::DynamoDb => "amazon/dynamodb-local:latest",
        }
    }

    /// The image a container of this server is started from.
    pub fn image(self) -> String {
        let set = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
        set(self.env_image())
            .or_else(|| match self {
                Server::RedisCluster => set(Server::Redis.env_image()),
                _ => None,
            })
            .unwrap_or_else(|| self.default_image().to_owned())
    }

    fn provisioned(self) -> &'static OnceCell<Result<String, String>> {
        static CELLS: [OnceCell<Result<String, String>>; 4] = [
            OnceCell::const_new(),
            OnceCell::const_new(),
            OnceCell::const_new(),
            OnceCell::const_new(),
        ];
        &CELLS[match self {
            Server::Postgres => 0,
            Server::Redis => 1,
            Server::RedisCluster => 2,
            Server::DynamoDb => 3,
        }]
    }
}

/// The URL of `server`: its environment variable, else a container (started once per test
/// binary, or once per nextest run), else `Err(why)` (see the [module docs](self)).
pub async fn url(server: Server) -> Result<String, String> {
    if let Some(url) = std::env::var(server.env_url())
        .ok()
        .filter(|v| !v.is_empty())
    {
        return Ok(url);
    }
    server
        .provisioned()
        .get_or_init(|| start(server))
        .await
        .clone()
}

#[cfg(all(feature = "containers", unix))]
async fn start(server: Server) -> Result<String, String> {
    container::start(server).await.map_err(|e| {
        format!(
            "{} is not set, and no container could be started: {e}",
            server.env_url()
        )
    })
}

#[cfg(not(all(feature = "containers", unix)))]
async fn start(server: Server) -> Result<String, String> {
    Err(format!(
        "{} is not set (stent-conformance was built without its `containers` feature, which \
         would start a container instead)",
        server.env_url()
    ))
}
