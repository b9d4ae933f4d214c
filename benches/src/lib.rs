//! The harness behind stent's benchmarks: `cargo bench -p stent-benches --bench <backend>`.
//!
//! Every backend bench runs the same three groups against a real server, each next to the
//! raw driver doing the same work on the same server, in the same run:
//!
//! - `{backend}/hit`: an idempotent replay and a cache hit through the wrapper, and the raw
//!   driver's single read of the record the cache hit reads;
//! - `{backend}/miss`: an idempotent first call (claim + complete) and a cache miss (get +
//!   put), and the raw driver's two writes of a fresh record (created in progress, then
//!   completed) and its read + write of a fresh record;
//! - next to both, the store's own `claim` (replay) and `claim` + `complete` (first call)
//!   called through `ResultStore` without the wrapper, which splits each ratio into the
//!   backend primitive's cost and the wrapper's;
//! - `{backend}/contention`: 64 tasks calling one key (a first call that one task executes
//!   while the others join it, and a cache hit), and 1, 8 and 64 tasks on distinct keys
//!   (cache hits next to the raw driver's reads), as throughput.
//!
//! Servers come from the same environment variables the tests use; a bench whose variable
//! is unset panics with its name. `scripts/bench` starts the servers and runs everything.

pub mod raw;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use stent::{
    Claim, ClaimOutcome, Durable, LeaseToken, Namespace, PostgresStore, RecordMeta, RedisStore,
    ResultStore, Status, Stent,
};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// Arguments of the benchmarked functions: an order id and an amount.
pub type Args = (String, u64);

/// A benchmarked function: formats a receipt, so the function itself costs next to nothing.
pub type Fun = Durable<Args, String, Infallible>;

/// Concurrency levels of the distinct-key throughput benches.
pub const CONCURRENCY: [usize; 3] = [1, 8, 64];

/// Tasks calling one key at once.
pub const ONE_KEY_TASKS: usize = 64;

/// The URL in environment variable `var`; panics naming it when it is unset or empty.
pub fn env_url(var: &str) -> String {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => url.trim().to_owned(),
        _ => panic!(
            "{var} is not set: run scripts/bench (it starts the servers and sets {var}), \
             or set it to the server to benchmark"
        ),
    }
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

/// Criterion's settings for every bench; `--warm-up-time`, `--measurement-time` and
/// `--sample-size` on the command line override them.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

/// A tag unique to this process, so that fresh keys never meet records of an earlier run.
pub fn run_tag() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{:x}", nanos & 0xffff_ffff_ffff)
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

/// One backend: a store wrapped in a [`Stent`], and the raw driver next to it.
#[derive(Debug)]
pub struct Backend<R> {
    /// The group prefix: `sqlite`, `postgres`, `redis`, `redis_cluster`, `dynamodb`.
    pub name: &'static str,
    /// The store under test.
    pub stent: Stent,
    /// The raw driver on the same server.
    pub raw: R,
    /// A server that serves few requests per second (moto): fewer samples, flat sampling.
    pub slow: bool,
}

/// Runs the hit, miss and contention groups of `backend`, clearing the store's records
/// before and after.
pub fn bench_backend<R: Raw>(c: &mut Criterion, rt: &Runtime, backend: Backend<R>) {
    let Backend {
        name,
        stent,
        raw,
        slow,
    } = backend;
    let raw = Arc::new(raw);
    let f = Functions::new(&stent);
    clear(rt, &stent);
    rt.block_on(seed(&f, raw.as_ref()));

    let tag = run_tag();
    bench_hit(c, rt, name, slow, &f, &raw);
    bench_miss(c, rt, name, slow, &f, &raw, &tag);
    bench_contention(c, rt, name, slow, &f, &raw, &tag);

    clear(rt, &stent);
}

fn clear(rt: &Runtime, stent: &Stent) {
    rt.block_on(async {
        for ns in Namespace::ALL {
            stent
                .store()
                .clear(ns)
                .await
                .unwrap_or_else(|e| panic!("cannot clear the {ns} records: {e}"));
        }
    });
}

/// The key of distinct-key caller `i`.
fn distinct_args(i: usize) -> Args {
    (format!("ord-d{i:03}"), 500)
}

/// Stores the records the hit and contention benches read, and checks that stent and the
/// raw driver both see them.
async fn seed<R: Raw>(f: &Functions, raw: &R) {
    for fun in [&f.idempotent, &f.cached] {
        fun.call(hit_args()).await.expect("seeding the hit record");
        let again = fun.call_traced(hit_args()).await.expect("reading it back");
        assert!(
            matches!(again.outcome.status, Status::Replayed | Status::CacheHit),
            "the seeded record is not served from the store: {:?}",
            again.outcome
        );
    }
    for i in 0..*CONCURRENCY.iter().max().unwrap_or(&1) {
        f.cached.call(distinct_args(i)).await.expect("seeding");
    }
    for (fun, ns) in [
        (&f.cached, Namespace::Cache),
        (&f.idempotent, Namespace::Idempotency),
    ] {
        let key = fun.key_for(&hit_args()).expect("a key");
        assert!(
            raw.read(ns, &key).await,
            "the raw driver does not find {key:?} in {ns}"
        );
    }
}

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
    part: &str,
    slow: bool,
) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(format!("{name}/{part}"));
    if slow {
        g.sample_size(10).sampling_mode(SamplingMode::Flat);
    }
    g
}

fn bench_hit<R: Raw>(
    c: &mut Criterion,
    rt: &Runtime,
    name: &str,
    slow: bool,
    f: &Functions,
    raw: &Arc<R>,
) {
    let mut g = group(c, name, "hit", slow);
    let idem = &f.idempotent;
    g.bench_function("idempotent_replay", |b| {
        b.to_async(rt)
            .iter(|| async move { idem.call(hit_args()).await.expect("replay") });
    });
    let cached = &f.cached;
    g.bench_function("cache_hit", |b| {
        b.to_async(rt)
            .iter(|| async move { cached.call(hit_args()).await.expect("cache hit") });
    });
    // The store's claim alone, as the replay makes it: what the backend's atomic primitive
    // costs next to the raw read, and what the wrapper adds around it.
    let idem_key = idem.key_for(&hit_args()).expect("a key");
    let (store, idem_key) = (&f.store, idem_key.as_str());
    g.bench_function("store_claim", |b| {
        b.to_async(rt).iter(|| async move {
            let (_, outcome) = store_claim(store.as_ref(), idem_key).await;
            assert!(matches!(outcome, ClaimOutcome::Completed(_)));
        });
    });
    let key = cached.key_for(&hit_args()).expect("a key");
    let (raw, key) = (raw.as_ref(), key.as_str());
    g.bench_function("raw_read", |b| {
        b.to_async(rt)
            .iter(|| async move { assert!(raw.read(Namespace::Cache, key).await) });
    });
    g.finish();
}

fn bench_miss<R: Raw>(
    c: &mut Criterion,
    rt: &Runtime,
    name: &str,
    slow: bool,
    f: &Functions,
    raw: &Arc<R>,
    tag: &str,
) {
    let mut g = group(c, name, "miss", slow);
    let fresh = &Fresh::new(format!("miss-{tag}"));
    let idem = &f.idempotent;
    g.bench_function("idempotent_first_call", |b| {
        b.to_async(rt).iter(|| async move {
            let r = idem.call_traced((fresh.next(), 500)).await.expect("call");
            debug_assert_eq!(r.outcome.status, Status::Executed);
            r.value
        });
    });
    let cached = &f.cached;
    g.bench_function("cache_miss", |b| {
        b.to_async(rt).iter(|| async move {
            let r = cached.call_traced((fresh.next(), 500)).await.expect("call");
            debug_assert_eq!(r.outcome.status, Status::Executed);
            r.value
        });
    });
    // The store's claim and completion alone, as the first call makes them.
    let store = &f.store;
    g.bench_function("store_claim_complete", |b| {
        b.to_async(rt).iter(|| async move {
            let key = format!("store|{}", fresh.next());
            store_claim_complete(store.as_ref(), &key, &stored_value(&key)).await;
        });
    });
    let raw = raw.as_ref();
    g.bench_function("raw_two_writes", |b| {
        b.to_async(rt).iter(|| async move {
            let id = fresh.next();
            raw.two_writes(&format!("raw|{id}"), &stored_value(&id))
                .await;
        });
    });
    g.bench_function("raw_read_write", |b| {
        b.to_async(rt).iter(|| async move {
            let id = fresh.next();
            raw.read_then_write(&format!("raw|{id}"), &stored_value(&id))
                .await;
        });
    });
    g.finish();
}

fn bench_contention<R: Raw>(
    c: &mut Criterion,
    rt: &Runtime,
    name: &str,
    slow: bool,
    f: &Functions,
    raw: &Arc<R>,
    tag: &str,
) {
    let mut g = group(c, name, "contention", slow);
    g.sampling_mode(SamplingMode::Flat);
    let fresh = &Fresh::new(format!("herd-{tag}"));

    g.throughput(Throughput::Elements(ONE_KEY_TASKS as u64));
    let idem = &f.idempotent;
    g.bench_function(BenchmarkId::new("one_key_first_call", ONE_KEY_TASKS), |b| {
        b.to_async(rt).iter(|| async move {
            let args = (fresh.next(), 500);
            let mut tasks = JoinSet::new();
            for _ in 0..ONE_KEY_TASKS {
                let (fun, args) = (idem.clone(), args.clone());
                tasks.spawn(async move { fun.call(args).await.expect("call") });
            }
            tasks.join_all().await
        });
    });
    let cached = &f.cached;
    g.bench_function(BenchmarkId::new("one_key_hit", ONE_KEY_TASKS), |b| {
        b.to_async(rt).iter(|| async move {
            let mut tasks = JoinSet::new();
            for _ in 0..ONE_KEY_TASKS {
                let fun = cached.clone();
                tasks.spawn(async move { fun.call(hit_args()).await.expect("call") });
            }
            tasks.join_all().await
        });
    });

    let keys: Vec<Arc<str>> = (0..*CONCURRENCY.iter().max().unwrap_or(&1))
        .map(|i| cached.key_for(&distinct_args(i)).expect("a key").into())
        .collect();
    for n in CONCURRENCY {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("distinct_hits", n), |b| {
            b.to_async(rt).iter(|| async move {
                let mut tasks = JoinSet::new();
                for i in 0..n {
                    let fun = cached.clone();
                    tasks.spawn(async move { fun.call(distinct_args(i)).await.expect("call") });
                }
                tasks.join_all().await
            });
        });
        let keys = &keys;
        g.bench_function(BenchmarkId::new("raw_distinct_reads", n), |b| {
            b.to_async(rt).iter(|| async move {
                let mut tasks = JoinSet::new();
                for key in &keys[..n] {
                    let (raw, key) = (Arc::clone(raw), Arc::clone(key));
                    tasks.spawn(async move { assert!(raw.read(Namespace::Cache, &key).await) });
                }
                tasks.join_all().await
            });
        });
    }
    g.finish();
}

/// Distinct-key throughput, drift-free: cache hits through `f` next to `raw`'s reads of the
/// same records, by 1 and by 64 tasks at once, the four variants alternating in rounds (as in
/// the `interleaved` example). Prints each variant's median calls per second and the growth
/// from 1 to 64 tasks of both, the figure the contention target compares.
pub async fn distinct_throughput<R: Raw>(f: &Functions, raw: Arc<R>) {
    const ROUNDS: usize = 30;
    /// Calls per round and variant: enough to outlast a scheduler tick.
    const CALLS: usize = 1280;
    let most = *CONCURRENCY.iter().max().unwrap_or(&1);
    for i in 0..most {
        f.cached.call(distinct_args(i)).await.expect("seeding");
    }
    let keys: Arc<[Arc<str>]> = (0..most)
        .map(|i| f.cached.key_for(&distinct_args(i)).expect("a key").into())
        .collect();
    assert!(
        raw.read(Namespace::Cache, &keys[0]).await,
        "the raw driver finds no record"
    );
    let levels = [1, most];
    let names = ["stent cache hits", "store gets", "raw reads"];
    // [variant][level]: calls per second of each round.
    let mut rates = vec![vec![Vec::new(); levels.len()]; names.len()];
    for _ in 0..ROUNDS {
        for (l, &n) in levels.iter().enumerate() {
            for (v, rate) in rates.iter_mut().enumerate() {
                let started = std::time::Instant::now();
                for _ in 0..CALLS / n {
                    let mut tasks = JoinSet::new();
                    for (i, key) in keys[..n].iter().enumerate() {
                        match v {
                            0 => {
                                let fun = f.cached.clone();
                                tasks.spawn(async move {
                                    fun.call(distinct_args(i)).await.expect("call");
                                });
                            }
                            1 => {
                                let (store, key) = (Arc::clone(&f.store), Arc::clone(key));
                                tasks.spawn(async move {
                                    let found = store.get(Namespace::Cache, &key).await;
                                    assert!(found.expect("get").is_some());
                                });
                            }
                            _ => {
                                let (raw, key) = (Arc::clone(&raw), Arc::clone(key));
                                tasks.spawn(async move {
                                    assert!(raw.read(Namespace::Cache, &key).await);
                                });
                            }
                        }
                    }
                    tasks.join_all().await;
                }
                rate[l].push(CALLS as f64 / started.elapsed().as_secs_f64());
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut growth = vec![0.0; names.len()];
    for (v, name) in names.into_iter().enumerate() {
        let one = median(&mut rates[v][0]);
        let all = median(&mut rates[v][1]);
        growth[v] = all / one;
        println!(
            "{name:>20}: 1 task {one:>9.0}/s, {most} tasks {all:>9.0}/s, {most} ÷ 1 = {:.2}",
            growth[v]
        );
    }
    println!(
        "{:>20}: stent's growth ÷ the raw driver's = {:.2} (target ≥ 0.85)",
        "",
        growth[0] / growth[names.len() - 1]
    );
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

/// A standalone server of the Redis protocol (the URL in the environment variable `env`)
/// through stent, next to plain commands on a connection of the same kind
/// (`ConnectionManager`), as bench `name`; keys under `prefix`.
pub fn bench_standalone_redis(
    c: &mut Criterion,
    env: &str,
    name: &'static str,
    prefix: &'static str,
) {
    let url = env_url(env);
    let rt = runtime();
    let (store, conn) = rt.block_on(async {
        let store = RedisStore::builder()
            .url(url.as_str())
            .prefix(prefix)
            .build()
            .await
            .unwrap_or_else(|e| panic!("connecting stent to {env}: {e}"));
        let client = redis::Client::open(url.as_str()).unwrap_or_else(|e| panic!("{env}: {e}"));
        let conn = client
            .get_connection_manager()
            .await
            .unwrap_or_else(|e| panic!("connecting to {env}: {e}"));
        (store, conn)
    });
    let backend = Backend {
        name,
        stent: Stent::new(store),
        raw: RedisRaw::new(conn, prefix),
        slow: false,
    };
    bench_backend(c, &rt, backend);
}
