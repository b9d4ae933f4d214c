//! How stent's cost grows with the work (BENCHMARKS.md, "Growth"):
//!
//! - `records`: a replay (of a key picked at random among all) and a first call, p50 and p99,
//!   with 10³ to 10⁷ completed records in the table (10⁶ on Redis, 10⁴ on moto);
//! - `values`: a replay and a first call of a function whose result is 64 B to 4 MiB, each
//!   call next to the leanest client moving the same bytes (rusqlite, tokio-postgres,
//!   redis-rs), alternating call by call; on PostgreSQL also next to sqlx, the store's
//!   driver, on its pool.
//!
//! - `concurrency`: calls a second at 1 to 256 tasks, first calls on distinct keys and
//!   replays of one hot key, next to the raw driver's same round trips;
//! - `processes`: the same at 1, 2, 4 and 8 processes of 16 tasks each;
//! - `purge`: 10⁶ expired records purged as the CLI's `purge` does (batches of 1,000 on the
//!   SQL stores, one sweep on Redis), each call timed, with replays and first calls running alongside, next to the same calls
//!   without the purge;
//! - `memory`: resident memory around 10⁶ distinct cached calls on MemoryStore, twice.
//!
//! ```text
//! cargo run --release -p stent-benches --example growth -- records [sqlite|postgres|redis|dynamodb]
//! cargo run --release -p stent-benches --example growth -- values [sqlite|postgres|redis]
//! cargo run --release -p stent-benches --example growth -- concurrency [sqlite|postgres|redis]
//! cargo run --release -p stent-benches --example growth -- processes [sqlite|postgres|redis]
//! cargo run --release -p stent-benches --example growth -- purge [sqlite|postgres|redis]
//! cargo run --release -p stent-benches --example growth -- memory
//! cargo run --release -p stent-benches --example growth -- plot
//! ```
//!
//! Each run writes `benches/growth/<what>-<backend>.csv`; `plot` renders every CSV there as
//! `benches/growth/records.svg` and `benches/growth/values.svg`.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plotters::prelude::*;
use redis::AsyncCommands as _;
use stent::{
    Durable, Namespace, PostgresStore, RecordMeta, RedisStore, ResultStore, SqliteStore, Stent,
};
use stent_benches::lean::{PostgresLean, SqliteLean};
use stent_benches::raw::dynamodb_store;
use stent_benches::{PostgresRaw, Raw, RedisRaw, env_url, now_ms, runtime, stored_value};

/// The benchmarked function's name: every record written here is one of its keys.
const FUNCTION: &str = "bench::growth";

/// A record's key, as stent derives it from the arguments `("g-{i}", 500)`.
fn key(i: u64) -> String {
    format!("{FUNCTION}|None|[\"g-{i}\",500]")
}

type Growth = Durable<(String, u64), String, Infallible>;

fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    let which = std::env::args().nth(2).unwrap_or_default();
    let backends: Vec<&str> = match which.as_str() {
        "" => vec!["sqlite", "postgres", "redis", "dynamodb"],
        one => vec![one],
    };
    let rt = runtime();
    match what.as_str() {
        "records" => {
            for b in backends {
                rt.block_on(records(b));
            }
        }
        "values" => {
            for b in backends.into_iter().filter(|b| *b != "dynamodb") {
                rt.block_on(values(b));
            }
        }
        "memory" => rt.block_on(memory()),
        "processes" => {
            for b in backends.into_iter().filter(|b| *b != "dynamodb") {
                rt.block_on(processes(b));
            }
        }
        "process" => {
            let arg = |i| std::env::args().nth(i).expect("the parent's arguments");
            let start = arg(5).parse().expect("a start time");
            rt.block_on(process(&which, &arg(3), &arg(4), start, Path::new(&arg(6))));
        }
        "purge" => {
            for b in backends.into_iter().filter(|b| *b != "dynamodb") {
                rt.block_on(purge(b));
            }
        }
        "concurrency" => {
            for b in backends.into_iter().filter(|b| *b != "dynamodb") {
                rt.block_on(concurrency(b));
            }
        }
        "plot" => plot(),
        _ => panic!("which growth? records, values, concurrency, purge, memory or plot"),
    }
}

/// Where the CSV files and plots go.
fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("growth");
    std::fs::create_dir_all(&dir).expect("benches/growth");
    dir
}

/// The 50th and 99th percentiles of `v`, in microseconds.
fn percentiles(v: &mut [Duration]) -> (f64, f64) {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    (at(0.50), at(0.99))
}

/// A generator of keys picked at random (xorshift: the same sequence on every run).
struct Pick(u64);

impl Pick {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A store of each backend, emptied, for the growth runs.
async fn store(backend: &str) -> (Arc<dyn ResultStore>, Option<tempfile::TempDir>) {
    match backend {
        "sqlite" => {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let store = SqliteStore::open(dir.path().join("growth.db"))
                .await
                .expect("SQLite");
            (Arc::new(store), Some(dir))
        }
        "postgres" => {
            let store = growth_postgres().await;
            store.clear(Namespace::Idempotency).await.expect("clear");
            (Arc::new(store), None)
        }
        "redis" => {
            let store = RedisStore::builder()
                .url(env_url("STENT_REDIS_URL"))
                .prefix("stent-growth")
                .build()
                .await
                .expect("Redis");
            store.clear(Namespace::Idempotency).await.expect("clear");
            (Arc::new(store), None)
        }
        "dynamodb" => {
            let store = dynamodb_store().await;
            store.clear(Namespace::Idempotency).await.expect("clear");
            (Arc::new(store), None)
        }
        _ => panic!("which backend? sqlite, postgres, redis or dynamodb"),
    }
}

/// A PostgreSQL store on the `growth_` tables.
async fn growth_postgres() -> PostgresStore {
    let b = PostgresStore::builder().url(env_url("STENT_POSTGRES_URL"));
    let b = b.table_prefix("growth_").expect("a table prefix");
    b.build().await.expect("PostgreSQL")
}

/// Adds the completed records `from..to` of [`FUNCTION`], in bulk: one statement on the SQL
/// servers, pipelined `SET`s on Redis, the store's `put` (16 at a time) on moto. `expired`
/// records expired a minute ago (on Redis, the server deletes them an hour later); the
/// others never expire.
async fn fill(
    backend: &str,
    store: &Arc<dyn ResultStore>,
    dir: Option<&Path>,
    (from, to): (u64, u64),
    expired: bool,
) {
    let value = stored_value("growth");
    let expires_ms = expired.then(|| now_ms() - 60_000);
    match backend {
        "sqlite" => {
            let conn = rusqlite::Connection::open(dir.expect("a file").join("growth.db"))
                .expect("opening the file");
            conn.busy_timeout(Duration::from_secs(30))
                .expect("busy timeout");
            conn.execute(
                "WITH RECURSIVE s(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < ?2) \
                 INSERT INTO idempotency \
                 (key, state, value, attempt, created_ms, completed_ms, expires_ms) \
                 SELECT 'bench::growth|None|[\"g-' || i || '\",500]', 'completed', ?3, 1, ?4, ?4, ?5 \
                 FROM s",
                (from as i64, to as i64, &value, now_ms(), expires_ms),
            )
            .expect("INSERT");
        }
        "postgres" => {
            let url = env_url("STENT_POSTGRES_URL");
            let pool = sqlx::PgPool::connect(&url).await.expect("PostgreSQL");
            sqlx::query(
                "INSERT INTO growth_idempotency \
                 (key, state, value, attempt, completed_at, expires_at) \
                 SELECT format('bench::growth|None|[\"g-%s\",500]', i), 'completed', $3, 1, now(), \
                 to_timestamp($4::int8 / 1000.0) \
                 FROM generate_series($1::int8, $2::int8 - 1) i",
            )
            .bind(from as i64)
            .bind(to as i64)
            .bind(&value)
            .bind(expires_ms)
            .execute(&pool)
            .await
            .expect("INSERT");
            sqlx::query("VACUUM ANALYZE growth_idempotency")
                .execute(&pool)
                .await
                .expect("VACUUM");
        }
        "redis" => {
            let client = redis::Client::open(env_url("STENT_REDIS_URL")).expect("a URL");
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("Redis");
            let now = now_ms();
            let (expiry, purge) = match expires_ms {
                Some(at) => (format!("{at}|{}", now + 3_600_000), Some(now + 3_600_000)),
                None => ("|".to_owned(), None),
            };
            let mut record = format!("stent1|completed||1|{now}||{now}|{expiry}|||0|").into_bytes();
            record.extend_from_slice(&value);
            let mut i = from;
            while i < to {
                let mut pipe = redis::pipe();
                for j in i..to.min(i + 10_000) {
                    let key = format!("stent-growth:idempotency:{}", key(j));
                    match purge {
                        Some(at) => pipe.cmd("SET").arg(key).arg(&record).arg("PXAT").arg(at),
                        None => pipe.set(key, &record),
                    }
                    .ignore();
                }
                pipe.exec_async(&mut conn).await.expect("SET");
                i += 10_000;
            }
            let _: () = conn.set("stent-growth:filled", to).await.expect("SET");
        }
        _ => {
            assert!(
                !expired,
                "expired records are filled on the SQL servers and Redis"
            );
            let meta = RecordMeta {
                function: Some(FUNCTION),
                ..RecordMeta::default()
            };
            let mut tasks = tokio::task::JoinSet::new();
            for i in from..to {
                if tasks.len() >= 16 {
                    tasks.join_next().await;
                }
                let (store, value) = (Arc::clone(store), value.clone());
                tasks.spawn(async move {
                    let key = key(i);
                    let put = store.put(Namespace::Idempotency, &key, &value, None, meta);
                    put.await.expect("put");
                });
            }
            tasks.join_all().await;
        }
    }
}

async fn growth_function(store: Arc<dyn ResultStore>) -> Growth {
    let stent = Stent::new(store);
    let f = stent
        .durable(FUNCTION)
        .idempotent()
        .wrap(|(id, _): (String, u64)| async move { Ok::<_, Infallible>(format!("receipt-{id}")) });
    let derived = f.key_for(&("g-7".to_owned(), 500)).expect("a key");
    assert_eq!(
        derived.as_str(),
        key(7),
        "the bulk records' keys are the function's"
    );
    f
}

/// Replays and first calls at each number of records; writes `records-<backend>.csv`.
async fn records(backend: &str) {
    let sizes: &[u64] = match backend {
        "redis" => &[1_000, 100_000, 1_000_000],
        "dynamodb" => &[1_000, 10_000],
        _ => &[1_000, 100_000, 1_000_000, 10_000_000],
    };
    let calls = if backend == "dynamodb" { 200 } else { 2_000 };
    let (store, dir) = store(backend).await;
    let f = growth_function(Arc::clone(&store)).await;
    // The leanest client beside stent, on the same tables and keys: what the table's size
    // costs the driver itself (moto has none).
    let lean = match backend {
        "dynamodb" => None,
        _ => Some(lean(backend, dir.as_ref().map(|d| d.path())).await),
    };
    let value = stored_value("growth");
    let mut csv = String::from("backend,records,call,p50_us,p99_us\n");
    let mut filled = 0;
    let mut pick = Pick(0x9e37_79b9_7f4a_7c15);
    for &n in sizes {
        let started = Instant::now();
        fill(
            backend,
            &store,
            dir.as_ref().map(|d| d.path()),
            (filled, n),
            false,
        )
        .await;
        filled = n;
        eprintln!("{backend}: {n} records in {:.1?}", started.elapsed());
        let (mut replays, mut reads) = (Vec::with_capacity(calls), Vec::with_capacity(calls));
        for _ in 0..calls {
            let i = pick.below(n);
            let t = Instant::now();
            let v = f.call((format!("g-{i}"), 500)).await.expect("replay");
            replays.push(t.elapsed());
            assert_eq!(v, "receipt-growth-500", "a replay of a bulk record");
            // Another record at random, so that neither side reads a page the other loaded.
            if let Some(lean) = &lean {
                let i = pick.below(n);
                let t = Instant::now();
                assert!(
                    lean.read(&key(i)).await,
                    "the leanest client reads a bulk record"
                );
                reads.push(t.elapsed());
            }
        }
        let (mut firsts, mut writes) = (Vec::with_capacity(calls / 2), Vec::new());
        for j in 0..calls / 2 {
            let t = Instant::now();
            f.call((format!("fresh-{n}-{j}"), 500))
                .await
                .expect("first call");
            firsts.push(t.elapsed());
            if let Some(lean) = &lean {
                let t = Instant::now();
                lean.two_writes(&format!("raw-{n}-{j}"), &value).await;
                writes.push(t.elapsed());
            }
        }
        for (call, v) in [
            ("replay", &mut replays),
            ("first call", &mut firsts),
            ("raw read", &mut reads),
            ("raw two writes", &mut writes),
        ] {
            if v.is_empty() {
                continue;
            }
            let (p50, p99) = percentiles(v);
            println!("{backend:>9} {n:>9} records {call:>10}: p50 {p50:8.1} µs  p99 {p99:8.1} µs");
            csv += &format!("{backend},{n},{call},{p50:.1},{p99:.1}\n");
        }
    }
    std::fs::write(out_dir().join(format!("records-{backend}.csv")), csv).expect("CSV");
    store.clear(Namespace::Idempotency).await.expect("clear");
}

/// The leanest client of `backend`, on the same tables as `store`.
async fn lean(backend: &str, dir: Option<&Path>) -> Box<dyn LeanRaw> {
    match backend {
        "sqlite" => {
            let file = SqliteStore::open(dir.expect("a file").join("growth.db")).await;
            Box::new(SqliteLean::new(&file.expect("SQLite")))
        }
        "postgres" => {
            let pg = growth_postgres().await;
            Box::new(PostgresLean::new(&pg).await)
        }
        _ => {
            let client = redis::Client::open(env_url("STENT_REDIS_URL")).expect("a URL");
            let conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("Redis");
            Box::new(RedisRaw::new(conn, "stent-growth"))
        }
    }
}

/// [`Raw`] as an object: the leanest client's read and two writes.
trait LeanRaw {
    fn read<'a>(&'a self, key: &'a str) -> std::pin::Pin<Box<dyn Future<Output = bool> + 'a>>;
    fn two_writes<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + 'a>>;
}

impl<R: Raw> LeanRaw for R {
    fn read<'a>(&'a self, key: &'a str) -> std::pin::Pin<Box<dyn Future<Output = bool> + 'a>> {
        Box::pin(Raw::read(self, Namespace::Idempotency, key))
    }

    fn two_writes<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + 'a>> {
        Box::pin(Raw::two_writes(self, key, value))
    }
}

/// Replays and first calls of results of each size, each next to the leanest client moving
/// the same bytes; writes `values-<backend>.csv`.
async fn values(backend: &str) {
    let (store, dir) = store(backend).await;
    let lean = lean(backend, dir.as_ref().map(|d| d.path())).await;
    // The driver the store is built on, where it is not the leanest client: sqlx, on the
    // pool of a PostgreSQL store of the same tables, with stent's JSON.
    let driver: Option<Box<dyn LeanRaw>> = match backend {
        "postgres" => Some(Box::new(PostgresRaw::new(&growth_postgres().await))),
        _ => None,
    };
    let stent = Stent::new(Arc::clone(&store));
    let f = stent
        .durable("bench::values")
        .idempotent()
        .wrap(|(n, _): (usize, u64)| async move { Ok::<_, Infallible>("x".repeat(n)) });
    let mut csv = String::from(
        "backend,bytes,call,stent_p50_us,raw_p50_us,ratio,raw_json_p50_us,ratio_to_raw_json,\
         driver_json_p50_us,ratio_to_driver_json\n",
    );
    for n in [64, 4 << 10, 256 << 10, 1 << 20, 4 << 20] {
        let calls = if n >= 1 << 20 { 40 } else { 200 };
        // The bytes stent stores for the result: the same go through the leanest client.
        let bytes = stent::codec::encode_value(&"x".repeat(n)).expect("a string encodes");
        f.call((n, 0)).await.expect("the first call");
        let raw_key = format!("raw-{n}");
        lean.two_writes(&raw_key, &bytes).await;
        let (mut replays, mut reads, mut firsts, mut writes) = (vec![], vec![], vec![], vec![]);
        // The leanest client with the JSON of stent's codec: the same string decoded after
        // the read, encoded before the writes.
        let (mut json_reads, mut json_writes) = (vec![], vec![]);
        let (mut driver_reads, mut driver_writes) = (vec![], vec![]);
        let result = "x".repeat(n);
        // Reads, then writes: a write between two reads would empty a SQLite connection's
        // cache for the next read, on one side only.
        for _ in 0..calls {
            let t = Instant::now();
            f.call((n, 0)).await.expect("replay");
            replays.push(t.elapsed());
            let t = Instant::now();
            assert!(lean.read(&raw_key).await);
            reads.push(t.elapsed());
            let t = Instant::now();
            assert!(lean.read(&raw_key).await);
            let decoded = stent::codec::decode::<String, ()>(&raw_key, &bytes);
            assert!(matches!(decoded, Ok(stent::codec::Stored::Value(v)) if v.len() == n));
            json_reads.push(t.elapsed());
            if let Some(driver) = &driver {
                let t = Instant::now();
                assert!(driver.read(&raw_key).await);
                let decoded = stent::codec::decode::<String, ()>(&raw_key, &bytes);
                assert!(matches!(decoded, Ok(stent::codec::Stored::Value(v)) if v.len() == n));
                driver_reads.push(t.elapsed());
            }
        }
        for j in 1..=calls {
            let t = Instant::now();
            f.call((n, j)).await.expect("first call");
            firsts.push(t.elapsed());
            let t = Instant::now();
            lean.two_writes(&format!("raw-{n}-{j}"), &bytes).await;
            writes.push(t.elapsed());
            let t = Instant::now();
            let encoded = stent::codec::encode_value(&result).expect("a string encodes");
            lean.two_writes(&format!("raw-json-{n}-{j}"), &encoded)
                .await;
            json_writes.push(t.elapsed());
            if let Some(driver) = &driver {
                let t = Instant::now();
                let encoded = stent::codec::encode_value(&result).expect("a string encodes");
                driver
                    .two_writes(&format!("raw-driver-{n}-{j}"), &encoded)
                    .await;
                driver_writes.push(t.elapsed());
            }
        }
        for (call, s, r, j, d) in [
            (
                "replay",
                &mut replays,
                &mut reads,
                &mut json_reads,
                &mut driver_reads,
            ),
            (
                "first call",
                &mut firsts,
                &mut writes,
                &mut json_writes,
                &mut driver_writes,
            ),
        ] {
            let (sp, _) = percentiles(s);
            let (rp, _) = percentiles(r);
            let (jp, _) = percentiles(j);
            let (ratio, json_ratio) = (sp / rp, sp / jp);
            print!(
                "{backend:>9} {n:>8} B {call:>10}: stent {sp:9.1} µs  raw {rp:9.1} µs  {ratio:.2} ×  \
                 raw + JSON {jp:9.1} µs  {json_ratio:.2} ×"
            );
            csv += &format!(
                "{backend},{n},{call},{sp:.1},{rp:.1},{ratio:.3},{jp:.1},{json_ratio:.3},"
            );
            if d.is_empty() {
                csv += ",\n";
                println!();
            } else {
                let (dp, _) = percentiles(d);
                println!("  driver + JSON {dp:9.1} µs  {:.2} ×", sp / dp);
                csv += &format!("{dp:.1},{:.3}\n", sp / dp);
            }
        }
    }
    std::fs::write(out_dir().join(format!("values-{backend}.csv")), csv).expect("CSV");
    store.clear(Namespace::Idempotency).await.expect("clear");
}

/// Calls a second, over two seconds, of `tasks` tasks each calling `call(task, n)` for its
/// n-th call in turn.
async fn throughput<F, Fut>(tasks: usize, call: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let until = Instant::now() + Duration::from_secs(2);
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let call = Arc::clone(&call);
        set.spawn(async move {
            let mut n = 0;
            while Instant::now() < until {
                call(t, n).await;
                n += 1;
            }
            n
        });
    }
    let calls: u64 = set.join_all().await.into_iter().sum();
    calls as f64 / 2.0
}

/// Throughput at 1, 16, 64 and 256 tasks: first calls on distinct keys next to the raw
/// driver's two writes, and replays of one hot key next to its read of the record; writes
/// `concurrency-<backend>.csv`.
async fn concurrency(backend: &str) {
    let (store, _dir) = store(backend).await;
    let stent = Stent::new(Arc::clone(&store));
    let f = stent
        .durable(FUNCTION)
        .idempotent()
        .wrap(|(id, _): (String, u64)| async move { Ok::<_, Infallible>(format!("receipt-{id}")) });
    f.call(("hot".to_owned(), 500)).await.expect("the hot key");
    let value = stored_value("hot");
    let mut csv = String::from("backend,tasks,call,stent_per_s,raw_per_s,ratio\n");
    macro_rules! run {
        ($raw:expr) => {{
            let raw = Arc::new($raw);
            Raw::two_writes(&*raw, "raw-hot", &value).await;
            for tasks in [1, 16, 64, 256] {
                let g = f.clone();
                let firsts = throughput(tasks, move |t, n| {
                    let g = g.clone();
                    async move {
                        g.call((format!("c{tasks}-{t}-{n}"), 500)).await.expect("a first call");
                    }
                });
                let (r, v) = (Arc::clone(&raw), value.clone());
                let writes = throughput(tasks, move |t, n| {
                    let (r, v) = (Arc::clone(&r), v.clone());
                    async move { Raw::two_writes(&*r, &format!("w{tasks}-{t}-{n}"), &v).await }
                });
                let g = f.clone();
                let replays = throughput(tasks, move |_, _| {
                    let g = g.clone();
                    async move {
                        g.call(("hot".to_owned(), 500)).await.expect("a replay");
                    }
                });
                let r = Arc::clone(&raw);
                let reads = throughput(tasks, move |_, _| {
                    let r = Arc::clone(&r);
                    async move { assert!(Raw::read(&*r, Namespace::Idempotency, "raw-hot").await) }
                });
                let rows = [
                    ("first calls, distinct keys", firsts.await, writes.await),
                    ("replays, one hot key", replays.await, reads.await),
                ];
                for (call, s, r) in rows {
                    println!("{backend:>9} {tasks:>4} tasks {call:>27}: stent {s:9.0}/s  raw {r:9.0}/s  {:.2} ×", s / r);
                    csv += &format!("{backend},{tasks},{call},{s:.0},{r:.0},{:.3}\n", s / r);
                }
            }
        }};
    }
    match backend {
        "sqlite" => {
            let file = SqliteStore::open(_dir.as_ref().expect("a file").path().join("growth.db"));
            run!(stent_benches::raw::SqliteRaw::new(
                &file.await.expect("SQLite")
            ))
        }
        "postgres" => {
            let pg = growth_postgres().await;
            run!(stent_benches::PostgresRaw::new(&pg))
        }
        _ => {
            let client = redis::Client::open(env_url("STENT_REDIS_URL")).expect("a URL");
            let conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("Redis");
            run!(RedisRaw::new(conn, "stent-growth"))
        }
    }
    std::fs::write(out_dir().join(format!("concurrency-{backend}.csv")), csv).expect("CSV");
    store.clear(Namespace::Idempotency).await.expect("clear");
}

/// Latencies of the calls made alongside a purge: replays of live keys and first calls.
#[derive(Default)]
struct Alongside {
    replays: Vec<Duration>,
    firsts: Vec<Duration>,
}

/// Four tasks, each calling `f` in turn with a replay of one of the live records `0..LIVE`
/// and a first call, until `stop` is set.
async fn alongside(f: &Growth, stop: Arc<std::sync::atomic::AtomicBool>, round: &str) -> Alongside {
    use std::sync::atomic::Ordering;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..4u64 {
        let (f, stop, round) = (f.clone(), Arc::clone(&stop), round.to_owned());
        tasks.spawn(async move {
            let mut pick = Pick(0x9e37_79b9_7f4a_7c15 + t);
            let mut out = Alongside::default();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let i = pick.below(LIVE);
                let s = Instant::now();
                f.call((format!("g-{i}"), 500)).await.expect("replay");
                out.replays.push(s.elapsed());
                let s = Instant::now();
                f.call((format!("{round}-{t}-{n}"), 500))
                    .await
                    .expect("first call");
                out.firsts.push(s.elapsed());
                n += 1;
            }
            out
        });
    }
    let mut all = Alongside::default();
    for out in tasks.join_all().await {
        all.replays.extend(out.replays);
        all.firsts.extend(out.firsts);
    }
    all
}

/// The latencies of the calls alongside `what`, next to those of the quiet run, one line
/// for replays and one for first calls.
fn compare(backend: &str, what: &str, quiet: &mut Alongside, busy: &mut Alongside) -> String {
    let mut out = String::new();
    for (call, q, b) in [
        ("replay", &mut quiet.replays, &mut busy.replays),
        ("first call", &mut quiet.firsts, &mut busy.firsts),
    ] {
        let (qp50, qp99) = percentiles(q);
        let (bp50, bp99) = percentiles(b);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let (qmax, bmax) = (ms(q[q.len() - 1]), ms(b[b.len() - 1]));
        let (nq, nb) = (q.len(), b.len());
        out += &format!(
            "{backend}: {call:>10} alongside: without {what} p50 {:.2} ms p99 {:.2} ms max \
             {qmax:.2} ms ({nq} calls); during it p50 {:.2} ms p99 {:.2} ms max {bmax:.2} ms \
             ({nb} calls)\n",
            qp50 / 1e3,
            qp99 / 1e3,
            bp50 / 1e3,
            bp99 / 1e3,
        );
    }
    out
}

/// Live records the calls alongside a purge replay.
const LIVE: u64 = 1_000;

/// Purging 10⁶ expired records as `stent <namespace> purge` does (batches of 1,000 on the SQL
/// stores, one sweep on Redis), with calls running alongside, next to the same calls for as
/// long without the purge; then as many records deleted by one `clear`, the same calls
/// alongside; writes `purge-<backend>.txt`.
async fn purge(backend: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    // As the CLI's `purge`: batches on the SQL stores; one sweep of every key on Redis, which
    // has no index of expiry (a batch would sweep again from the first key).
    let batch = if backend == "redis" {
        usize::MAX
    } else {
        1_000
    };
    let expired: u64 = 1_000_000;
    let (store, dir) = store(backend).await;
    let f = growth_function(Arc::clone(&store)).await;
    let dir = dir.as_ref().map(|d| d.path());
    fill(backend, &store, dir, (0, LIVE), false).await;
    let started = Instant::now();
    fill(backend, &store, dir, (LIVE, LIVE + expired), true).await;
    eprintln!(
        "{backend}: {expired} expired records in {:.1?}",
        started.elapsed()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let calls = alongside(&f, Arc::clone(&stop), "quiet");
    let (quiet, ()) = tokio::join!(calls, async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        stop.store(true, Ordering::Relaxed);
    });

    stop.store(false, Ordering::Relaxed);
    let calls = alongside(&f, Arc::clone(&stop), "busy");
    let (mut busy, (mut batches, purged, took)) = tokio::join!(calls, async {
        let (mut batches, mut purged) = (Vec::new(), 0);
        let started = Instant::now();
        loop {
            let t = Instant::now();
            let n = store
                .purge_expired(Namespace::Idempotency, batch)
                .await
                .expect("purge");
            batches.push(t.elapsed());
            purged += n;
            if n < batch as u64 {
                break;
            }
        }
        let took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        (batches, purged, took)
    });
    assert_eq!(purged, expired, "every expired record purged, no live one");
    let mut quiet = quiet;
    let longest = batches.iter().max().copied().unwrap_or_default();
    let (batch_p50, _) = percentiles(&mut batches);
    let mut out = format!(
        "{backend}: purged {purged} of {expired} expired records in {:.1} s, {} batches of \
         {}: p50 {:.1} ms, longest {:.1} ms\n",
        took.as_secs_f64(),
        batches.len(),
        if batch == usize::MAX {
            "all".to_owned()
        } else {
            batch.to_string()
        },
        batch_p50 / 1e3,
        longest.as_secs_f64() * 1e3,
    );
    out += &compare(backend, "the purge", &mut quiet, &mut busy);

    // Then `clear`: as many records again, all deleted by one call, the same calls alongside.
    fill(backend, &store, dir, (LIVE, LIVE + expired), false).await;
    stop.store(false, Ordering::Relaxed);
    let calls = alongside(&f, Arc::clone(&stop), "clearing");
    let (mut clearing, (cleared, took)) = tokio::join!(calls, async {
        let t = Instant::now();
        let n = store.clear(Namespace::Idempotency).await.expect("clear");
        let took = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        (n, took)
    });
    out += &format!(
        "{backend}: cleared {cleared} records in one call of {:.1} ms\n",
        took.as_secs_f64() * 1e3
    );
    out += &compare(backend, "the clear", &mut quiet, &mut clearing);
    print!("{out}");
    std::fs::write(out_dir().join(format!("purge-{backend}.txt")), out).expect("a report");
    store.clear(Namespace::Idempotency).await.expect("clear");
}

/// Throughput at 1, 2, 4 and 8 processes of 16 tasks each (children of this program: see
/// [`process`]): first calls on distinct keys next to the raw driver's two writes, and
/// replays of one hot key next to its read; writes `processes-<backend>.csv`.
async fn processes(backend: &str) {
    let (store, dir) = store(backend).await;
    let file = dir
        .as_ref()
        .map_or_else(PathBuf::new, |d| d.path().join("growth.db"));
    let file = file.as_path();
    let f = growth_function(Arc::clone(&store)).await;
    f.call(("hot".to_owned(), 500)).await.expect("the hot key");
    children(backend, "setup", 1, file); // the raw driver's hot record, written once
    let mut csv = String::from("backend,processes,call,stent_per_s,raw_per_s,ratio\n");
    for n in [1, 2, 4, 8] {
        let rate = |what| children(backend, what, n, file);
        let (write, first, read, replay) =
            (rate("write"), rate("first"), rate("read"), rate("replay"));
        for (call, s, r) in [
            ("first calls, distinct keys", first, write),
            ("replays, one hot key", replay, read),
        ] {
            println!(
                "{backend:>9} {n} processes {call:>27}: stent {s:9.0}/s  raw {r:9.0}/s  {:.2} ×",
                s / r
            );
            csv += &format!("{backend},{n},{call},{s:.0},{r:.0},{:.3}\n", s / r);
        }
    }
    std::fs::write(out_dir().join(format!("processes-{backend}.csv")), csv).expect("CSV");
    store.clear(Namespace::Idempotency).await.expect("clear");
}

/// Runs `n` children of [`processes`] making `what`, all starting their two seconds at the
/// same instant (after they all connect); their calls a second, summed.
fn children(backend: &str, what: &str, n: usize, file: &Path) -> f64 {
    let start = now_ms() + 1_500;
    let children: Vec<_> = (0..n)
        .map(|i| {
            let mut cmd = std::process::Command::new(std::env::current_exe().expect("me"));
            let (me, start) = (format!("{n}-{i}"), start.to_string());
            cmd.args(["process", backend, what, &me, &start]).arg(file);
            cmd.stdout(std::process::Stdio::piped());
            cmd.spawn().expect("a child process")
        })
        .collect();
    children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().expect("the child's count");
            assert!(out.status.success(), "a child failed: {:?}", out.status);
            let rate = String::from_utf8_lossy(&out.stdout).trim().parse::<f64>();
            rate.expect("a rate")
        })
        .sum()
}

/// One child of [`processes`]: from `start` (Unix ms), 16 tasks making `what` (`first`,
/// `replay`, or the raw driver's `write` and `read`) for two seconds; prints calls a second.
/// `setup` writes the raw driver's hot record.
/// `file` is the SQLite file.
async fn process(backend: &str, what: &str, me: &str, start: i64, file: &Path) {
    let store: Arc<dyn ResultStore> = match backend {
        "sqlite" => Arc::new(SqliteStore::open(file).await.expect("SQLite")),
        "postgres" => Arc::new(growth_postgres().await),
        _ => Arc::new(
            RedisStore::builder()
                .url(env_url("STENT_REDIS_URL"))
                .prefix("stent-growth")
                .build()
                .await
                .expect("Redis"),
        ),
    };
    let f = growth_function(Arc::clone(&store)).await;
    let value = stored_value("hot");
    macro_rules! raw {
        ($raw:expr) => {{
            let raw = Arc::new($raw);
            let me = me.to_owned();
            let wait = (start - now_ms()).max(0) as u64;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            if what == "setup" {
                Raw::two_writes(&*raw, "raw-hot", &value).await;
                0.0
            } else if what == "write" {
                throughput(16, move |t, n| {
                    let (r, v, me) = (Arc::clone(&raw), value.clone(), me.clone());
                    async move { Raw::two_writes(&*r, &format!("pw{me}-{t}-{n}"), &v).await }
                })
                .await
            } else {
                throughput(16, move |_, _| {
                    let r = Arc::clone(&raw);
                    async move { assert!(Raw::read(&*r, Namespace::Idempotency, "raw-hot").await) }
                })
                .await
            }
        }};
    }
    let rate = match what {
        "first" | "replay" => {
            let wait = (start - now_ms()).max(0) as u64;
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let me = me.to_owned();
            let hot = what == "replay";
            throughput(16, move |t, n| {
                let (g, me) = (f.clone(), me.clone());
                async move {
                    let id = if hot {
                        "hot".to_owned()
                    } else {
                        format!("p{me}-{t}-{n}")
                    };
                    g.call((id, 500)).await.expect("a call");
                }
            })
            .await
        }
        _ => match backend {
            "sqlite" => raw!(stent_benches::raw::SqliteRaw::new(
                &SqliteStore::open(file).await.expect("SQLite")
            )),
            "postgres" => raw!(stent_benches::PostgresRaw::new(&growth_postgres().await)),
            _ => {
                let client = redis::Client::open(env_url("STENT_REDIS_URL")).expect("a URL");
                let conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .expect("Redis");
                raw!(RedisRaw::new(conn, "stent-growth"))
            }
        },
    };
    println!("{rate}");
}

/// The process's resident memory, in bytes (Linux: `/proc/self/statm`).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .expect("resident")
        .parse()
        .expect("a number");
    pages * 4096
}

/// Resident memory around 10⁶ distinct cached calls on MemoryStore: what each record costs
/// while it is kept, and whether anything stays behind once the records are gone (the
/// in-flight map, metrics labels): a second million after `clear` must not grow it further.
async fn memory() {
    let store = Arc::new(stent::MemoryStore::new());
    let stent = Stent::new(Arc::clone(&store) as Arc<dyn ResultStore>);
    let f =
        stent
            .durable("bench::memory")
            .cached()
            .wrap(|(id, n): (String, u64)| async move {
                Ok::<_, Infallible>(format!("receipt-{id}-{n}"))
            });
    let mut csv = String::from("phase,calls,rss_bytes\n");
    let start = rss();
    csv += &format!("start,0,{start}\n");
    println!("start: {:.1} MiB", start as f64 / 1048576.0);
    for round in 1..=2u64 {
        for i in 0..1_000_000u64 {
            f.call((format!("ord-{round}-{i}"), i))
                .await
                .expect("a call");
        }
        let kept = rss();
        store.clear(Namespace::Cache).await.expect("clear");
        let cleared = rss();
        println!(
            "round {round}: after 10⁶ calls {:.1} MiB ({:.0} B a record kept), after clear {:.1} MiB",
            kept as f64 / 1048576.0,
            (kept - start) as f64 / 1e6,
            cleared as f64 / 1048576.0
        );
        csv += &format!(
            "after {round}e6 calls,{},{kept}\nafter clear,{},{cleared}\n",
            round * 1_000_000,
            round * 1_000_000
        );
    }
    std::fs::write(out_dir().join("memory-memorystore.txt"), csv).expect("CSV");
}

/// Rows of the CSV files `<what>-*.csv`, each split at commas (header left out).
fn rows(what: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(out_dir())
        .expect("benches/growth")
        .flatten()
        .collect();
    files.sort_by_key(|f| f.path());
    for file in files {
        let name = file.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{what}-")) && name.ends_with(".csv") {
            let text = std::fs::read_to_string(file.path()).expect("a CSV file");
            rows.extend(
                text.lines()
                    .skip(1)
                    .map(|l| l.split(',').map(str::to_owned).collect()),
            );
        }
    }
    rows
}

/// One line per (backend, call) of `rows`: points (x, y) from columns `x` and `y`.
fn series(rows: &[Vec<String>], x: usize, y: usize) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for r in rows {
        let name = format!("{} {}", r[0], r[2]);
        let point = (
            r[x].parse().expect("a number"),
            r[y].parse().expect("a number"),
        );
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, points)) => points.push(point),
            None => out.push((name, vec![point])),
        }
    }
    out
}

/// A chart of `lines` on log-scaled x, into `file`.
fn chart(
    file: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    lines: &[(String, Vec<(f64, f64)>)],
    log_y: bool,
) {
    let xs = lines.iter().flat_map(|(_, p)| p.iter().map(|p| p.0));
    let ys = lines.iter().flat_map(|(_, p)| p.iter().map(|p| p.1));
    let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let (y0, y1) = ys.fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
    let root = SVGBackend::new(file, (900, 560)).into_drawing_area();
    root.fill(&WHITE).expect("drawing");
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64);
    let colors = [&BLUE, &RED, &GREEN, &MAGENTA, &CYAN, &BLACK, &YELLOW];
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart.expect("a chart");
            chart
                .configure_mesh()
                .x_desc(x_label)
                .y_desc(y_label)
                .draw()
                .expect("the mesh");
            for (i, (name, points)) in lines.iter().enumerate() {
                let color = colors[i % colors.len()];
                chart
                    .draw_series(LineSeries::new(points.iter().copied(), color))
                    .expect("a line")
                    .label(name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .expect("points");
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .expect("the legend");
        }};
    }
    let x = (x0 * 0.8..x1 * 1.25).log_scale();
    if log_y {
        draw!(builder.build_cartesian_2d(x, (y0 * 0.8..y1 * 1.25).log_scale()));
    } else {
        draw!(builder.build_cartesian_2d(x, 0.0..y1 * 1.1));
    }
    root.present().expect("writing the SVG");
}

/// Renders the CSV files as `records.svg` and `values.svg`.
fn plot() {
    let charts = [
        (
            "records",
            3,
            "p50 latency by number of records",
            "records",
            "µs (p50)",
            true,
        ),
        (
            "values",
            5,
            "stent ÷ leanest client, by result size",
            "bytes",
            "ratio (p50)",
            false,
        ),
    ];
    for (what, y, title, x_label, y_label, log_y) in charts {
        let rows = rows(what);
        if !rows.is_empty() {
            let file = out_dir().join(format!("{what}.svg"));
            chart(&file, title, x_label, y_label, &series(&rows, 1, y), log_y);
        }
    }
}
