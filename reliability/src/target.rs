//! Which store a scenario runs against, in a form a child process can be handed.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use stent_core::{
    Capabilities, Claim, ClaimOutcome, LeaseToken, ListQuery, Namespace, Page, Record, RecordMeta,
    Result, ResultStore, Timestamp,
};
use stent_dynamodb::DynamoDbStore;
use stent_postgres::PostgresStore;
use stent_redis::RedisStore;
use stent_sqlite::SqliteStore;
use tokio::sync::Semaphore;

/// The table DynamoDB scenarios use (each on a server of its own).
pub const DYNAMODB_TABLE: &str = "stent_reliability";

/// A backend of the fault matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Backend {
    /// A SQLite file shared by the processes.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// One Redis server.
    Redis,
    /// A Redis Cluster.
    RedisCluster,
    /// The DynamoDB API (moto on this machine).
    DynamoDb,
}

impl Backend {
    /// A short lower-case name, as used in scope names and figures.
    pub const fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Redis => "redis",
            Backend::RedisCluster => "redis-cluster",
            Backend::DynamoDb => "dynamodb",
        }
    }
}

/// Where a store lives and the part of it one scenario owns.
///
/// Serializable, so a parent hands it to its child processes, which open stores of
/// their own from it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Target {
    /// The backend.
    pub backend: Backend,
    /// The database file (SQLite), server URL (PostgreSQL, Redis, `redis+cluster://` for a
    /// cluster) or endpoint (DynamoDB).
    pub url: String,
    /// The scenario's own part of the store: table prefix (SQLite), schema (PostgreSQL),
    /// key prefix (Redis, DynamoDB).
    pub scope: String,
    /// How long an operation may wait for the server (connection, reply), when not the
    /// backend's default: scenarios that stop the server keep it short, so calls fail
    /// promptly and retryably instead of waiting out the outage.
    pub timeout_ms: Option<u64>,
    /// Connections per process: the pool size of the SQL backends; for DynamoDB, how many
    /// requests one process has in flight at once (default: the store's own limits).
    pub connections: Option<u32>,
    /// How many times the DynamoDB client tries one request (default: the store's).
    pub attempts: Option<u32>,
}

impl Target {
    /// A target with the store's default timeouts and pool size.
    pub fn new(backend: Backend, url: impl Into<String>, scope: impl Into<String>) -> Self {
        Target {
            backend,
            url: url.into(),
            scope: scope.into(),
            timeout_ms: None,
            connections: None,
            attempts: None,
        }
    }

    /// Sets [`timeout_ms`](Self::timeout_ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Sets [`connections`](Self::connections).
    pub fn connections(mut self, n: u32) -> Self {
        self.connections = Some(n);
        self
    }

    /// Sets [`attempts`](Self::attempts).
    pub fn attempts(mut self, n: u32) -> Self {
        self.attempts = Some(n);
        self
    }

    fn timeout_or(&self, default: Duration) -> Duration {
        self.timeout_ms.map_or(default, Duration::from_millis)
    }

    /// Opens a store on the target, as an application would (SQL backends create their
    /// schema and tables if missing).
    ///
    /// # Errors
    ///
    /// Whatever the backend's builder returns: the server cannot be reached, the
    /// configuration is invalid.
    pub async fn open(&self) -> Result<Arc<dyn ResultStore>> {
        Ok(match self.backend {
            Backend::Sqlite => Arc::new(self.sqlite().await?),
            Backend::Postgres => Arc::new(self.postgres().await?),
            Backend::Redis | Backend::RedisCluster => {
                let mut b = RedisStore::builder()
                    .url(self.url.as_str())
                    .prefix(self.scope.as_str());
                if let Some(t) = self.timeout_ms.map(Duration::from_millis) {
                    b = b.connect_timeout(t).response_timeout(Some(t));
                }
                Arc::new(b.build().await?)
            }
            Backend::DynamoDb => {
                let store = self.dynamodb().await?;
                match self.connections {
                    Some(n) => Arc::new(Limited {
                        store,
                        permits: Semaphore::new(n as usize),
                    }),
                    None => Arc::new(store),
                }
            }
        })
    }

    /// Opens the SQLite store of a [`Backend::Sqlite`] target, as [`open`](Self::open)
    /// does, as its own type (what [`wrap_tx`](stent_core::DurableBuilder::wrap_tx) needs).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub async fn sqlite(&self) -> Result<SqliteStore> {
        let mut b = SqliteStore::builder()
            .path(PathBuf::from(&self.url))
            .table_prefix(self.scope.as_str())?
            .busy_timeout(self.timeout_or(Duration::from_secs(30)));
        if let Some(n) = self.connections {
            b = b.max_connections(n);
        }
        b.build().await
    }

    /// Opens the PostgreSQL store of a [`Backend::Postgres`] target, as
    /// [`sqlite`](Self::sqlite) does.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub async fn postgres(&self) -> Result<PostgresStore> {
        let mut b = PostgresStore::builder()
            .url(self.url.as_str())
            .schema(self.scope.as_str())?
            .acquire_timeout(self.timeout_or(Duration::from_secs(30)));
        if let Some(n) = self.connections {
            b = b.max_connections(n);
        }
        b.build().await
    }

    /// The SQL name of the scenario's effects table ([`EffectsStore`]): `"{schema}".effects`
    /// on PostgreSQL, `"{prefix}effects"` on SQLite (the scope is a validated identifier).
    ///
    /// # Panics
    ///
    /// On the other backends.
    ///
    /// [`EffectsStore`]: crate::effects::EffectsStore
    pub fn effects_table(&self) -> String {
        match self.backend {
            Backend::Postgres => format!("\"{}\".effects", self.scope),
            Backend::Sqlite => format!("\"{}effects\"", self.scope),
            other => panic!("{other:?} keeps no SQL tables"),
        }
    }

    async fn dynamodb(&self) -> Result<DynamoDbStore> {
        let mut b = DynamoDbStore::builder()
            .endpoint_url(self.url.as_str())?
            .table(DYNAMODB_TABLE)?
            .key_prefix(self.scope.as_str())?
            .region("us-east-1")
            .credentials("test", "test");
        if let Some(t) = self.timeout_ms.map(Duration::from_millis) {
            b = b.timeout(t);
        }
        if let Some(n) = self.attempts {
            b = b.max_attempts(n);
        }
        b.build().await
    }

    /// Makes the target ready for a scenario's processes: opens it once (which creates
    /// SQL schemas and tables) and creates the DynamoDB table if it is missing, as an
    /// operator deploying the application would.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open), or the table cannot be created.
    pub async fn prepare(&self) -> Result<()> {
        match self.backend {
            Backend::DynamoDb => self.dynamodb().await?.migrate().await,
            _ => self.open().await.map(drop),
        }
    }

    /// Removes what the scenario left in a shared server: the PostgreSQL schema, the
    /// Redis keys under the prefix. SQLite files and DynamoDB servers belong to the
    /// scenario and go with it.
    ///
    /// # Errors
    ///
    /// The server cannot be reached.
    pub async fn cleanup(&self) -> Result<()> {
        match self.backend {
            Backend::Postgres => {
                use sqlx::Connection as _;
                let unavailable = |e: sqlx::Error| {
                    stent_core::Error::new(stent_core::ErrorKind::Unavailable, e.to_string())
                };
                let mut conn = sqlx::PgConnection::connect(&self.url)
                    .await
                    .map_err(unavailable)?;
                // The schema is a validated plain identifier (see `PostgresStoreBuilder::schema`).
                let drop = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.scope);
                sqlx::query(sqlx::AssertSqlSafe(drop))
                    .execute(&mut conn)
                    .await
                    .map_err(unavailable)?;
                conn.close().await.map_err(unavailable)
            }
            Backend::Redis | Backend::RedisCluster => {
                let store = self.open().await?;
                for ns in Namespace::ALL {
                    store.clear(ns).await?;
                }
                Ok(())
            }
            Backend::Sqlite | Backend::DynamoDb => Ok(()),
        }
    }
}

/// A store whose operations wait for one of a fixed number of permits: what a connection
/// pool does for the SQL backends, for an HTTP store.
#[derive(Debug)]
struct Limited<S> {
    store: S,
    permits: Semaphore,
}

/// Operations sent by [`Limited`] stores in this process.
static OPERATIONS: AtomicU64 = AtomicU64::new(0);

/// How many operations this process's request-limited stores (DynamoDB with
/// [`Target::connections`]) have sent to the server.
pub fn limited_operations() -> u64 {
    OPERATIONS.load(Ordering::Relaxed)
}

impl<S> Limited<S> {
    async fn permit(&self) -> tokio::sync::SemaphorePermit<'_> {
        let permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        OPERATIONS.fetch_add(1, Ordering::Relaxed);
        permit
    }
}

#[async_trait]
impl<S: ResultStore> ResultStore for Limited<S> {
    fn capabilities(&self) -> Capabilities {
        self.store.capabilities()
    }
    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Record>> {
        let _p = self.permit().await;
        self.store.get(ns, key).await
    }
    async fn claim(&self, ns: Namespace, key: &str, claim: &Claim<'_>) -> Result<ClaimOutcome> {
        let _p = self.permit().await;
        self.store.claim(ns, key, claim).await
    }
    async fn renew(
        &self,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        lease: Duration,
    ) -> Result<Timestamp> {
        let _p = self.permit().await;
        self.store.renew(ns, key, token, lease).await
    }
    async fn complete(
        &self,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()> {
        let _p = self.permit().await;
        self.store.complete(ns, key, token, value, ttl).await
    }
    async fn release(&self, ns: Namespace, key: &str, token: &LeaseToken) -> Result<bool> {
        let _p = self.permit().await;
        self.store.release(ns, key, token).await
    }
    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        meta: RecordMeta<'_>,
    ) -> Result<()> {
        let _p = self.permit().await;
        self.store.put(ns, key, value, ttl, meta).await
    }
    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool> {
        let _p = self.permit().await;
        self.store.delete(ns, key).await
    }
    async fn list(&self, ns: Namespace, query: &ListQuery) -> Result<Page> {
        let _p = self.permit().await;
        self.store.list(ns, query).await
    }
    async fn clear(&self, ns: Namespace) -> Result<u64> {
        let _p = self.permit().await;
        self.store.clear(ns).await
    }
    async fn purge_expired(&self, ns: Namespace, limit: usize) -> Result<u64> {
        let _p = self.permit().await;
        self.store.purge_expired(ns, limit).await
    }
}
