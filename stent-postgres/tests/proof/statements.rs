//! What the statements do inside the server: no lock on a hit, safe concurrent
//! migration, a caller's pool, and keys at the length limit.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};
use stent_core::{
    Claim, ClaimOutcome, ErrorKind, LeaseToken, ListQuery, Namespace, RecordMeta, ResultStore,
};
use stent_postgres::{MAX_KEY_LEN, PostgresStore};

use crate::support;
use crate::wire::Wire;

const IDEM: Namespace = Namespace::Idempotency;
const LEASE: Duration = Duration::from_secs(30);

async fn store(test: &str, id: &str) -> Option<(PostgresStore, String)> {
    let url = support::url_or_skip(test)?;
    support::sweep_old_schemas(&url).await;
    let schema = support::schema_for(&format!("{id}{}", std::process::id()));
    Some((open(&url, &schema).await, schema))
}

/// A store on the tables of `schema`, with a pool of its own.
async fn open(url: &str, schema: &str) -> PostgresStore {
    PostgresStore::builder()
        .url(url)
        .schema(schema)
        .unwrap()
        .build()
        .await
        .unwrap()
}

async fn claim(store: &PostgresStore, key: &str, token: &LeaseToken) -> ClaimOutcome {
    let c = Claim {
        token,
        lease: LEASE,
        meta: RecordMeta::default(),
    };
    store.claim(IDEM, key, &c).await.unwrap()
}

/// `(xmin, xmax)` of a row: a new version changes xmin, a row lock sets xmax.
async fn versions(pool: &PgPool, schema: &str, key: &str) -> (String, String) {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT xmin::text, xmax::text FROM \"{schema}\".idempotency WHERE key = $1"
    )))
    .bind(key)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A claim on a completed or in-flight key reads only: no new row version, no row lock
/// (so no transaction id and no WAL flush on the hit path).
#[tokio::test]
async fn claim_on_a_completed_or_in_flight_key_takes_no_row_lock() {
    let Some((store, schema)) = store(
        "claim_on_a_completed_or_in_flight_key_takes_no_row_lock",
        "hit",
    )
    .await
    else {
        return;
    };
    let owner = LeaseToken::generate();
    assert!(matches!(
        claim(&store, "done", &owner).await,
        ClaimOutcome::Acquired { .. }
    ));
    store
        .complete(IDEM, "done", &owner, b"v", None)
        .await
        .unwrap();
    assert!(matches!(
        claim(&store, "running", &LeaseToken::generate()).await,
        ClaimOutcome::Acquired { .. }
    ));
    for key in ["done", "running"] {
        let before = versions(store.pool(), &schema, key).await;
        assert_eq!(before.1, "0", "{key}: row already locked");
        // Past the first five runs of a prepared statement, so the cached generic plan is checked too.
        for _ in 0..8 {
            match claim(&store, key, &LeaseToken::generate()).await {
                ClaimOutcome::Completed(_) | ClaimOutcome::InFlight(_) => {}
                other => panic!("{key}: unexpected {other:?}"),
            }
        }
        assert_eq!(
            versions(store.pool(), &schema, key).await,
            before,
            "{key}: the claim wrote or locked"
        );
    }
    // The same claims through connections that may not write: the claim function (an
    // INSERT) never runs for a record that stands, and does for one that does not.
    let url = support::url().unwrap();
    let opts = PgConnectOptions::from_str(&url).unwrap().options([
        ("search_path", schema.as_str()),
        ("default_transaction_read_only", "on"),
    ]);
    let pool = PgPoolOptions::new().connect_with(opts).await.unwrap();
    let reader = PostgresStore::builder()
        .pool(pool)
        .create_tables(false)
        .build()
        .await
        .unwrap();
    for key in ["done", "running"] {
        match claim(&reader, key, &LeaseToken::generate()).await {
            ClaimOutcome::Completed(_) | ClaimOutcome::InFlight(_) => {}
            other => panic!("{key}: unexpected {other:?}"),
        }
    }
    let c = Claim {
        token: &LeaseToken::generate(),
        lease: LEASE,
        meta: RecordMeta::default(),
    };
    let refused = reader.claim(IDEM, "absent", &c).await.unwrap_err();
    let cause = std::error::Error::source(&refused).map(ToString::to_string);
    assert!(
        cause.as_deref().is_some_and(|c| c.contains("read-only")),
        "an absent key's claim must write: {refused}: {cause:?}"
    );
}

/// The operation a statement the store sends is.
fn operation(sql: &str) -> &'static str {
    match sql.split_whitespace().next().unwrap_or_default() {
        "(SELECT" if sql.contains("UNION ALL") => "claim",
        "BEGIN;" => "begin",
        "COMMIT" => "commit",
        "ROLLBACK" => "rollback",
        "INSERT" if sql.contains("sends_effects") => "effect",
        "SELECT" => "get",
        "UPDATE" if sql.contains("state = 'completed'") => "complete",
        "UPDATE" => "renew",
        "INSERT" => "put",
        "DELETE" => "delete",
        // The writes that announce themselves (see the crate docs' broadcast section).
        "WITH" if sql.contains("INSERT") => "put",
        "WITH" if sql.contains("DELETE") => "delete",
        _ => panic!("an unexpected statement: {sql}"),
    }
}

/// The round trips `call` made through `wire`, each as the operations executed in it
/// (`[]` for a round trip that executed nothing: a statement prepared, or a ping).
async fn sends<F: std::future::Future<Output = ()>>(
    wire: &Wire,
    call: F,
) -> Vec<Vec<&'static str>> {
    wire.take();
    call.await;
    let trips = wire.take();
    trips
        .iter()
        .map(|t| t.iter().map(|sql| operation(sql)).collect())
        .collect()
}

/// Each call sends what the README's table of statements says, counted on the wire, the
/// same on every call: a first idempotent call a claim and a completion, a replay a claim,
/// a cache hit a read, a cache miss a read and a write, a transactional call its `BEGIN`,
/// claim, function, completion and `COMMIT`, each in a round trip of its own and nothing
/// else (no ping, no prepare once each statement has been prepared). Repeated, so that no
/// earlier call changes a later one's statements.
#[tokio::test]
async fn each_call_sends_what_the_readme_says() {
    let Some((_, schema)) = store("each_call_sends_what_the_readme_says", "sends").await else {
        return;
    };
    let opts = PgConnectOptions::from_str(&support::url().unwrap()).unwrap();
    let server = tokio::net::lookup_host((opts.get_host(), opts.get_port()));
    let wire = Wire::start(server.await.unwrap().next().unwrap()).await;
    let opts = opts
        .host("127.0.0.1")
        .port(wire.addr.port())
        .ssl_mode(sqlx::postgres::PgSslMode::Disable);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(opts);
    let single = PostgresStore::builder()
        .pool(pool)
        .schema(&schema)
        .unwrap()
        .build()
        .await
        .unwrap();
    let stent = stent_core::Stent::new(single.clone());
    let idempotent = stent
        .durable("sends::idempotent")
        .idempotent()
        .wrap(|n: u32| async move { Ok::<_, std::convert::Infallible>(n) });
    let cached = stent
        .durable("sends::cached")
        .cached()
        .wrap(|n: u32| async move { Ok::<_, std::convert::Infallible>(n) });
    let effects = format!("CREATE TABLE {schema}.sends_effects (n INTEGER PRIMARY KEY)");
    sqlx::query(AssertSqlSafe(effects))
        .execute(single.pool())
        .await
        .unwrap();
    let insert: &'static str = format!("INSERT INTO {schema}.sends_effects (n) VALUES ($1)").leak();
    let transactional =
        stent
            .durable("sends::transactional")
            .wrap_tx(&single, move |tx, n: i32| {
                Box::pin(async move {
                    let q = sqlx::query(AssertSqlSafe(insert)).bind(n);
                    q.execute(&mut *tx).await.map(|_| n)
                })
            });
    for n in 0..12 {
        let first = sends(&wire, async {
            assert_eq!(idempotent.call(n).await.unwrap(), n);
        });
        let first = first.await;
        let replay = sends(&wire, async {
            assert_eq!(idempotent.call(n).await.unwrap(), n);
        });
        let replay = replay.await;
        let miss = sends(&wire, async {
            assert_eq!(cached.call(n).await.unwrap(), n);
        });
        let miss = miss.await;
        let hit = sends(&wire, async {
            assert_eq!(cached.call(n).await.unwrap(), n);
        });
        let hit = hit.await;
        let tx_first = sends(&wire, async {
            assert_eq!(transactional.call(n as i32).await.unwrap(), n as i32);
        });
        let tx_first = tx_first.await;
        let tx_replay = sends(&wire, async {
            assert_eq!(transactional.call(n as i32).await.unwrap(), n as i32);
        });
        let tx_replay = tx_replay.await;
        if n == 0 {
            continue; // each statement's first run on the connection prepares it first
        }
        assert_eq!(first, [["claim"], ["complete"]], "first call {n}");
        assert_eq!(replay, [["claim"]], "replay {n}");
        assert_eq!(miss, [["get"], ["put"]], "cache miss {n}");
        assert_eq!(hit, [["get"]], "cache hit {n}");
        let tx_sent = [["begin"], ["claim"], ["effect"], ["complete"], ["commit"]];
        assert_eq!(tx_first, tx_sent, "transactional first call {n}");
        let tx_sent = [["begin"], ["claim"], ["rollback"]];
        assert_eq!(tx_replay, tx_sent, "transactional replay {n}");
    }
}

/// A claim of a key that does not stand decides it exactly as one of a key that does:
/// of 64 concurrent claims of one absent key exactly one takes it, and a lapsed lease is
/// taken over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_of_an_absent_key_have_one_taker() {
    let Some((store, _)) = store("concurrent_claims_of_an_absent_key_have_one_taker", "race").await
    else {
        return;
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let store = store.clone();
        tasks.spawn(async move { claim(&store, "contended", &LeaseToken::generate()).await });
    }
    let outcomes = tasks.join_all().await;
    let taken = outcomes
        .iter()
        .filter(|o| matches!(o, ClaimOutcome::Acquired { attempt: 1, .. }))
        .count();
    let waiting = outcomes
        .iter()
        .filter(|o| matches!(o, ClaimOutcome::InFlight(_)))
        .count();
    assert_eq!((taken, waiting), (1, 63), "{outcomes:?}");

    let short = Claim {
        token: &LeaseToken::generate(),
        lease: Duration::from_millis(1),
        meta: RecordMeta::default(),
    };
    assert!(matches!(
        store.claim(IDEM, "lapsing", &short).await.unwrap(),
        ClaimOutcome::Acquired { attempt: 1, .. }
    ));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(matches!(
        claim(&store, "lapsing", &LeaseToken::generate()).await,
        ClaimOutcome::Acquired { attempt: 2, .. }
    ));
}

/// Many stores creating the same tables at once all succeed (the advisory lock
/// serializes `CREATE TABLE IF NOT EXISTS`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_connections_create_the_tables_once() {
    let Some(url) = support::url_or_skip("concurrent_first_connections_create_the_tables_once")
    else {
        return;
    };
    support::sweep_old_schemas(&url).await;
    let schema = support::schema_for(&format!("mig{}", std::process::id()));
    let builds: Vec<_> = (0..8)
        .map(|_| {
            let b = PostgresStore::builder()
                .url(url.as_str())
                .schema(schema.as_str())
                .unwrap();
            tokio::spawn(b.build())
        })
        .collect();
    for b in builds {
        let store = b
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("concurrent migration failed: {e}"));
        store.migrate().await.unwrap();
    }
}

/// `new(pool)` uses the caller's pool; its connection options (here a search_path)
/// decide where unqualified tables go.
#[tokio::test]
async fn new_reuses_the_callers_pool() {
    let Some(url) = support::url_or_skip("new_reuses_the_callers_pool") else {
        return;
    };
    support::sweep_old_schemas(&url).await;
    let schema = support::schema_for(&format!("pool{}", std::process::id()));
    let admin = PgPool::connect(&url).await.unwrap();
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&admin)
        .await
        .unwrap();
    let opts = PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let pool = PgPoolOptions::new()
        .max_connections(3)
        .connect_with(opts)
        .await
        .unwrap();
    let store = PostgresStore::from_pool(pool.clone()).await.unwrap();
    store
        .put(Namespace::Cache, "k", b"v", None, RecordMeta::default())
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{schema}\".cache"
    )))
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(n, 1);
    assert_eq!(store.table(Namespace::Cache), "cache");
    assert!(pool.size() >= 1 && pool.size() <= 3);
}

/// With `create_tables(false)` nothing is created: a missing table is a clear error
/// pointing at `migrate`, which creates it.
#[tokio::test]
async fn without_create_tables_migrate_creates_them() {
    let Some(url) = support::url_or_skip("without_create_tables_migrate_creates_them") else {
        return;
    };
    let schema = support::schema_for(&format!("nomig{}", std::process::id()));
    let store = PostgresStore::builder()
        .url(url)
        .schema(schema.as_str())
        .unwrap()
        .create_tables(false)
        .build()
        .await
        .unwrap();
    let e = store.get(IDEM, "k").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Store);
    assert!(e.to_string().contains("migrate"), "{e}");
    store.migrate().await.unwrap();
    assert_eq!(store.get(IDEM, "k").await.unwrap(), None);
    assert_eq!(store.table(IDEM), format!("{schema}.idempotency"));
}

/// A key of exactly the limit is stored even when it does not compress; one byte more,
/// or a NUL, is refused before anything is sent.
#[tokio::test]
async fn keys_at_the_limit_are_indexed_and_beyond_it_refused() {
    let Some((store, _)) = store(
        "keys_at_the_limit_are_indexed_and_beyond_it_refused",
        "keys",
    )
    .await
    else {
        return;
    };
    // Pseudo-random printable text: nothing for TOAST compression to shrink.
    let mut x: u32 = 0x9e37_79b9;
    let key: String = (0..MAX_KEY_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            char::from(b'!' + (x % 94) as u8)
        })
        .collect();
    let token = LeaseToken::generate();
    assert!(matches!(
        claim(&store, &key, &token).await,
        ClaimOutcome::Acquired { .. }
    ));
    store
        .complete(IDEM, &key, &token, b"v", None)
        .await
        .unwrap();
    assert_eq!(store.get(IDEM, &key).await.unwrap().unwrap().key, key);
    let page = store
        .list(IDEM, &ListQuery::new().prefix(&key[..100]))
        .await
        .unwrap();
    assert_eq!(page.records.len(), 1);

    let longer = format!("{key}x");
    let e = store
        .claim(
            IDEM,
            &longer,
            &Claim {
                token: &token,
                lease: LEASE,
                meta: RecordMeta::default(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyTooLarge, "{e}");
    let e = store
        .put(IDEM, "nul\0key", b"v", None, RecordMeta::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Key, "{e}");
    // No key holds a NUL, so such a prefix lists nothing.
    assert!(
        store
            .list(IDEM, &ListQuery::new().prefix("\0"))
            .await
            .unwrap()
            .records
            .is_empty()
    );
}

/// A row whose column holds another type than stent's (a table altered by hand) is a
/// `Decode` error that names the key and the column, on every path that reads records, and
/// the row is left as it is.
#[tokio::test]
async fn a_column_of_another_type_is_a_decode_error_naming_it() {
    let Some((store, schema)) = store(
        "a_column_of_another_type_is_a_decode_error_naming_it",
        "coltype",
    )
    .await
    else {
        return;
    };
    let token = LeaseToken::generate();
    assert!(matches!(
        claim(&store, "k", &token).await,
        ClaimOutcome::Acquired { .. }
    ));
    store.complete(IDEM, "k", &token, b"v", None).await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "ALTER TABLE \"{schema}\".idempotency ALTER COLUMN version TYPE integer USING 7"
    )))
    .execute(store.pool())
    .await
    .unwrap();
    // A new store: PostgreSQL refuses statements prepared before the change of type.
    let url = support::url_or_skip("a_column_of_another_type_is_a_decode_error_naming_it")
        .expect("checked above");
    let store = open(&url, &schema).await;
    let by_get = store.get(IDEM, "k").await.unwrap_err();
    let other = LeaseToken::generate();
    let c = Claim {
        token: &other,
        lease: LEASE,
        meta: RecordMeta::default(),
    };
    let by_claim = store.claim(IDEM, "k", &c).await.unwrap_err();
    for e in [by_get, by_claim] {
        assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
        assert_eq!(e.key(), Some("k"), "{e}");
        assert!(e.to_string().contains("column `version`"), "{e}");
    }
    let kept: i32 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT version FROM \"{schema}\".idempotency WHERE key = 'k'"
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(kept, 7, "the row is left as it is");
}

/// Every namespace has a table of its own, prefixed and in the schema, and clearing one
/// leaves the others (the progress log survives `stent cache clear`). A database whose
/// tables predate the progress namespace gets its `progress` table on connect.
#[tokio::test]
async fn every_namespace_has_its_own_table_and_clearing_one_leaves_the_others() {
    let Some(url) = support::url_or_skip(
        "every_namespace_has_its_own_table_and_clearing_one_leaves_the_others",
    ) else {
        return;
    };
    support::sweep_old_schemas(&url).await;
    let schema = support::schema_for(&format!("ns{}", std::process::id()));
    let build = || {
        PostgresStore::builder()
            .url(url.as_str())
            .schema(schema.as_str())
            .unwrap()
            .table_prefix("app_")
            .unwrap()
            .build()
    };
    let store = build().await.unwrap();
    assert_eq!(
        store.table(Namespace::Progress),
        format!("{schema}.app_progress")
    );
    let admin = PgPool::connect(&url).await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "DROP TABLE \"{schema}\".app_progress CASCADE"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let store = build().await.unwrap();
    for ns in Namespace::ALL {
        store
            .put(ns, "k", ns.as_str().as_bytes(), None, RecordMeta::default())
            .await
            .unwrap();
    }
    let value: Vec<u8> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT value FROM \"{schema}\".app_progress WHERE key = 'k'"
    )))
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(value, b"progress");
    assert_eq!(store.clear(Namespace::Cache).await.unwrap(), 1);
    for ns in [Namespace::Idempotency, Namespace::Progress] {
        let r = store.get(ns, "k").await.unwrap().expect("kept");
        assert_eq!(r.value.as_deref(), Some(ns.as_str().as_bytes()));
    }
}

/// A transactional call of a key another transactional call holds waits on the claim's row
/// lock at most its in-flight wait (`SET LOCAL lock_timeout`), then fails with `Busy`; a
/// replay of the same key afterwards gets the first call's result.
#[tokio::test]
async fn a_transactional_duplicate_waits_at_most_its_lock_timeout() {
    let test = "a_transactional_duplicate_waits_at_most_its_lock_timeout";
    let Some((store, _schema)) = store(test, "txlock").await else {
        return;
    };
    let stent = stent_core::Stent::new(store.clone());
    let started = std::sync::Arc::new(tokio::sync::Notify::new());
    let post = |hold: Duration, wait: Duration| {
        let started = std::sync::Arc::clone(&started);
        stent
            .durable("ledger::post")
            .in_flight(stent_core::InFlight::Wait { timeout: wait })
            .wrap_tx(&store, move |_tx, n: u32| {
                let started = std::sync::Arc::clone(&started);
                Box::pin(async move {
                    started.notify_one();
                    tokio::time::sleep(hold).await;
                    Ok::<_, std::convert::Infallible>(n)
                })
            })
    };
    let first = post(Duration::from_secs(2), LEASE);
    let holder = tokio::spawn(async move { first.call(7).await });
    // The holder's function runs once its claim is written in its transaction.
    started.notified().await;
    let err = post(Duration::ZERO, Duration::from_millis(200))
        .call(7)
        .await;
    let err = err.expect_err("the lock wait ends first");
    assert_eq!(err.kind(), ErrorKind::Busy, "{err}");
    assert!(
        !holder.is_finished(),
        "the duplicate waited for the holder's commit"
    );
    assert_eq!(holder.await.unwrap().unwrap(), 7);
    let replay = post(Duration::ZERO, LEASE).call_traced(7).await.unwrap();
    assert_eq!(replay.outcome.status, stent_core::Status::Replayed);
}
