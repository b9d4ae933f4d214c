//! Where an SQLite call's time goes: the raw driver's statements, the store's operations and
//! the wrapper's calls, alternating in rounds so that load drift touches every variant alike
//! (as `interleaved.rs` does), against a file database in WAL mode in a temporary directory,
//! as the `sqlite` bench uses.
//!
//! ```text
//! cargo run --release -p stent-benches --example sqlite_requests            # both parts
//! cargo run --release -p stent-benches --example sqlite_requests -- single  # one caller
//! cargo run --release -p stent-benches --example sqlite_requests -- tasks   # 64 callers
//! ```
//!
//! *single*: one call at a time. The raw statements run three ways: through the store's own
//! pool (as the `sqlite` bench's raw rows do), through a pool that does not ping a connection
//! on acquire (sqlx pings by default; the store's pool no longer does, so these two rows now
//! agree), and on one connection held for the whole run, which is what the store's writes
//! use; then the store's `get`, `claim` of a completed key and `claim` + `complete` of a fresh
//! key, and the wrapper's calls. Each row is also given as a ratio to the raw read and the
//! raw two writes of the pool and of the held connection.
//!
//! `TMPDIR=/dev/shm` puts the file in memory: the WAL checkpoints' `fsync`s, whose cost on a
//! shared disk varies from run to run, drop out and the statements' own costs remain.
//!
//! *tasks*: 64 tasks at once, each on a key of its own: replays of completed keys next to raw
//! reads, and first calls of fresh keys next to the raw two writes, as the time of a batch.
//! Errors are counted, not fatal, so that `Busy` from SQLite's lock shows in the output.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection as _};
use stent::{ClaimOutcome, Namespace, ResultStore, SqliteStore, Stent};
use stent_benches::{
    Fresh, Functions, hit_args, now_ms, run_tag, runtime, store_claim, store_claim_complete,
    stored_value,
};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

const ROUNDS: usize = 40;
const CALLS: u32 = 200;
const TASKS: usize = 64;
const BATCHES: u32 = 10;

type Call<'a> = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + 'a>> + 'a>;

/// One variant: its name and one call of it.
type Variant<'a> = (&'a str, Call<'a>);

/// Runs the variants alternately, `calls` calls per round, and prints each one's median round
/// next to the first variant's and the `base` variant's.
async fn compare(variants: Vec<Variant<'_>>, calls: u32, bases: &[(usize, &str)]) {
    let mut rounds: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    for _ in 0..ROUNDS {
        for (i, (_, call)) in variants.iter().enumerate() {
            let started = Instant::now();
            for _ in 0..calls {
                call().await;
            }
            rounds[i].push(started.elapsed() / calls);
        }
    }
    let medians: Vec<Duration> = rounds.iter_mut().map(|r| median(r)).collect();
    for (i, (name, _)) in variants.iter().enumerate() {
        let ratios: Vec<String> = bases
            .iter()
            .map(|&(b, label)| {
                format!(
                    "{:5.2} × {label}",
                    medians[i].as_secs_f64() / medians[b].as_secs_f64()
                )
            })
            .collect();
        println!("{name:>46}: {:>9.1?}  {}", medians[i], ratios.join("  "));
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The raw statements the bench compares against, on the store's tables.
struct Sql {
    read: String,
    insert: String,
    update: String,
}

impl Sql {
    fn new(store: &SqliteStore) -> Self {
        let idem = format!("\"{}\"", store.table(Namespace::Idempotency));
        let cache = format!("\"{}\"", store.table(Namespace::Cache));
        Sql {
            read: format!("SELECT value FROM {cache} WHERE key = ?1"),
            insert: format!(
                "INSERT INTO {idem} (key, state, lease_token, lease_expires_ms, attempt, created_ms) \
                 VALUES (?1, 'in_progress', ?2, ?3, 1, ?4)"
            ),
            update: format!(
                "UPDATE {idem} SET state = 'completed', value = ?2, lease_token = NULL, \
                 lease_expires_ms = NULL, completed_ms = ?3 WHERE key = ?1"
            ),
        }
    }
}

/// Where a raw statement runs.
#[derive(Clone, Copy)]
enum On<'a> {
    Pool(&'a SqlitePool),
    Held(&'a Mutex<SqliteConnection>),
}

impl On<'_> {
    async fn read(self, sql: &Sql, key: &str) -> bool {
        let q = sqlx::query_as::<_, (Option<Vec<u8>>,)>(AssertSqlSafe(sql.read.as_str())).bind(key);
        let row = match self {
            On::Pool(p) => q.fetch_optional(p).await,
            On::Held(c) => q.fetch_optional(&mut *c.lock().await).await,
        };
        row.expect("SELECT").is_some()
    }

    async fn insert(self, sql: &Sql, key: &str) {
        let now = now_ms();
        let q = sqlx::query(AssertSqlSafe(sql.insert.as_str()))
            .bind(key)
            .bind("token")
            .bind(now + 30_000)
            .bind(now);
        match self {
            On::Pool(p) => q.execute(p).await,
            On::Held(c) => q.execute(&mut *c.lock().await).await,
        }
        .expect("INSERT");
    }

    async fn update(self, sql: &Sql, key: &str, value: &[u8]) {
        let q = sqlx::query(AssertSqlSafe(sql.update.as_str()))
            .bind(key)
            .bind(value)
            .bind(now_ms());
        match self {
            On::Pool(p) => q.execute(p).await,
            On::Held(c) => q.execute(&mut *c.lock().await).await,
        }
        .expect("UPDATE");
    }
}

fn options(path: &std::path::Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
}

async fn single(store: &SqliteStore, path: &std::path::Path) {
    let sql = &Sql::new(store);
    let pool = store.pool();
    let no_ping = &SqlitePoolOptions::new()
        .max_connections(8)
        .min_connections(1)
        .test_before_acquire(false)
        .connect_with(options(path))
        .await
        .expect("a second pool");
    let held = &Mutex::new(
        SqliteConnection::connect_with(&options(path))
            .await
            .expect("a connection"),
    );
    let f = &Functions::new(&Stent::new(store.clone()));
    f.cached.call(hit_args()).await.expect("seeding");
    f.idempotent.call(hit_args()).await.expect("seeding");
    let cache_key = &f.cached.key_for(&hit_args()).expect("a key");
    let idem_key = &f.idempotent.key_for(&hit_args()).expect("a key");
    let store = &(Arc::new(store.clone()) as Arc<dyn ResultStore>);
    let fresh = &Fresh::new(format!("single-{}", run_tag()));
    let value = &stored_value("ord-000042");
    // The record every variant's UPDATE rewrites.
    let upd_key = "raw|update-target";
    On::Pool(pool).insert(sql, upd_key).await;

    let ways: [(&str, On<'_>); 3] = [
        ("pool", On::Pool(pool)),
        ("pool, no ping on acquire", On::Pool(no_ping)),
        ("one held connection", On::Held(held)),
    ];
    let names: Vec<[String; 4]> = ways
        .iter()
        .map(|(w, _)| {
            [
                format!("raw read ({w})"),
                format!("raw INSERT ({w})"),
                format!("raw UPDATE ({w})"),
                format!("raw two writes ({w})"),
            ]
        })
        .collect();
    let mut variants: Vec<Variant<'_>> = Vec::new();
    for ((_, on), names) in ways.iter().zip(&names) {
        let on = *on;
        variants.push((
            names[0].as_str(),
            Box::new(move || Box::pin(async move { assert!(on.read(sql, cache_key).await) })),
        ));
        variants.push((
            names[1].as_str(),
            Box::new(move || {
                Box::pin(async move { on.insert(sql, &format!("raw|{}", fresh.next())).await })
            }),
        ));
        variants.push((
            names[2].as_str(),
            Box::new(move || Box::pin(async move { on.update(sql, upd_key, value).await })),
        ));
        variants.push((
            names[3].as_str(),
            Box::new(move || {
                Box::pin(async move {
                    let key = format!("raw|{}", fresh.next());
                    on.insert(sql, &key).await;
                    on.update(sql, &key, value).await;
                })
            }),
        ));
    }
    variants.push((
        "SqliteStore::get (cache, stored)",
        Box::new(move || {
            Box::pin(async move {
                let r = store.get(Namespace::Cache, cache_key).await.expect("get");
                assert!(r.is_some());
            })
        }),
    ));
    variants.push((
        "SqliteStore::claim (completed key)",
        Box::new(move || {
            Box::pin(async move {
                let (_, outcome) = store_claim(store.as_ref(), idem_key).await;
                assert!(matches!(outcome, ClaimOutcome::Completed(_)));
            })
        }),
    ));
    variants.push((
        "SqliteStore::claim + complete (fresh key)",
        Box::new(move || {
            Box::pin(async move {
                let key = format!("store|{}", fresh.next());
                store_claim_complete(store.as_ref(), &key, value).await;
            })
        }),
    ));
    variants.push((
        "stent cache hit",
        Box::new(move || {
            Box::pin(async move {
                f.cached.call(hit_args()).await.expect("hit");
            })
        }),
    ));
    variants.push((
        "stent idempotent replay",
        Box::new(move || {
            Box::pin(async move {
                f.idempotent.call(hit_args()).await.expect("replay");
            })
        }),
    ));
    variants.push((
        "stent idempotent first call",
        Box::new(move || {
            Box::pin(async move {
                f.idempotent
                    .call((fresh.next(), 500))
                    .await
                    .expect("first call");
            })
        }),
    ));
    compare(
        variants,
        CALLS,
        // The raw rows above: 0 read and 3 two writes on the pool, 8 and 11 on the held one.
        &[
            (0, "pool read"),
            (3, "pool 2 writes"),
            (8, "held read"),
            (11, "held 2 writes"),
        ],
    )
    .await;
}

/// Runs `TASKS` tasks at once, task `i` calling `call(i)`; the errors they met.
async fn batch<F, Fut>(call: &F) -> u64
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let mut set = JoinSet::new();
    for i in 0..TASKS {
        set.spawn(call(i));
    }
    let mut errors = 0;
    while let Some(r) = set.join_next().await {
        if let Err(e) = r.expect("task") {
            if errors == 0 {
                eprintln!("first error: {e}");
            }
            errors += 1;
        }
    }
    errors
}

/// Where the tasks' raw statements run: owned, so that spawned tasks can hold it.
#[derive(Clone)]
enum Shared {
    Pool(SqlitePool),
    Held(Arc<Mutex<SqliteConnection>>),
}

impl Shared {
    fn on(&self) -> On<'_> {
        match self {
            Shared::Pool(p) => On::Pool(p),
            Shared::Held(c) => On::Held(c),
        }
    }
}

async fn tasks(store: &SqliteStore, path: &std::path::Path) {
    let sql = Arc::new(Sql::new(store));
    let held = Shared::Held(Arc::new(Mutex::new(
        SqliteConnection::connect_with(&options(path))
            .await
            .expect("a connection"),
    )));
    let pool = Shared::Pool(store.pool().clone());
    let stent = Stent::new(store.clone());
    let f = Functions::new(&stent);
    let dyn_store: Arc<dyn ResultStore> = Arc::new(store.clone());
    // Completed keys, one per task.
    let args = |i: usize| (format!("ord-t{i:03}"), 500);
    for i in 0..TASKS {
        f.idempotent.call(args(i)).await.expect("seeding");
        f.cached.call(args(i)).await.expect("seeding");
    }
    let idem_keys: Arc<Vec<String>> = Arc::new(
        (0..TASKS)
            .map(|i| f.idempotent.key_for(&args(i)).expect("a key"))
            .collect(),
    );
    let cache_keys: Arc<Vec<String>> = Arc::new(
        (0..TASKS)
            .map(|i| f.cached.key_for(&args(i)).expect("a key"))
            .collect(),
    );
    let fresh = Arc::new(Fresh::new(format!("tasks-{}", run_tag())));
    let errors: Arc<[AtomicU64; 8]> = Arc::new(Default::default());
    let value: Arc<[u8]> = stored_value("ord-000042").into();

    let raw_reads = |on: Shared| {
        let (s, k) = (sql.clone(), cache_keys.clone());
        move |i: usize| {
            let (s, k, on) = (s.clone(), k.clone(), on.clone());
            async move {
                assert!(on.on().read(&s, &k[i]).await);
                Ok(())
            }
        }
    };
    let (st, k) = (dyn_store.clone(), idem_keys.clone());
    let replays = move |i: usize| {
        let (st, k) = (st.clone(), k.clone());
        async move {
            match store_claim_result(st.as_ref(), &k[i]).await? {
                (_, ClaimOutcome::Completed(_)) => Ok(()),
                (_, other) => Err(format!("{other:?}")),
            }
        }
    };
    let raw_writes = |on: Shared| {
        let (s, fr) = (sql.clone(), fresh.clone());
        move |_: usize| {
            let (s, key, on) = (s.clone(), format!("raw|{}", fr.next()), on.clone());
            async move {
                on.on().insert(&s, &key).await;
                on.on().update(&s, &key, b"receipt").await;
                Ok(())
            }
        }
    };
    let (st, fr, v) = (dyn_store.clone(), fresh.clone(), value.clone());
    let first_calls = move |_: usize| {
        let (st, key, v) = (st.clone(), format!("store|{}", fr.next()), v.clone());
        async move {
            let (token, outcome) = store_claim_result(st.as_ref(), &key).await?;
            if !matches!(outcome, ClaimOutcome::Acquired { .. }) {
                return Err(format!("{outcome:?}"));
            }
            st.complete(Namespace::Idempotency, &key, &token, &v, None)
                .await
                .map_err(|e| e.to_string())
        }
    };
    let fi = f.idempotent.clone();
    let wrapper_replays = move |i: usize| {
        let fi = fi.clone();
        async move { fi.call(args(i)).await.map(drop).map_err(|e| e.to_string()) }
    };
    let (fi, fr) = (f.idempotent.clone(), fresh.clone());
    let wrapper_first = move |_: usize| {
        let (fi, id) = (fi.clone(), fr.next());
        async move {
            fi.call((id, 500))
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
    };

    let (reads_pool, reads_held) = (raw_reads(pool.clone()), raw_reads(held.clone()));
    let (writes_pool, writes_held) = (raw_writes(pool), raw_writes(held));
    let e = &errors;
    let variants: Vec<Variant<'_>> = vec![
        (
            "64 tasks: raw reads",
            Box::new(move || Box::pin(count(e, 0, batch_owned(reads_pool.clone())))),
        ),
        (
            "64 tasks: raw reads (one held connection)",
            Box::new(move || Box::pin(count(e, 1, batch_owned(reads_held.clone())))),
        ),
        (
            "64 tasks: SqliteStore::claim (completed)",
            Box::new(move || Box::pin(count(e, 2, batch_owned(replays.clone())))),
        ),
        (
            "64 tasks: stent replay",
            Box::new(move || Box::pin(count(e, 3, batch_owned(wrapper_replays.clone())))),
        ),
        (
            "64 tasks: raw two writes",
            Box::new(move || Box::pin(count(e, 4, batch_owned(writes_pool.clone())))),
        ),
        (
            "64 tasks: raw two writes (one held connection)",
            Box::new(move || Box::pin(count(e, 5, batch_owned(writes_held.clone())))),
        ),
        (
            "64 tasks: SqliteStore::claim + complete",
            Box::new(move || Box::pin(count(e, 6, batch_owned(first_calls.clone())))),
        ),
        (
            "64 tasks: stent first call",
            Box::new(move || Box::pin(count(e, 7, batch_owned(wrapper_first.clone())))),
        ),
    ];
    let names: Vec<&str> = variants.iter().map(|v| v.0).collect();
    compare(
        variants,
        BATCHES,
        &[
            (0, "pool reads"),
            (4, "pool 2 writes"),
            (1, "held reads"),
            (5, "held 2 writes"),
        ],
    )
    .await;
    for (i, name) in names.iter().enumerate() {
        let n = errors[i].load(Ordering::Relaxed);
        if n > 0 {
            println!("{name:>44}: {n} calls failed");
        }
    }
}

async fn batch_owned<F, Fut>(call: F) -> u64
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    batch(&call).await
}

async fn count(errors: &[AtomicU64; 8], i: usize, run: impl Future<Output = u64>) {
    errors[i].fetch_add(run.await, Ordering::Relaxed);
}

async fn store_claim_result(
    store: &dyn ResultStore,
    key: &str,
) -> Result<(stent::LeaseToken, ClaimOutcome), String> {
    let token = stent::LeaseToken::generate();
    let claim = stent::Claim {
        token: &token,
        lease: stent::DEFAULT_LEASE,
        meta: stent::RecordMeta::default(),
    };
    let outcome = store
        .claim(Namespace::Idempotency, key, &claim)
        .await
        .map_err(|e| e.to_string())?;
    Ok((token, outcome))
}

fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    let rt = runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("requests.db");
        let store = SqliteStore::open(&path).await.expect("opening the file");
        if what.is_empty() || what == "single" {
            println!("one caller, {ROUNDS} rounds of {CALLS} calls, median round:");
            single(&store, &path).await;
        }
        if what.is_empty() || what == "tasks" {
            println!("{TASKS} tasks on distinct keys, {ROUNDS} rounds of {BATCHES} batches, median per batch:");
            tasks(&store, &path).await;
        }
        if !matches!(what.as_str(), "" | "single" | "tasks") {
            panic!("which part? single or tasks (or nothing for both)");
        }
    });
}
