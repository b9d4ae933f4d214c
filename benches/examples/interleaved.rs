//! A cross-check of the benches' ratios that load drift cannot move: the variants of one
//! comparison alternate in 120 rounds of 64 calls each (10 on moto), each round in a rotated
//! order, and each variant's median round is reported with the median of its per-round ratios
//! to the first variant. Criterion measures one benchmark after another; on a shared machine a
//! burst of other work between two of them moves their ratio, here it touches the variants of a
//! round alike.
//!
//! ```text
//! cargo run --release -p stent-benches --example interleaved -- MODE
//! ```
//!
//! MODE is `memory` (the wrapper over `MemoryStore`), `sqlite` (a temporary file),
//! `postgres` (STENT_POSTGRES_URL), `redis` (STENT_REDIS_URL), `cluster`
//! (STENT_REDIS_CLUSTER_URL), `valkey`, `valkey-cluster`, `redis8`, `redis8-cluster` (the
//! same comparisons on STENT_VALKEY_URL, STENT_REDIS8_URL and their clusters), `dynamodb`
//! (STENT_DYNAMODB_URL) or `cached` (stent's cache hit next to the `cached` crate's, on
//! STENT_REDIS_URL). Each mode compares hits and replays, then first calls; `sqlite` and
//! `postgres` then a transactional first call next to the same transaction by hand, which
//! MODE `transactional` runs alone on both.
//!
//! MODE `limits` (or `limits sqlite`, `limits postgres`) measures the distance to each SQL
//! server's own limit: see [`limits`].
//!
//! MODE `storm` (or `storm sqlite`, `storm postgres`, `storm redis` for one backend) is the
//! expiry storm of one hot cached key instead: see [`storm`].

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cached::AsyncRedisCache;
use cached::macros::concurrent_cached;
use sqlx::AssertSqlSafe;
use stent::{
    ClaimOutcome, Durable, LeaseToken, LocalTier, MemoryStore, Namespace, PostgresStore,
    RedisStore, ResultStore, SqliteStore, Stent,
};
use stent_benches::lean::{PostgresLean, SqliteLean};
use stent_benches::raw::{DynamoDbRaw, SqliteRaw, dynamodb_store};
use stent_benches::{
    Fresh, Functions, PostgresRaw, Raw, RedisRaw, env_url, hit_args, runtime, store_claim,
    store_claim_complete, stored_value,
};

const ROUNDS: usize = 120;
const CALLS: u32 = 64;

/// One call of a variant, or of the work between rounds.
type Call<'a> = Box<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + 'a>> + 'a>;

/// One variant: its name and one call of it.
type Variant<'a> = (&'a str, Call<'a>);

async fn compare(variants: Vec<Variant<'_>>) {
    compare_calls(variants, CALLS, None).await;
}

/// [`compare`] with `calls` calls of each variant per round, and `between` run (untimed)
/// before each variant's round.
///
/// Every round times each variant once, starting from a different variant each round so
/// that no variant always follows the same one. A variant's time is its median round; its
/// ratio is the median, over the rounds, of its round's time ÷ the first variant's in the
/// same round, so that load which drifts from one round to the next cancels in each ratio.
async fn compare_calls(variants: Vec<Variant<'_>>, calls: u32, between: Option<Call<'_>>) {
    let n = variants.len();
    let mut rounds: Vec<Vec<Duration>> = vec![Vec::with_capacity(ROUNDS); n];
    for r in 0..ROUNDS {
        for k in 0..n {
            let i = (r + k) % n;
            if let Some(between) = &between {
                between().await;
            }
            let started = Instant::now();
            for _ in 0..calls {
                (variants[i].1)().await;
            }
            rounds[i].push(started.elapsed() / calls);
        }
    }
    for (i, (name, _)) in variants.iter().enumerate() {
        let mut ratios: Vec<f64> = rounds[i]
            .iter()
            .zip(&rounds[0])
            .map(|(t, base)| t.as_secs_f64() / base.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let m = median(&mut rounds[i].clone());
        println!(
            "{name:>36}: {m:>10.1?}  ({:.2} × {})",
            ratios[ratios.len() / 2],
            variants[0].0
        );
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The benchmarked function as the `cached` crate's users write it.
#[concurrent_cached(
    map_error = r##"|e| format!("{e:?}")"##,
    ty = "AsyncRedisCache<String, String>",
    key = "String",
    convert = r##"{ format!("{id}:{amount}") }"##,
    create = r##"{
        AsyncRedisCache::builder("quote")
            .namespace("stent-bench-interleaved")
            .connection_string(&env_url("STENT_REDIS_URL"))
            .ttl(Duration::from_secs(600))
            .build()
            .await
            .expect("connecting the cached crate to STENT_REDIS_URL")
    }"##
)]
async fn quote(id: String, amount: u64) -> Result<String, String> {
    Ok(format!("receipt-{id}-{amount}"))
}

async fn redis(with_cached: bool, cluster: bool) {
    if cluster {
        let url = env_url(clustered());
        let conn = cluster_conn(&url).await;
        redis_hits(conn, &url, with_cached).await;
    } else {
        let url = env_url(standalone());
        let conn = manager(&url).await;
        redis_hits(conn, &url, with_cached).await;
    }
}

/// Hits on a stored key, through `conn` and a store on the same server (`url`).
async fn redis_hits<C>(conn: C, url: &str, with_cached: bool)
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    let store = RedisStore::builder()
        .url(url)
        .prefix("stent-bench-interleaved")
        .build()
        .await
        .expect("connecting stent to Redis");
    // The same store without a timer on each reply (what the raw connections here do
    // on a cluster: the `redis` crate's cluster client times nothing by default).
    let untimed = RedisStore::builder()
        .url(url)
        .prefix("stent-bench-interleaved")
        .response_timeout(None)
        .build()
        .await
        .expect("connecting stent to Redis");
    let untimed = &untimed;
    let f = Functions::new(&Stent::new(store.clone()));
    f.cached.call(hit_args()).await.expect("seeding");
    f.idempotent.call(hit_args()).await.expect("seeding");
    let key = f.cached.key_for(&hit_args()).expect("a key");
    let redis_key = format!("stent-bench-interleaved:cache:{key}");
    let get_key = "stent-bench-interleaved:raw-get";
    redis::cmd("SET")
        .arg(get_key)
        .arg(stored_value("ord-000042"))
        .exec_async(&mut conn.clone())
        .await
        .expect("SET");
    let (conn, store, f, key, rk) = (&conn, &store, &f, key.as_str(), redis_key.as_str());

    let mut variants: Vec<Variant<'_>> = vec![
        raw_get("raw GET", conn, rk),
        (
            "RedisStore::get",
            Box::new(move || {
                Box::pin(async move {
                    assert!(
                        store
                            .get(Namespace::Cache, key)
                            .await
                            .expect("get")
                            .is_some()
                    );
                })
            }),
        ),
        (
            "RedisStore::get, no response timeout",
            Box::new(move || {
                Box::pin(async move {
                    assert!(
                        untimed
                            .get(Namespace::Cache, key)
                            .await
                            .expect("get")
                            .is_some()
                    );
                })
            }),
        ),
        (
            "stent cache hit",
            Box::new(move || {
                Box::pin(async move {
                    f.cached.call(hit_args()).await.expect("hit");
                })
            }),
        ),
    ];
    if with_cached {
        let (id, amount) = hit_args();
        quote(id, amount).await.expect("seeding cached");
        variants.push(raw_get("raw GET of a plain value", conn, get_key));
        variants.push((
            "cached crate hit",
            Box::new(move || {
                Box::pin(async move {
                    let (id, amount) = hit_args();
                    quote(id, amount).await.expect("hit");
                })
            }),
        ));
    } else {
        let idem_key = f.idempotent.key_for(&hit_args()).expect("a key");
        let idem_key: &str = Box::leak(idem_key.into_boxed_str());
        let idem_rk: &str =
            Box::leak(format!("stent-bench-interleaved:idempotency:{idem_key}").into_boxed_str());
        variants.push(raw_get("raw GET of the idempotency record", conn, idem_rk));
        variants.push((
            "bare SET NX GET (a replay's claim)",
            Box::new(move || {
                Box::pin(async move {
                    let mut c = conn.clone();
                    let token = LeaseToken::generate();
                    let value: Option<Vec<u8>> = redis::cmd("SET")
                        .arg(idem_rk)
                        .arg(claim_record(&token))
                        .arg("NX")
                        .arg("GET")
                        .arg("PX")
                        .arg(HORIZON_MS)
                        .query_async(&mut c)
                        .await
                        .expect("SET NX GET");
                    assert!(value.is_some());
                })
            }),
        ));
        variants.push((
            "RedisStore::claim (completed)",
            Box::new(move || {
                Box::pin(async move {
                    let (_, outcome) = store_claim(store, idem_key).await;
                    assert!(matches!(outcome, ClaimOutcome::Completed(_)));
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
    }
    compare(variants).await;
    clear(store).await;
    redis::cmd("DEL")
        .arg(get_key)
        .exec_async(&mut conn.clone())
        .await
        .expect("DEL");
}

/// A raw `GET` of `key` on `conn` that finds a value, as a variant.
fn raw_get<'a, C>(name: &'a str, conn: &'a C, key: &'a str) -> Variant<'a>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    (
        name,
        Box::new(move || {
            Box::pin(async move {
                let mut c = conn.clone();
                let value: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut c)
                    .await
                    .expect("GET");
                assert!(value.is_some());
            })
        }),
    )
}

/// A `ConnectionManager` on the standalone server at `url`.
async fn manager(url: &str) -> redis::aio::ConnectionManager {
    redis::Client::open(url)
        .expect("a Redis URL")
        .get_connection_manager()
        .await
        .expect("connecting to the standalone server")
}

/// A cluster connection to the nodes of the `redis+cluster://` URL `url`.
async fn cluster_conn(url: &str) -> redis::cluster_async::ClusterConnection {
    redis::cluster::ClusterClient::new(cluster_nodes(url))
        .expect("cluster URL")
        .get_async_connection()
        .await
        .expect("connecting to the cluster")
}

/// The store every PostgreSQL comparison uses (`STENT_POSTGRES_URL`, `bench_` tables).
async fn postgres_store() -> PostgresStore {
    PostgresStore::builder()
        .url(env_url("STENT_POSTGRES_URL"))
        .table_prefix("bench_")
        .expect("a table prefix")
        .build()
        .await
        .expect("connecting stent to STENT_POSTGRES_URL")
}

/// Empties both namespaces of `store` after a comparison.
async fn clear(store: &dyn ResultStore) {
    for ns in Namespace::ALL {
        store.clear(ns).await.expect("clearing");
    }
}

/// The node URLs of a `redis+cluster://` URL.
fn cluster_nodes(url: &str) -> Vec<String> {
    url.trim_start_matches("redis+cluster://")
        .split(',')
        .map(|n| format!("redis://{n}"))
        .collect()
}

/// The `PX` of a natively claimed record (`stent_redis`'s layout).
const HORIZON_MS: i64 = 10_000_000_000_000;

/// The record a claim of `bench::charge` writes with `SET … NX GET`, as the store builds it.
fn claim_record(token: &LeaseToken) -> String {
    format!(
        "stent1|in_progress|{}|1||||||30000|{HORIZON_MS}|17|f13:bench::charge",
        token.as_str()
    )
}

/// What a first call asks of the server, sent by the raw driver: stent's native claim and
/// completion script, next to scripts that do less. Next to the store's claim + complete, it
/// splits the time between the server's work and the store's own code.
async fn bare_scripts<'a, C>(
    conn: C,
    prefix: &'a str,
    fresh: &'a Fresh,
    value: &'a [u8],
) -> Vec<Variant<'a>>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    let common = include_str!("../../stent-redis/lua/common.lua");
    let conn: &'a C = Box::leak(Box::new(conn));
    let mut variants: Vec<Variant<'a>> = Vec::new();
    for (name, source) in [
        (
            "bare SET NX GET + complete script",
            format!(
                "{common}{}",
                include_str!("../../stent-redis/lua/complete.lua")
            ),
        ),
        (
            "bare SET NX GET + a script that only answers",
            "return {'completed'}".to_owned(),
        ),
        (
            "bare SET NX GET + a script of one SET",
            "redis.call('SET', KEYS[1], 'stent1|completed||1|0||0|||||0|' .. ARGV[2]) \
             return {'completed'}"
                .to_owned(),
        ),
        (
            "bare SET NX GET + a script of GET, TIME, SET",
            "local r = redis.call('GET', KEYS[1]) local t = redis.call('TIME') \
             redis.call('SET', KEYS[1], r .. ARGV[2]) return {'completed'}"
                .to_owned(),
        ),
        (
            "bare SET NX GET + a script of GET, PEXPIRETIME, TIME, SET PXAT",
            "local r = redis.call('GET', KEYS[1]) local at = redis.call('PEXPIRETIME', KEYS[1]) \
             local t = redis.call('TIME') \
             redis.call('SET', KEYS[1], r .. ARGV[2], 'PXAT', at + 60000) return {'completed'}"
                .to_owned(),
        ),
    ] {
        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(source)
            .query_async(&mut conn.clone())
            .await
            .expect("SCRIPT LOAD");
        let complete: &'a str = Box::leak(sha.into_boxed_str());
        variants.push((
            name,
            Box::new(move || {
                Box::pin(async move {
                    let mut c = conn.clone();
                    let key = format!("{prefix}:idempotency:{}", fresh.next());
                    let token = LeaseToken::generate();
                    native_claim(&mut c, &key, &claim_record(&token)).await;
                    let _: redis::Value = redis::cmd("EVALSHA")
                        .arg(complete)
                        .arg(1)
                        .arg(&key)
                        .arg(format!("stent1|in_progress|{}|", token.as_str()))
                        .arg(value)
                        .arg("")
                        .arg(-1)
                        .query_async(&mut c)
                        .await
                        .expect("complete script");
                })
            }),
        ));
    }
    variants
}

/// The claim of the fresh `key` as the store makes it natively: `SET … NX GET` of the
/// in-progress record `claimed`, which must find nothing.
async fn native_claim<C>(conn: &mut C, key: &str, claimed: &str)
where
    C: redis::aio::ConnectionLike + Send,
{
    let found: Option<Vec<u8>> = redis::cmd("SET")
        .arg(key)
        .arg(claimed)
        .arg("NX")
        .arg("GET")
        .arg("PX")
        .arg(HORIZON_MS)
        .query_async(conn)
        .await
        .expect("SET NX GET");
    assert!(found.is_none(), "acquired");
}

/// The raw driver's two writes of a fresh record, as a variant.
fn two_sets<'a, C>(raw: RedisRaw<C>, fresh: &'a Fresh, value: &'a [u8]) -> Variant<'a>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    let raw: &'a RedisRaw<C> = Box::leak(Box::new(raw));
    (
        "raw two SETs",
        Box::new(move || Box::pin(async move { raw.two_writes(&fresh.next(), value).await })),
    )
}

/// First calls on fresh keys: the raw driver's two writes, the store's claim + complete, and
/// stent's idempotent first call, on standalone Redis or (`cluster`) Redis Cluster.
async fn redis_miss(cluster: bool) {
    let prefix = "stent-bench-interleaved-miss";
    let (url, builder) = if cluster {
        let url = env_url(clustered());
        (url.clone(), RedisStore::builder().url(url))
    } else {
        let url = env_url(standalone());
        (url.clone(), RedisStore::builder().url(url))
    };
    let store = builder
        .prefix(prefix)
        .build()
        .await
        .expect("connecting stent to Redis");
    let f = Functions::new(&Stent::new(store.clone()));
    let fresh = Fresh::new("miss");
    let value = stored_value("ord-000042");
    let (f, store, fresh, value) = (&f, &store, &fresh, value.as_slice());
    let raw: Variant<'_> = if cluster {
        let conn = cluster_conn(&url).await;
        two_sets(RedisRaw::new(conn, prefix), fresh, value)
    } else {
        let conn = manager(&url).await;
        two_sets(RedisRaw::new(conn, prefix), fresh, value)
    };
    let scripts: Vec<Variant<'_>> = if cluster {
        let conn = cluster_conn(&url).await;
        bare_scripts(conn, prefix, fresh, value).await
    } else {
        let conn = manager(&url).await;
        bare_scripts(conn, prefix, fresh, value).await
    };
    let mut variants = vec![raw];
    variants.extend(scripts);
    variants.push((
        "RedisStore::claim + complete",
        Box::new(move || {
            Box::pin(async move {
                store_claim_complete(store, &fresh.next(), value).await;
            })
        }),
    ));
    variants.push((
        "stent idempotent first call",
        Box::new(move || {
            Box::pin(async move {
                let id = fresh.next();
                f.idempotent.call((id, 500)).await.expect("first call");
            })
        }),
    ));
    compare(variants).await;
    clear(store).await;
}

/// First calls on PostgreSQL: the raw driver's `INSERT` + `UPDATE` (as the `postgres` bench
/// makes them), the store's claim + complete, and the wrapper.
async fn postgres_miss() {
    let store = postgres_store().await;
    let raw = PostgresRaw::new(&store);
    misses(&Stent::new(store), &raw, "PostgresStore", CALLS).await;
}

async fn postgres() {
    let store = postgres_store().await;
    let f = Functions::new(&Stent::new(store.clone()));
    f.cached.call(hit_args()).await.expect("seeding");
    f.idempotent.call(hit_args()).await.expect("seeding");
    let key = f.cached.key_for(&hit_args()).expect("a key");
    let idem_key = f.idempotent.key_for(&hit_args()).expect("a key");
    let idem_key = idem_key.as_str();
    let table = store.table(Namespace::Cache).to_owned();
    let narrow = format!("SELECT value FROM \"{table}\" WHERE key = $1");
    let wide = format!(
        "SELECT key, state, value, lease_token, lease_expires_at, attempt, fingerprint, \
         function, version, created_at, completed_at, expires_at FROM \"{table}\" \
         WHERE key = $1 AND (expires_at IS NULL OR expires_at > now())"
    );
    let pool = store.pool().clone();
    let (pool, store, f, key) = (&pool, &store, &f, key.as_str());
    let (narrow, wide) = (narrow.as_str(), wide.as_str());
    let query = move |sql: &'static str| -> Variant<'_> {
        let text = if sql == "narrow" { narrow } else { wide };
        (
            if sql == "narrow" {
                "raw SELECT value"
            } else {
                "SELECT of the 12 columns get reads"
            },
            Box::new(move || {
                Box::pin(async move {
                    let row = sqlx::query(AssertSqlSafe(text))
                        .bind(key)
                        .fetch_optional(pool)
                        .await
                        .expect("SELECT");
                    assert!(row.is_some());
                })
            }),
        )
    };
    compare(vec![
        query("narrow"),
        query("wide"),
        (
            "PostgresStore::get",
            Box::new(move || {
                Box::pin(async move {
                    assert!(
                        store
                            .get(Namespace::Cache, key)
                            .await
                            .expect("get")
                            .is_some()
                    );
                })
            }),
        ),
        (
            "stent cache hit",
            Box::new(move || {
                Box::pin(async move {
                    f.cached.call(hit_args()).await.expect("hit");
                })
            }),
        ),
        (
            "PostgresStore::claim (completed)",
            Box::new(move || {
                Box::pin(async move {
                    let (_, outcome) = store_claim(store, idem_key).await;
                    assert!(matches!(outcome, ClaimOutcome::Completed(_)));
                })
            }),
        ),
        (
            "stent idempotent replay",
            Box::new(move || {
                Box::pin(async move {
                    f.idempotent.call(hit_args()).await.expect("replay");
                })
            }),
        ),
    ])
    .await;
    clear(store).await;
}

/// A store on a file of a temporary directory, as the `sqlite` bench; the file goes with the
/// directory.
async fn temp_sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(dir.path().join("bench.db"))
        .await
        .expect("opening the SQLite file");
    (dir, store)
}

/// Hits on any backend: the raw driver's read of the cached record, the store's `get`, a
/// cache hit, the store's `claim` of a completed key and a replay. `store` names the store
/// as the targets table looks it up; `calls` per variant and round (moto is slow).
async fn hits<R: Raw>(stent: &Stent, raw: &R, store: &str, calls: u32) {
    hits_led(stent, raw, store, calls, Vec::new()).await;
}

/// [`hits`] with `lead` before the raw driver's read: the variant the ratios are to.
async fn hits_led<'a, R: Raw>(
    stent: &'a Stent,
    raw: &'a R,
    store: &str,
    calls: u32,
    lead: Vec<Variant<'a>>,
) {
    let backend = stent.store().as_ref();
    // A run cut short leaves its records in a server that outlives it (moto's table).
    clear(backend).await;
    let f = Functions::new(stent);
    f.cached.call(hit_args()).await.expect("seeding");
    f.idempotent.call(hit_args()).await.expect("seeding");
    let key = f.cached.key_for(&hit_args()).expect("a key");
    let idem_key = f.idempotent.key_for(&hit_args()).expect("a key");
    // Leaked, to live as long as `lead`'s borrows (a variant's lifetime cannot shrink).
    let leak = |s: String| -> &'a str { Box::leak(s.into_boxed_str()) };
    let names = [
        leak(format!("{store}::get")),
        leak(format!("{store}::claim (completed)")),
    ];
    let (key, idem_key) = (
        leak(key.as_str().to_owned()),
        leak(idem_key.as_str().to_owned()),
    );
    let f: &'a Functions = Box::leak(Box::new(f));
    let mut variants = lead;
    variants.extend::<Vec<Variant<'_>>>(vec![
        (
            "raw read",
            Box::new(move || {
                Box::pin(async move {
                    assert!(raw.read(Namespace::Cache, key).await);
                })
            }),
        ),
        (
            names[0],
            Box::new(move || {
                Box::pin(async move {
                    let found = backend.get(Namespace::Cache, key).await.expect("get");
                    assert!(found.is_some());
                })
            }),
        ),
        (
            "stent cache hit",
            Box::new(move || {
                Box::pin(async move {
                    f.cached.call(hit_args()).await.expect("hit");
                })
            }),
        ),
        (
            names[1],
            Box::new(move || {
                Box::pin(async move {
                    let (_, outcome) = store_claim(backend, idem_key).await;
                    assert!(matches!(outcome, ClaimOutcome::Completed(_)));
                })
            }),
        ),
        (
            "stent idempotent replay",
            Box::new(move || {
                Box::pin(async move {
                    f.idempotent.call(hit_args()).await.expect("replay");
                })
            }),
        ),
    ]);
    compare_calls(
        variants,
        calls,
        Some(Box::new(move || Box::pin(raw.settle()))),
    )
    .await;
    clear(backend).await;
}

/// First calls on any backend: the raw driver's two writes of a fresh record, the store's
/// claim + complete, and the wrapper's first call.
async fn misses<R: Raw>(stent: &Stent, raw: &R, store: &str, calls: u32) {
    misses_with(stent, raw, store, calls, Vec::new(), Vec::new()).await;
}

/// [`misses`] with `lead` before the raw driver's two writes (the variant the ratios are
/// to, when there is one) and `extra` after them, for reference.
async fn misses_with<'a, R: Raw>(
    stent: &'a Stent,
    raw: &'a R,
    store: &str,
    calls: u32,
    lead: Vec<Variant<'a>>,
    extra: Vec<Variant<'a>>,
) {
    let backend = stent.store().as_ref();
    // Fresh keys repeat from run to run: a run cut short must not leave them taken.
    clear(backend).await;
    let f = Functions::new(stent);
    let fresh = Fresh::new("miss");
    let value = stored_value("ord-000042");
    let name = format!("{store}::claim + complete");
    // Leaked, to outlive `extra`'s borrows (a variant's lifetime cannot shrink).
    let (f, fresh, value): (&'a Functions, &'a Fresh, &'a [u8]) = (
        Box::leak(Box::new(f)),
        Box::leak(Box::new(fresh)),
        Box::leak(value.into_boxed_slice()),
    );
    let name: &'a str = Box::leak(name.into_boxed_str());
    let mut variants = lead;
    variants.push((
        "raw two writes",
        Box::new(move || {
            Box::pin(async move {
                raw.two_writes(&fresh.next(), value).await;
            })
        }),
    ));
    variants.extend(extra);
    variants.extend::<Vec<Variant<'a>>>(vec![
        (
            name,
            Box::new(move || {
                Box::pin(async move {
                    store_claim_complete(backend, &fresh.next(), value).await;
                })
            }),
        ),
        (
            "stent idempotent first call",
            Box::new(move || {
                Box::pin(async move {
                    f.idempotent
                        .call((fresh.next(), 500))
                        .await
                        .expect("first call");
                })
            }),
        ),
    ]);
    compare_calls(
        variants,
        calls,
        Some(Box::new(move || Box::pin(raw.settle()))),
    )
    .await;
    clear(backend).await;
}

/// SQLite hits and replays: a store on a file of a temporary directory, next to sqlx's
/// `SELECT value` on the store's pool.
async fn sqlite_hits() {
    let (_dir, store) = temp_sqlite().await;
    let raw = SqliteRaw::new(&store);
    hits(&Stent::new(store), &raw, "SqliteStore", CALLS).await;
}

/// SQLite first calls: a store on a file of a temporary directory, as the `sqlite` bench.
async fn sqlite_miss() {
    let (_dir, store) = temp_sqlite().await;
    let raw = SqliteRaw::new(&store);
    let stent = Stent::new(store);
    // The store writes on a connection of its own; the raw driver's two writes through the
    // pool pay its acquire and release around each statement. The same two writes on one
    // held connection show what the statements cost alone.
    let held = tokio::sync::Mutex::new(raw.connection().await);
    let fresh = Fresh::new("held");
    let (raw_ref, held, fresh) = (&raw, &held, &fresh);
    let value = stored_value("ord-000042");
    let value: &[u8] = Box::leak(value.into_boxed_slice());
    let extra: Vec<Variant<'_>> = vec![(
        "raw two writes, one held connection",
        Box::new(move || {
            Box::pin(async move {
                let mut conn = held.lock().await;
                raw_ref.two_writes_on(&mut conn, &fresh.next(), value).await;
            })
        }),
    )];
    misses_with(&stent, &raw, "SqliteStore", CALLS, Vec::new(), extra).await;
}

/// A transactional first call ([`stent::DurableBuilder::wrap_tx`]) whose function inserts one
/// effect row, next to the same transaction written by hand with sqlx: `$begin`, the effect's
/// `INSERT`, `$record` (the completed record's `INSERT` into table `{t}`), `COMMIT`, on the
/// store's pool of `$db` connections and on one connection held for the run. Also by hand on
/// the pool, the same transaction made idempotent as stent's is: `$claim` (the key's row, in
/// progress, which a duplicate would wait on) before the effect, and `$complete` (the result
/// into that row) after it.
macro_rules! transactional {
    ($store:expr, $db:ty, $begin:literal, $record:literal, $claim:literal, $complete:literal) => {{
        let store = $store;
        let create =
            "CREATE TABLE IF NOT EXISTS bench_effects (key TEXT PRIMARY KEY, value TEXT NOT NULL)";
        let pool = store.pool();
        sqlx::query(create)
            .execute(pool)
            .await
            .expect("the effects table");
        let stent = Stent::new(store.clone());
        let post =
            stent
                .durable("bench::post")
                .wrap_tx(&store, |tx, (key, cents): (String, i64)| {
                    Box::pin(async move {
                        sqlx::query("INSERT INTO bench_effects (key, value) VALUES ($1, $2)")
                            .bind(&key)
                            .bind(cents.to_string())
                            .execute(&mut *tx)
                            .await?;
                        Ok::<_, sqlx::Error>(cents)
                    })
                });
        let t = store.table(Namespace::Idempotency);
        let (record, claim) = (format!($record, t = t), format!($claim, t = t));
        let complete = format!($complete, t = t);
        let (claim, complete) = (claim.as_str(), complete.as_str());
        let value = stored_value("ord-000042");
        let fresh = Fresh::new("tx");
        let held = pool.acquire().await.expect("a held connection").detach();
        let held = tokio::sync::Mutex::new(held);
        let (post, record, fresh, value) = (&post, record.as_str(), &fresh, value.as_slice());
        let held = &held;
        // The hand-written transaction's statements in `tx`: the claim if there is one, the
        // effect, then `write` (the record, or the result into the claimed row), `COMMIT`.
        let by_hand =
            async move |mut tx: sqlx::Transaction<'_, $db>, claim: Option<&str>, write| {
                let key = fresh.next();
                if let Some(claim) = claim {
                    let claimed = sqlx::query(AssertSqlSafe(claim))
                        .bind(&key)
                        .execute(&mut *tx)
                        .await
                        .expect("the claim");
                    assert_eq!(claimed.rows_affected(), 1, "a fresh key is claimed");
                }
                sqlx::query("INSERT INTO bench_effects (key, value) VALUES ($1, $2)")
                    .bind(&key)
                    .bind("500")
                    .execute(&mut *tx)
                    .await
                    .expect("the effect");
                sqlx::query(AssertSqlSafe(write))
                    .bind(&key)
                    .bind(value)
                    .execute(&mut *tx)
                    .await
                    .expect("the record");
                tx.commit().await.expect("commit");
            };
        let by_hand = &by_hand;
        compare(vec![
            (
                "hand-written transaction",
                Box::new(move || {
                    Box::pin(async move {
                        let tx = pool.begin_with($begin).await.expect("begin");
                        by_hand(tx, None, record).await;
                    })
                }),
            ),
            (
                "hand-written transaction, one held connection",
                Box::new(move || {
                    Box::pin(async move {
                        let mut conn = held.lock().await;
                        let tx = sqlx::Connection::begin_with(&mut *conn, $begin).await;
                        by_hand(tx.expect("begin"), None, record).await;
                    })
                }),
            ),
            (
                "hand-written idempotent transaction",
                Box::new(move || {
                    Box::pin(async move {
                        let tx = pool.begin_with($begin).await.expect("begin");
                        by_hand(tx, Some(claim), complete).await;
                    })
                }),
            ),
            (
                "stent transactional first call",
                Box::new(move || {
                    Box::pin(async move {
                        post.call((fresh.next(), 500)).await.expect("first call");
                    })
                }),
            ),
        ])
        .await;
        clear(&store).await;
        sqlx::query("DROP TABLE bench_effects")
            .execute(pool)
            .await
            .expect("dropping");
    }};
}

async fn sqlite_transactional() {
    let (_dir, store) = temp_sqlite().await;
    transactional!(
        store,
        sqlx::Sqlite,
        "BEGIN IMMEDIATE",
        "INSERT INTO \"{t}\" (key, state, value, attempt, created_ms, completed_ms) \
         VALUES ($1, 'completed', $2, 1, 0, 0)",
        "INSERT INTO \"{t}\" (key, state, lease_token, lease_expires_ms, attempt, created_ms) \
         VALUES ($1, 'in_progress', 'token', 0, 1, 0) ON CONFLICT (key) DO NOTHING",
        "UPDATE \"{t}\" SET state = 'completed', value = $2, lease_token = NULL, \
         lease_expires_ms = NULL, completed_ms = 0 WHERE key = $1"
    );
}

async fn postgres_transactional() {
    transactional!(
        postgres_store().await,
        sqlx::Postgres,
        "BEGIN",
        "INSERT INTO {t} (key, state, value, attempt, completed_at) \
         VALUES ($1, 'completed', $2, 1, now())",
        "INSERT INTO {t} (key, state, lease_token, lease_expires_at) \
         VALUES ($1, 'in_progress', 'token', now() + interval '30 seconds') \
         ON CONFLICT (key) DO NOTHING",
        "UPDATE {t} SET state = 'completed', value = $2, lease_token = NULL, \
         lease_expires_at = NULL, completed_at = now() WHERE key = $1"
    );
}

/// moto's calls take milliseconds: fewer per round.
const MOTO_CALLS: u32 = 10;

async fn dynamodb(miss: bool) {
    let store = dynamodb_store().await;
    let raw = DynamoDbRaw::new(store.clone());
    let stent = Stent::new(store);
    if miss {
        misses(&stent, &raw, "DynamoDbStore", MOTO_CALLS).await;
    } else {
        hits(&stent, &raw, "DynamoDbStore", MOTO_CALLS).await;
    }
}

/// The wrapper alone: a store in memory, whose own `get` and `put` are the base.
async fn memory() {
    let stent = Stent::new(MemoryStore::new());
    let raw = MemoryRaw(stent.store().clone());
    hits(&stent, &raw, "MemoryStore", CALLS).await;
    misses(&stent, &raw, "MemoryStore", CALLS).await;
}

/// `MemoryStore`'s own operations in place of a raw driver: no round trip, so the ratios of
/// the `memory` comparison are what the wrapper adds.
struct MemoryRaw(Arc<dyn ResultStore>);

impl Raw for MemoryRaw {
    async fn read(&self, ns: Namespace, key: &str) -> bool {
        self.0.get(ns, key).await.expect("get").is_some()
    }

    async fn two_writes(&self, key: &str, value: &[u8]) {
        let meta = stent::RecordMeta::default();
        for _ in 0..2 {
            let ns = Namespace::Idempotency;
            self.0.put(ns, key, value, None, meta).await.expect("put");
        }
    }

    async fn read_then_write(&self, key: &str, value: &[u8]) {
        self.read(Namespace::Cache, key).await;
        let meta = stent::RecordMeta::default();
        let ns = Namespace::Cache;
        self.0.put(ns, key, value, None, meta).await.expect("put");
    }
}

/// Callers of the storm's hot key, each through a wrapper of its own, as callers in as many
/// processes would make their calls.
const STORM_CALLERS: usize = 64;
/// The hot key's TTL.
const STORM_TTL: Duration = Duration::from_millis(200);
/// How long one origin call takes.
const STORM_WORK: Duration = Duration::from_millis(50);
/// Each caller's pause between two calls.
const STORM_PACE: Duration = Duration::from_millis(5);
/// How long each variant's round lasts (5 TTLs), and how many rounds.
const STORM_ROUND: Duration = Duration::from_secs(1);
const STORM_ROUNDS: usize = 6;

/// What the hot key's function does against the origin it protects.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protection {
    /// `.cached().ttl(200 ms)`.
    Plain,
    /// `… .single_flight()`.
    SingleFlight,
    /// `… .stale_while_revalidate(10 s)`.
    StaleWhileRevalidate,
    /// `… .early_refresh(1.0)`.
    EarlyRefresh,
}

/// The origin's start times during a timed round.
#[derive(Default)]
struct Origin {
    recording: AtomicBool,
    calls: Mutex<Vec<Instant>>,
}

impl Origin {
    fn record(&self) {
        if self.recording.load(Ordering::Relaxed) {
            self.calls.lock().unwrap().push(Instant::now());
        }
    }

    /// Ends a round: its origin calls, and how many expiries they answered. The calls that
    /// answer one expiry all start while the value is missing or stale, within the origin
    /// call's time of the first; the next expiry comes a TTL after the value is stored
    /// again. So a call starting more than half a TTL after the first call of the current
    /// expiry starts the next one.
    fn take(&self) -> (usize, usize) {
        self.recording.store(false, Ordering::Relaxed);
        let mut calls = std::mem::take(&mut *self.calls.lock().unwrap());
        calls.sort();
        let mut expiries = 0;
        let mut first: Option<Instant> = None;
        for &at in &calls {
            if first.is_none_or(|f| at.duration_since(f) > STORM_TTL / 2) {
                expiries += 1;
                first = Some(at);
            }
        }
        (calls.len(), expiries)
    }
}

/// The storm's function with `protection`, one wrapper per caller.
fn storm_callers(
    stent: &Stent,
    protection: Protection,
    origin: &Arc<Origin>,
) -> Vec<Durable<String, String, Infallible>> {
    let name = match protection {
        Protection::Plain => "bench::storm::plain",
        Protection::SingleFlight => "bench::storm::single_flight",
        Protection::StaleWhileRevalidate => "bench::storm::stale_while_revalidate",
        Protection::EarlyRefresh => "bench::storm::early_refresh",
    };
    (0..STORM_CALLERS)
        .map(|_| {
            let b = stent.durable(name).cached().ttl(STORM_TTL);
            let b = match protection {
                Protection::Plain => b,
                Protection::SingleFlight => b.single_flight(),
                Protection::StaleWhileRevalidate => {
                    b.stale_while_revalidate(Duration::from_secs(10))
                }
                Protection::EarlyRefresh => b.early_refresh(1.0),
            };
            let origin = Arc::clone(origin);
            b.wrap(move |key: String| {
                origin.record();
                async move {
                    tokio::time::sleep(STORM_WORK).await;
                    Ok::<_, Infallible>(format!("{key}-value"))
                }
            })
        })
        .collect()
}

/// One variant of the storm: every caller calls the hot key (`raw` reads it with the raw
/// driver instead) every [`STORM_PACE`] for one round.
struct StormVariant<R> {
    name: &'static str,
    callers: Vec<Durable<String, String, Infallible>>,
    raw: Option<Arc<R>>,
    origin: Arc<Origin>,
    latencies: Vec<Duration>,
    calls: usize,
    expiries: usize,
}

impl<R: Raw> StormVariant<R> {
    async fn round(&mut self, raw_key: &Arc<str>) {
        if let Some(f) = self.callers.first() {
            // Each round starts with the value just stored, untimed.
            f.invalidate(&"hot".to_owned()).await.expect("invalidate");
            f.call("hot".to_owned()).await.expect("warm-up");
            self.origin.recording.store(true, Ordering::Relaxed);
        }
        let end = Instant::now() + STORM_ROUND;
        let tasks: Vec<_> = (0..STORM_CALLERS)
            .map(|i| {
                let f = self.callers.get(i).cloned();
                let (raw, raw_key) = (self.raw.clone(), Arc::clone(raw_key));
                tokio::spawn(async move {
                    let mut took = Vec::new();
                    while Instant::now() < end {
                        let started = Instant::now();
                        match (&f, &raw) {
                            (Some(f), _) => drop(f.call("hot".to_owned()).await.expect("call")),
                            (None, Some(raw)) => drop(raw.read(Namespace::Cache, &raw_key).await),
                            (None, None) => unreachable!("a variant calls something"),
                        }
                        took.push(started.elapsed());
                        tokio::time::sleep(STORM_PACE).await;
                    }
                    took
                })
            })
            .collect();
        for t in tasks {
            self.latencies.extend(t.await.expect("a caller panicked"));
        }
        let (calls, expiries) = self.origin.take();
        self.calls += calls;
        self.expiries += expiries;
        // Let a refresh started at the end of the round finish before the next variant.
        tokio::time::sleep(STORM_WORK * 2).await;
    }

    fn print(&mut self) {
        self.latencies.sort();
        let at = |q: f64| {
            let n = self.latencies.len();
            self.latencies[((n as f64 * q).ceil() as usize).clamp(1, n) - 1]
        };
        let per_expiry = if self.callers.is_empty() {
            "–".to_owned()
        } else {
            format!(
                "{:.2} ({} calls, {} expiries)",
                self.calls as f64 / self.expiries.max(1) as f64,
                self.calls,
                self.expiries
            )
        };
        println!(
            "{:>28}: origin calls per expiry {per_expiry}; caller p50 {:.1?}, p99 {:.1?}, \
             max {:.1?} over {} calls",
            self.name,
            at(0.5),
            at(0.99),
            at(1.0),
            self.latencies.len()
        );
    }
}

/// The expiry storm on `stent`'s store: [`STORM_CALLERS`] callers, each through a wrapper of
/// its own, call one cached key whose TTL is 200 ms and whose function takes 50 ms, every
/// 5 ms, for a round of 1 s per variant; the variants (the raw driver reading the key, plain
/// caching, single flight, stale-while-revalidate) alternate over 6 rounds, each round in a
/// rotated order. Prints, for each, the origin calls per expiry and the callers' latency.
async fn storm<R: Raw>(stent: &Stent, raw: R, label: &str) {
    let backend = stent.store().as_ref();
    clear(backend).await;
    let raw = Arc::new(raw);
    let mut variants: Vec<StormVariant<R>> = vec![StormVariant {
        name: "raw read of the key",
        callers: Vec::new(),
        raw: Some(Arc::clone(&raw)),
        origin: Arc::default(),
        latencies: Vec::new(),
        calls: 0,
        expiries: 0,
    }];
    for (name, protection) in [
        ("plain caching", Protection::Plain),
        ("single_flight", Protection::SingleFlight),
        ("stale_while_revalidate", Protection::StaleWhileRevalidate),
        ("early_refresh(1.0)", Protection::EarlyRefresh),
    ] {
        let origin = Arc::new(Origin::default());
        variants.push(StormVariant {
            name,
            callers: storm_callers(stent, protection, &origin),
            raw: None,
            origin,
            latencies: Vec::new(),
            calls: 0,
            expiries: 0,
        });
    }
    let raw_key: Arc<str> = variants[1].callers[0]
        .key_for(&"hot".to_owned())
        .expect("a key")
        .into();
    println!("storm on {label}");
    let n = variants.len();
    for r in 0..STORM_ROUNDS {
        for k in 0..n {
            variants[(r + k) % n].round(&raw_key).await;
        }
    }
    for v in &mut variants {
        v.print();
    }
    clear(backend).await;
}

async fn storms(which: &str) {
    if which.is_empty() || which == "sqlite" {
        let (_dir, store) = temp_sqlite().await;
        let raw = SqliteRaw::new(&store);
        storm(&Stent::new(store), raw, "SQLite").await;
    }
    if which.is_empty() || which == "postgres" {
        let store = postgres_store().await;
        let raw = PostgresRaw::new(&store);
        storm(&Stent::new(store), raw, "PostgreSQL").await;
    }
    if which.is_empty() || which == "redis" {
        let url = env_url("STENT_REDIS_URL");
        let prefix = "stent-bench-storm";
        let store = RedisStore::builder()
            .url(url.as_str())
            .prefix(prefix)
            .build()
            .await
            .expect("connecting stent to Redis");
        let raw = RedisRaw::new(manager(&url).await, prefix);
        storm(&Stent::new(store), raw, "Redis").await;
    }
}

/// Hot-key hits and replays with a [`LocalTier`] in front of each store, next to the same
/// calls without it; the base is the raw driver's read of the cached record.
async fn local_tiers(which: &str) {
    if which.is_empty() || which == "sqlite" {
        let (_dir, store) = temp_sqlite().await;
        let raw = SqliteRaw::new(&store);
        local_tier(Arc::new(store), &raw, CALLS).await;
    }
    if which.is_empty() || which == "postgres" {
        let store = postgres_store().await;
        let raw = PostgresRaw::new(&store);
        local_tier(Arc::new(store), &raw, CALLS).await;
    }
    if which.is_empty() || which == "redis" {
        let url = env_url("STENT_REDIS_URL");
        let prefix = "stent-bench-local";
        let store = RedisStore::builder()
            .url(url.as_str())
            .prefix(prefix)
            .build()
            .await
            .expect("connecting stent to Redis");
        let raw = RedisRaw::new(manager(&url).await, prefix);
        local_tier(Arc::new(store), &raw, CALLS).await;
    }
    if which.is_empty() || which == "dynamodb" {
        let store = dynamodb_store().await;
        let raw = DynamoDbRaw::new(store.clone());
        local_tier(Arc::new(store), &raw, MOTO_CALLS).await;
    }
}

async fn local_tier<R: Raw>(store: Arc<dyn ResultStore>, raw: &R, calls: u32) {
    println!("\n{store:?}");
    clear(store.as_ref()).await;
    let plain = Functions::new(&Stent::from_arc(Arc::clone(&store)));
    let tier =
        LocalTier::new(Arc::clone(&store), 10_000, 64 << 20).local_ttl(Duration::from_secs(600));
    let tiered = Functions::new(&Stent::new(tier));
    for f in [&plain, &tiered] {
        f.cached.call(hit_args()).await.expect("seeding");
        f.idempotent.call(hit_args()).await.expect("seeding");
    }
    let key = plain.cached.key_for(&hit_args()).expect("a key");
    let (key, plain, tiered) = (key.as_str(), &plain, &tiered);
    compare_calls(
        vec![
            (
                "raw read",
                Box::new(move || {
                    Box::pin(async move { assert!(raw.read(Namespace::Cache, key).await) })
                }),
            ),
            (
                "stent cache hit",
                Box::new(move || {
                    Box::pin(async move { drop(plain.cached.call(hit_args()).await.expect("hit")) })
                }),
            ),
            (
                "stent replay",
                Box::new(move || {
                    Box::pin(async move {
                        drop(plain.idempotent.call(hit_args()).await.expect("replay"))
                    })
                }),
            ),
            (
                "stent cache hit, local tier",
                Box::new(move || {
                    Box::pin(
                        async move { drop(tiered.cached.call(hit_args()).await.expect("hit")) },
                    )
                }),
            ),
            (
                "stent replay, local tier",
                Box::new(move || {
                    Box::pin(async move {
                        drop(tiered.idempotent.call(hit_args()).await.expect("replay"))
                    })
                }),
            ),
        ],
        calls,
        Some(Box::new(move || Box::pin(raw.settle()))),
    )
    .await;
    clear(store.as_ref()).await;
}

/// The variable naming the standalone server of the `redis*` and `valkey*` comparisons.
static STANDALONE: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// The leanest client's read of the record a hit or replay reads, as a [`Variant`].
fn lean_read<R: Raw>(lean: &R, ns: Namespace, key: String) -> Variant<'_> {
    let key: &str = Box::leak(key.into_boxed_str());
    (
        "leanest client's read",
        Box::new(move || Box::pin(async move { assert!(lean.read(ns, key).await) })),
    )
}

/// The leanest client's two writes of a fresh record, as a [`Variant`].
fn lean_writes<'a, R: Raw>(lean: &'a R, fresh: &'a Fresh, value: &'a [u8]) -> Variant<'a> {
    (
        "leanest client's two writes",
        Box::new(move || Box::pin(async move { lean.two_writes(&fresh.next(), value).await })),
    )
}

/// How far stent is from each SQL server's own limit (BENCHMARKS.md, "Distance to the
/// limit"): on SQLite and PostgreSQL (`limits sqlite`, `limits postgres` for one), a cache hit,
/// a replay and the store's raw read next to the leanest client's read of the same record,
/// then a first call next to the leanest client's two writes; every ratio is to the leanest.
async fn limits(which: &str) {
    let value = stored_value("ord-000042");
    let fresh = Fresh::new("lean");
    let key = |stent: &Stent, ns| {
        let f = Functions::new(stent);
        let f = if ns == Namespace::Cache {
            &f.cached
        } else {
            &f.idempotent
        };
        f.key_for(&hit_args()).expect("a key").as_str().to_owned()
    };
    if which.is_empty() || which == "sqlite" {
        let (_dir, store) = temp_sqlite().await;
        let (lean, raw) = (SqliteLean::new(&store), SqliteRaw::new(&store));
        let stent = Stent::new(store);
        println!("SQLite, hits and replays (the leanest: rusqlite, held connection)");
        let lead = vec![lean_read(
            &lean,
            Namespace::Cache,
            key(&stent, Namespace::Cache),
        )];
        hits_led(&stent, &raw, "SqliteStore", CALLS, lead).await;
        println!("SQLite, first calls");
        let lead = vec![lean_writes(&lean, &fresh, &value)];
        misses_with(&stent, &raw, "SqliteStore", CALLS, lead, Vec::new()).await;
    }
    if which.is_empty() || which == "postgres" {
        let store = postgres_store().await;
        let (lean, raw) = (PostgresLean::new(&store).await, PostgresRaw::new(&store));
        let stent = Stent::new(store.clone());
        println!("PostgreSQL, hits and replays (the leanest: tokio-postgres, held connection)");
        let cache_key = key(&stent, Namespace::Cache);
        let held = tokio::sync::Mutex::new(store.pool().acquire().await.expect("a connection"));
        let sql = format!(
            "SELECT value FROM \"{}\" WHERE key = $1",
            store.table(Namespace::Cache)
        );
        let wide = format!(
            "SELECT key, state, value, lease_token, lease_expires_at, attempt, fingerprint, \
             function, version, created_at, completed_at, expires_at FROM \"{}\" \
             WHERE key = $1 AND (expires_at IS NULL OR expires_at > now())",
            store.table(Namespace::Cache)
        );
        let (held, k) = (&held, cache_key.as_str());
        let held_read = move |name: &'static str, sql: String| -> Variant<'_> {
            let sql: &str = Box::leak(sql.into_boxed_str());
            (
                name,
                Box::new(move || {
                    Box::pin(async move {
                        let mut conn = held.lock().await;
                        let row = sqlx::query(AssertSqlSafe(sql))
                            .bind(k)
                            .fetch_optional(&mut **conn);
                        assert!(row.await.expect("SELECT").is_some());
                    })
                }),
            )
        };
        let lead: Vec<Variant<'_>> = vec![
            lean_read(&lean, Namespace::Cache, cache_key.clone()),
            held_read("sqlx read, held connection", sql),
            held_read("sqlx get's SELECT, held connection", wide),
        ];
        hits_led(&stent, &raw, "PostgresStore", CALLS, lead).await;
        println!("PostgreSQL, first calls");
        let lead = vec![lean_writes(&lean, &fresh, &value)];
        misses_with(&stent, &raw, "PostgresStore", CALLS, lead, Vec::new()).await;
    }
}

fn standalone() -> &'static str {
    STANDALONE.get().copied().unwrap_or("STENT_REDIS_URL")
}

/// The variable naming the cluster of the `cluster*` and `valkey-cluster*` comparisons.
static CLUSTERED: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

fn clustered() -> &'static str {
    CLUSTERED
        .get()
        .copied()
        .unwrap_or("STENT_REDIS_CLUSTER_URL")
}

/// The servers that run the Redis comparisons under a prefix of their own (`valkey-miss`,
/// `redis8-cluster`, …): the prefix and the variables naming the server and the cluster.
const PREFIXED: [(&str, &str, &str); 2] = [
    ("valkey", "STENT_VALKEY_URL", "STENT_VALKEY_CLUSTER_URL"),
    ("redis8", "STENT_REDIS8_URL", "STENT_REDIS8_CLUSTER_URL"),
];

fn main() {
    let mut what = std::env::args().nth(1).unwrap_or_default();
    for (prefix, server, cluster) in PREFIXED {
        if let Some(rest) = what.strip_prefix(prefix) {
            STANDALONE.set(server).expect("set once");
            CLUSTERED.set(cluster).expect("set once");
            what = if rest == "-cluster" {
                "cluster"
            } else {
                "redis"
            }
            .to_owned();
            break;
        }
    }
    let rt = runtime();
    match what.as_str() {
        "memory" => rt.block_on(memory()),
        "sqlite" => rt.block_on(async {
            sqlite_hits().await;
            sqlite_miss().await;
            sqlite_transactional().await;
        }),
        "postgres" => rt.block_on(async {
            postgres().await;
            postgres_miss().await;
            postgres_transactional().await;
        }),
        "redis" | "cluster" => rt.block_on(async {
            redis(false, what == "cluster").await;
            redis_miss(what == "cluster").await;
        }),
        "transactional" => rt.block_on(async {
            sqlite_transactional().await;
            postgres_transactional().await;
        }),
        "cached" => rt.block_on(redis(true, false)),
        "storm" => rt.block_on(storms(&std::env::args().nth(2).unwrap_or_default())),
        "local" => rt.block_on(local_tiers(&std::env::args().nth(2).unwrap_or_default())),
        "limits" => rt.block_on(limits(&std::env::args().nth(2).unwrap_or_default())),
        "dynamodb" => rt.block_on(async {
            dynamodb(false).await;
            dynamodb(true).await;
        }),
        _ => panic!(
            "which comparison? memory, sqlite, postgres, redis, cluster, valkey, \
             valkey-cluster, redis8, redis8-cluster, dynamodb, cached, storm, local or limits"
        ),
    }
}
