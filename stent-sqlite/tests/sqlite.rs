//! SQLite specifics: opening bad files, the tables as plain SQL, injected time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use stent_core::{ErrorKind, ManualClock, Namespace, RecordMeta, ResultStore, Stent, Timestamp};
use stent_sqlite::SqliteStore;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test]
async fn invalid_table_prefix_is_a_config_error_at_build_time() {
    for bad in [
        "1abc",
        "a b",
        "x;drop",
        "caché",
        "a-b",
        "\"q\"",
        &"a".repeat(49),
    ] {
        let e = SqliteStore::builder().table_prefix(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{bad:?}");
        assert!(e.to_string().contains("table prefix"), "{e}");
    }
    let dir = tmp();
    let store = SqliteStore::builder()
        .path(dir.path().join("p.db"))
        .table_prefix("app_")
        .unwrap()
        .build()
        .await
        .unwrap();
    assert_eq!(store.table(Namespace::Cache), "app_cache");
    assert_eq!(store.table(Namespace::Idempotency), "app_idempotency");
    assert_eq!(store.table(Namespace::Progress), "app_progress");
}

#[tokio::test]
async fn every_namespace_has_its_own_table_and_clearing_one_leaves_the_others() {
    let dir = tmp();
    let store = SqliteStore::builder()
        .path(dir.path().join("ns.db"))
        .table_prefix("app_")
        .unwrap()
        .build()
        .await
        .unwrap();
    for ns in Namespace::ALL {
        store
            .put(ns, "k", ns.as_str().as_bytes(), None, RecordMeta::default())
            .await
            .unwrap();
    }
    let (progress,): (Vec<u8>,) = sqlx::query_as("SELECT value FROM app_progress WHERE key = 'k'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(progress, b"progress");
    assert_eq!(store.clear(Namespace::Cache).await.unwrap(), 1);
    for ns in [Namespace::Idempotency, Namespace::Progress] {
        let r = store.get(ns, "k").await.unwrap().expect("kept");
        assert_eq!(r.value.as_deref(), Some(ns.as_str().as_bytes()));
    }
}

/// The readable columns of every table, as `(created_at, completed_at, expires_at)`.
async fn readable_times(store: &SqliteStore, ns: Namespace) -> (String, String, String) {
    let sql = format!(
        "SELECT created_at, completed_at, expires_at FROM {} WHERE key = 'k'",
        store.table(ns)
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn readable_time_columns_are_utc_marked_z_as_everywhere_else() {
    let dir = tmp();
    let clock = ManualClock::new(Timestamp::from_millis(1_796_333_548_123));
    let store = SqliteStore::builder()
        .path(dir.path().join("times.db"))
        .clock(clock)
        .build()
        .await
        .unwrap();
    for ns in Namespace::ALL {
        store
            .put(
                ns,
                "k",
                b"v",
                Some(Duration::from_millis(60_005)),
                RecordMeta::default(),
            )
            .await
            .unwrap();
        let (created, completed, expires) = readable_times(&store, ns).await;
        assert_eq!(created, "2026-12-03T21:32:28.123Z", "{ns}");
        assert_eq!(
            created,
            Timestamp::from_millis(1_796_333_548_123).to_string()
        );
        assert_eq!(completed, created, "{ns}");
        assert_eq!(expires, "2026-12-03T21:33:28.128Z", "{ns}");
    }
}

#[tokio::test]
async fn a_version_1_file_gets_the_readable_times_of_today_on_open() {
    let dir = tmp();
    let path = dir.path().join("v1.db");
    let clock = ManualClock::new(Timestamp::from_millis(1_796_333_548_123));
    let store = SqliteStore::builder()
        .path(&path)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    store
        .put(Namespace::Cache, "k", b"v", None, RecordMeta::default())
        .await
        .unwrap();
    // The layout version 1 wrote: no `T`, no zone.
    for sql in [
        "ALTER TABLE cache DROP COLUMN created_at",
        "ALTER TABLE cache ADD COLUMN created_at TEXT GENERATED ALWAYS AS \
         (strftime('%Y-%m-%d %H:%M:%S', created_ms / 1000, 'unixepoch') \
          || printf('.%03d', created_ms % 1000)) VIRTUAL",
        "UPDATE stent_schema SET version = 1 WHERE component = 'sqlite'",
    ] {
        sqlx::query(sql).execute(store.pool()).await.unwrap();
    }
    assert_eq!(
        readable_times(&store, Namespace::Cache).await.0,
        "2026-12-03 21:32:28.123"
    );
    drop(store);
    let store = SqliteStore::builder()
        .path(&path)
        .clock(clock)
        .build()
        .await
        .unwrap();
    assert_eq!(
        readable_times(&store, Namespace::Cache).await.0,
        "2026-12-03T21:32:28.123Z"
    );
    let (version,): (i64,) = sqlx::query_as("SELECT version FROM stent_schema")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(version, 2);
    let r = store
        .get(Namespace::Cache, "k")
        .await
        .unwrap()
        .expect("kept");
    assert_eq!(r.value.as_deref(), Some(&b"v"[..]));
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_refused_at_open() {
    let dir = tmp();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are my notes, not a database ".repeat(100)).unwrap();
    let e = SqliteStore::open(&path).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("is not a SQLite database"), "{e}");
    let content = std::fs::read_to_string(&path).unwrap();
    assert!(
        content.starts_with("these are my notes"),
        "the file must be left alone"
    );
}

const READ_ONLY_CHILD: &str = "STENT_SQLITE_READ_ONLY_CHILD";

#[tokio::test]
async fn a_read_only_database_is_refused_at_open() {
    if let Ok(path) = std::env::var(READ_ONLY_CHILD) {
        let e = SqliteStore::open(&path).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(e.to_string().contains("read-only"), "{e}");
        return;
    }
    let dir = tmp();
    let path = dir.path().join("ro.db");
    drop(SqliteStore::open(&path).await.unwrap());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    if !is_root() {
        let e = SqliteStore::open(&path).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(e.to_string().contains("read-only"), "{e}");
        return;
    }
    // Root writes through file permissions, so the check runs as an unprivileged user.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_read_only_database_is_refused_at_open",
            "--nocapture",
        ])
        .env(READ_ONLY_CHILD, &path)
        .output()
        .expect("setpriv (util-linux) runs the check as nobody");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

#[tokio::test]
async fn a_missing_directory_is_a_clear_error() {
    let e = SqliteStore::open("/nonexistent-dir/sub/stent.db")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(
        e.to_string().contains("/nonexistent-dir/sub/stent.db"),
        "{e}"
    );
}

#[tokio::test]
async fn a_foreign_table_named_cache_is_refused_not_altered() {
    let dir = tmp();
    let path = dir.path().join("app.db");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        sqlx::query("CREATE TABLE mine_cache (id INTEGER PRIMARY KEY, payload TEXT)")
            .execute(store.pool())
            .await
            .unwrap();
        sqlx::query("INSERT INTO mine_cache (payload) VALUES ('precious')")
            .execute(store.pool())
            .await
            .unwrap();
    }
    let e = SqliteStore::builder()
        .path(&path)
        .table_prefix("mine_")
        .unwrap()
        .build()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("not a stent table"), "{e}");
    let store = SqliteStore::open(&path).await.unwrap();
    let (payload,): (String,) = sqlx::query_as("SELECT payload FROM mine_cache")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(payload, "precious");
}

#[tokio::test]
async fn the_guides_sql_query_reads_keys_and_readable_times() {
    let dir = tmp();
    let path = dir.path().join("stent.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let f = Stent::new(store.clone())
        .durable("expensive_computation")
        .cached()
        .wrap(|h: String| async move { Ok::<_, std::convert::Infallible>(h.len()) });
    f.call("hash-1".into()).await.unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT key, created_at FROM cache")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, r#"expensive_computation|None|["hash-1"]"#);
    let created = &rows[0].1;
    let now = Timestamp::now().to_string(); // 2026-11-28T15:54:30.123Z
    assert_eq!(created.len(), now.len(), "{created}");
    assert_eq!(&created[..11], &now[..11], "{created} vs {now}");
    assert!(created.ends_with('Z'), "{created}");
    // The same query from the sqlite3 shell, when one is installed.
    if let Ok(out) = std::process::Command::new("sqlite3")
        .arg(&path)
        .arg("SELECT key, created_at FROM cache")
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(text.trim(), format!("{}|{}", rows[0].0, created));
    }
    // "Clear Cache" from the guide, by hand, is seen by stent at once.
    sqlx::query("DELETE FROM cache")
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(store.get(Namespace::Cache, &rows[0].0).await.unwrap(), None);
}

#[tokio::test]
async fn a_column_of_the_wrong_type_is_a_decode_error_naming_the_key_and_kept() {
    let dir = tmp();
    let store = SqliteStore::open(dir.path().join("t.db")).await.unwrap();
    store
        .put(
            Namespace::Idempotency,
            "charge:o1",
            b"\x01\"r\"",
            None,
            RecordMeta::default(),
        )
        .await
        .unwrap();
    sqlx::query("UPDATE idempotency SET attempt = 'not a number' WHERE key = 'charge:o1'")
        .execute(store.pool())
        .await
        .unwrap();
    let e = store
        .get(Namespace::Idempotency, "charge:o1")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
    assert_eq!(e.key(), Some("charge:o1"));
    sqlx::query("UPDATE idempotency SET attempt = 1, state = 'weird' WHERE key = 'charge:o1'")
        .execute(store.pool())
        .await
        .expect_err("the state column is checked by the schema");
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM idempotency")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(n, 1, "nothing deleted because of a decode failure");
}

#[tokio::test]
async fn an_injected_clock_decides_leases_and_expiry() {
    let dir = tmp();
    let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
    let store = SqliteStore::builder()
        .path(dir.path().join("clock.db"))
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    store
        .put(
            Namespace::Cache,
            "k",
            b"v",
            Some(Duration::from_secs(60)),
            RecordMeta::default(),
        )
        .await
        .unwrap();
    let r = store.get(Namespace::Cache, "k").await.unwrap().unwrap();
    assert_eq!(r.created_at, Timestamp::from_millis(1_800_000_000_000));
    assert_eq!(
        r.expires_at,
        Some(Timestamp::from_millis(1_800_000_060_000))
    );
    clock.advance(Duration::from_secs(59));
    assert!(store.get(Namespace::Cache, "k").await.unwrap().is_some());
    clock.advance(Duration::from_secs(1));
    assert!(store.get(Namespace::Cache, "k").await.unwrap().is_none());
    assert_eq!(store.purge_expired(Namespace::Cache, 10).await.unwrap(), 1);
}

#[tokio::test]
async fn urls_name_the_file_and_options() {
    let dir = tmp();
    let url = format!(
        "sqlite://{}?table_prefix=u_",
        dir.path().join("u.db").display()
    );
    let store = SqliteStore::connect(&url).await.unwrap();
    assert_eq!(store.table(Namespace::Cache), "u_cache");
    for bad in [
        "postgres://x",
        "sqlite://",
        "sqlite://a.db?nope=1",
        "sqlite://a.db?table_prefix=1x",
    ] {
        let e = SqliteStore::connect(bad).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{bad}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_on_distinct_keys_queue_in_the_store_not_in_sqlites_lock() {
    let dir = tmp();
    // No busy timeout: a write that met another connection's write lock would fail at once.
    let store = SqliteStore::builder()
        .path(dir.path().join("many.db"))
        .busy_timeout(Duration::ZERO)
        .build()
        .await
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let f = Stent::new(store.clone())
        .durable("billing::charge")
        .idempotent()
        .wrap({
            let runs = Arc::clone(&runs);
            move |order: String| {
                runs.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<_, std::convert::Infallible>(format!("receipt:{order}")) }
            }
        });
    for round in 0..3 {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..64 {
            let f = f.clone();
            // Rounds 1 and 2 replay round 0's keys next to first calls of new ones.
            let order = format!("ord-{}", if i % 2 == 0 { i } else { 64 * round + i });
            tasks.spawn(async move { (order.clone(), f.call(order).await) });
        }
        while let Some(joined) = tasks.join_next().await {
            let (order, result) = joined.unwrap();
            let value = result.unwrap_or_else(|e| panic!("round {round}, {order}: {e}"));
            assert_eq!(value, format!("receipt:{order}"));
        }
    }
    // 32 even keys, and 32 odd keys in each of the three rounds.
    assert_eq!(runs.load(Ordering::SeqCst), 32 + 3 * 32);
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM idempotency WHERE state = 'completed'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(n, 128);
}

#[tokio::test]
async fn a_write_through_the_store_inside_a_transactional_function_is_refused_not_awaited() {
    let dir = tmp();
    let store = SqliteStore::open(dir.path().join("tx.db")).await.unwrap();
    let inner = store.clone();
    let post =
        Stent::new(store.clone())
            .durable("ledger::post")
            .wrap_tx(&store, move |_tx, n: u32| {
                let inner = inner.clone();
                Box::pin(async move {
                    // The transaction holds the store's writer: this write would wait for ever.
                    let meta = RecordMeta::default();
                    inner.put(Namespace::Cache, "k", b"v", None, meta).await?;
                    Ok::<_, stent_core::Error>(n)
                })
            });
    let call = tokio::time::timeout(Duration::from_secs(30), post.call(1));
    let err = call.await.expect("refused, not waited for").unwrap_err();
    let err = err.into_function_error().expect("the function's error");
    let source = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        source.is_some_and(|s| s.contains("inside a transactional call")),
        "{err}"
    );
    // Nothing was recorded, and the writer is free again.
    let key = post.key_for(&1).unwrap();
    assert!(
        store
            .get(Namespace::Idempotency, &key)
            .await
            .unwrap()
            .is_none()
    );
    store
        .put(Namespace::Cache, "k", b"v", None, RecordMeta::default())
        .await
        .unwrap();
}
