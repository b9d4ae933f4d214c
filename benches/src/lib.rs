//! What stent's benchmark (`examples/interleaved.rs`, run by `scripts/bench`) is made of:
//! the benchmarked functions, their arguments, fresh keys, and each backend's raw driver
//! doing the round trips stent's calls make, on the same server.
//!
//! Servers come from the same environment variables the tests use; a comparison whose
//! variable is unset panics with its name.

pub mod lean;
pub mod raw;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use stent::{
    Claim, ClaimOutcome, Durable, LeaseToken, Namespace, PostgresStore, RecordMeta, ResultStore,
    Stent,
};
use tokio::runtime::Runtime;

/// Arguments of the benchmarked functions: an order id and an amount.
pub type Args = (String, u64);

/// A benchmarked function: formats a receipt, so the function itself costs next to nothing.
pub type Fun = Durable<Args, String, Infallible>;

/// The URL in environment variable `var`; panics naming it when it is unset or empty.
///
/// A PostgreSQL URL that does not choose `sslmode` gets `sslmode=disable`: every client in
/// the benches then speaks plaintext, as tokio-postgres (the leanest client, `NoTls`) does.
/// Under sqlx's default (`prefer`) the store would encrypt each round trip against a server
/// with TLS on, and a ratio would compare TLS with plaintext.
pub fn env_url(var: &str) -> String {
    let url = match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => url.trim().to_owned(),
        _ => panic!(
            "{var} is not set: run scripts/bench (it starts the servers and sets {var}), \
             or set it to the server to benchmark"
        ),
    };
    if var != "STENT_POSTGRES_URL" || url.contains("sslmode=") {
        return url;
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}sslmode=disable")
}

/// The runtime every bench runs on: two workers, as many as the benchmark machine's cores;
/// a single-threaded one when `STENT_BENCH_RUNTIME=current_thread`, which leaves out the cost
/// of waking another thread.
pub fn runtime() -> Runtime {
    if std::env::var("STENT_BENCH_RUNTIME").is_ok_and(|v| v == "current_thread") {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("cannot start a tokio runtime");
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("cannot start a tokio runtime")
}

/// Milliseconds since the Unix epoch, for records the raw drivers write.
pub fn now_ms() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// Fresh keys: `{tag}-{n}` for n = 0, 1, 2, …
#[derive(Debug)]
pub struct Fresh {
    tag: String,
    next: AtomicU64,
}

impl Fresh {
    /// Keys tagged with `tag`.
    pub fn new(tag: impl Into<String>) -> Self {
        Fresh {
            tag: tag.into(),
            next: AtomicU64::new(0),
        }
    }

    /// The next key.
    pub fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.tag)
    }
}

/// The benchmarked pair of functions over one store.
#[derive(Debug, Clone)]
pub struct Functions {
    /// `.idempotent()`: runs once per key, replays forever after.
    pub idempotent: Fun,
    /// `.cached()`: reuses the stored result.
    pub cached: Fun,
    /// The store both functions use, for the store's own operations without the wrapper.
    pub store: Arc<dyn ResultStore>,
}

impl Functions {
    /// Wraps the receipt function both ways over `stent`'s store.
    pub fn new(stent: &Stent) -> Self {
        Functions {
            idempotent: stent.durable("bench::charge").idempotent().wrap(receipt),
            cached: stent.durable("bench::quote").cached().wrap(receipt),
            store: Arc::clone(stent.store()),
        }
    }
}

async fn receipt((id, amount): Args) -> Result<String, Infallible> {
    Ok(format!("receipt-{id}-{amount}"))
}

/// The arguments of every hit: the same small call each time.
pub fn hit_args() -> Args {
    ("ord-000042".to_owned(), 500)
}

/// The bytes stent stores for the receipt of `id`, for the raw drivers to write.
pub fn stored_value(id: &str) -> Vec<u8> {
    stent::codec::encode_value(&format!("receipt-{id}-500")).expect("a string encodes")
}

/// The store's own `claim` of `key` in the idempotency namespace, made as the idempotent
/// bench function's call makes it (a fresh token, the default lease, its name): the backend's
/// atomic primitive without the wrapper. Returns the token and the outcome.
pub async fn store_claim(store: &dyn ResultStore, key: &str) -> (LeaseToken, ClaimOutcome) {
    let token = LeaseToken::generate();
    let claim = Claim {
        token: &token,
        lease: stent::DEFAULT_LEASE,
        meta: RecordMeta {
            function: Some("bench::charge"),
            ..RecordMeta::default()
        },
    };
    let outcome = store
        .claim(Namespace::Idempotency, key, &claim)
        .await
        .expect("claim");
    (token, outcome)
}

/// The store's own claim of the fresh `key` (which must acquire it), then its completion
/// with `value`: a first call's two primitives without the wrapper.
pub async fn store_claim_complete(store: &dyn ResultStore, key: &str, value: &[u8]) {
    let (token, outcome) = store_claim(store, key).await;
    assert!(matches!(outcome, ClaimOutcome::Acquired { .. }));
    store
        .complete(Namespace::Idempotency, key, &token, value, None)
        .await
        .expect("complete");
}

/// What the raw driver of a backend does in place of stent, on the same server and on
/// the same records.
pub trait Raw: Send + Sync + 'static {
    /// One read of the record stent keeps for `key` in `ns`, as the driver alone would do
    /// it; whether the record was found.
    fn read(&self, ns: Namespace, key: &str) -> impl Future<Output = bool> + Send;

    /// Two writes of a fresh record of the idempotency namespace, as an idempotent first
    /// call makes them: the record created in progress, then completed with `value`.
    fn two_writes(&self, key: &str, value: &[u8]) -> impl Future<Output = ()> + Send;

    /// One read and one write of a fresh record of the cache namespace, as a cache miss
    /// makes them.
    fn read_then_write(&self, key: &str, value: &[u8]) -> impl Future<Output = ()> + Send;

    /// Brings the server back to the same state before each timed round of the interleaved
    /// comparisons, untimed: nothing by default. SQLite checkpoints its write-ahead log here,
    /// so that the checkpoint a round's writes would trip lands on no variant.
    fn settle(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// sqlx on the pool stent uses, against stent's own tables.
#[derive(Debug)]
pub struct PostgresRaw {
    pool: sqlx::PgPool,
    read: [String; 2],
    insert_in_progress: String,
    complete: String,
    upsert: String,
}

impl PostgresRaw {
    /// Statements against `store`'s tables, on its pool.
    pub fn new(store: &PostgresStore) -> Self {
        let table = |ns| format!("\"{}\"", store.table(ns));
        let (idem, cache) = (table(Namespace::Idempotency), table(Namespace::Cache));
        PostgresRaw {
            pool: store.pool().clone(),
            read: [idem.clone(), cache.clone()]
                .map(|t| format!("SELECT value FROM {t} WHERE key = $1")),
            insert_in_progress: format!(
                "INSERT INTO {idem} (key, state, lease_token, lease_expires_at) \
                 VALUES ($1, 'in_progress', $2, now() + interval '30 seconds')"
            ),
            complete: format!(
                "UPDATE {idem} SET state = 'completed', value = $2, lease_token = NULL, \
                 lease_expires_at = NULL, completed_at = now() WHERE key = $1"
            ),
            upsert: format!(
                "INSERT INTO {cache} (key, state, value, completed_at) \
                 VALUES ($1, 'completed', $2, now()) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                 completed_at = excluded.completed_at"
            ),
        }
    }
}

impl Raw for PostgresRaw {
    async fn read(&self, ns: Namespace, key: &str) -> bool {
        let sql = &self.read[usize::from(ns == Namespace::Cache)];
        let row: Option<(Option<Vec<u8>>,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .expect("SELECT");
        row.is_some()
    }

    async fn two_writes(&self, key: &str, value: &[u8]) {
        sqlx::query(sqlx::AssertSqlSafe(self.insert_in_progress.as_str()))
            .bind(key)
            .bind("token")
            .execute(&self.pool)
            .await
            .expect("INSERT");
        sqlx::query(sqlx::AssertSqlSafe(self.complete.as_str()))
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await
            .expect("UPDATE");
    }

    async fn read_then_write(&self, key: &str, value: &[u8]) {
        assert!(!self.read(Namespace::Cache, key).await);
        sqlx::query(sqlx::AssertSqlSafe(self.upsert.as_str()))
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await
            .expect("INSERT");
    }
}

/// Redis commands on a connection of their own (a `ConnectionManager` for one server, a
/// `ClusterConnection` for a cluster), against the record strings stent keeps.
#[derive(Clone)]
pub struct RedisRaw<C> {
    conn: C,
    prefix: String,
}

impl<C> std::fmt::Debug for RedisRaw<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRaw")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl<C> RedisRaw<C> {
    /// Raw commands on `conn` for the records of a store with key prefix `prefix`.
    pub fn new(conn: C, prefix: impl Into<String>) -> Self {
        RedisRaw {
            conn,
            prefix: prefix.into(),
        }
    }

    /// The Redis key of the record stent keeps for `key` in `ns`.
    pub fn redis_key(&self, ns: Namespace, key: &str) -> String {
        format!("{}:{}:{key}", self.prefix, ns.as_str())
    }
}

impl<C> Raw for RedisRaw<C>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn read(&self, ns: Namespace, key: &str) -> bool {
        let mut conn = self.conn.clone();
        let record: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.redis_key(ns, key))
            .query_async(&mut conn)
            .await
            .expect("GET");
        record.is_some()
    }

    async fn two_writes(&self, key: &str, value: &[u8]) {
        let mut conn = self.conn.clone();
        let rk = self.redis_key(Namespace::Idempotency, key);
        let now = now_ms();
        redis::cmd("SET")
            .arg(&rk)
            .arg(format!(
                "stent1|in_progress|0123456789abcdef0123456789abcdef|1|{now}|{}||||||0|",
                now + 30_000
            ))
            .exec_async(&mut conn)
            .await
            .expect("SET");
        let done = now_ms();
        let mut record = format!("stent1|completed||1|{now}||{done}|||||0|").into_bytes();
        record.extend_from_slice(value);
        redis::cmd("SET")
            .arg(&rk)
            .arg(record)
            .exec_async(&mut conn)
            .await
            .expect("SET");
    }

    async fn read_then_write(&self, key: &str, value: &[u8]) {
        assert!(!self.read(Namespace::Cache, key).await);
        let mut conn = self.conn.clone();
        let now = now_ms();
        let mut record = format!("stent1|completed||1|{now}||{now}|||||0|").into_bytes();
        record.extend_from_slice(value);
        redis::cmd("SET")
            .arg(self.redis_key(Namespace::Cache, key))
            .arg(record)
            .exec_async(&mut conn)
            .await
            .expect("SET");
    }
}
