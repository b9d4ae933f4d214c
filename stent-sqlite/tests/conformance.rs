//! The whole conformance suite against SQLite, one database file per case.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use sqlx::{AssertSqlSafe, SqliteConnection};
use stent_core::ResultStore;
use stent_sqlite::SqliteStore;

fn dir() -> PathBuf {
    let dir = std::env::temp_dir().join("stent-sqlite-conformance");
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Files of earlier runs are left for inspection for an hour, then removed.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
            if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    dir
}

async fn sqlite(case: String) -> Result<Arc<dyn ResultStore>, String> {
    let path = dir().join(format!("{case}.db"));
    let store = SqliteStore::open(&path).await.map_err(|e| e.to_string())?;
    Ok(Arc::new(store))
}

stent_conformance::conformance_tests!(sqlite);

/// The transactional cases' effects table, in the case's database file.
struct Lite;

impl stent_conformance::transactional::SqlBackend for Lite {
    type Store = SqliteStore;

    fn create_effects<'a>(store: &'a SqliteStore, name: &'a str) -> BoxFuture<'a, String> {
        Box::pin(async move {
            let create =
                format!("CREATE TABLE \"{name}\" (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
            sqlx::query(AssertSqlSafe(create))
                .execute(store.pool())
                .await
                .unwrap();
            format!("\"{name}\"")
        })
    }

    fn insert_effect<'a>(
        conn: &'a mut SqliteConnection,
        table: &'a str,
        key: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, sqlx::Result<()>> {
        let insert = format!("INSERT INTO {table} (key, value) VALUES (?1, ?2)");
        Box::pin(async move {
            let q = sqlx::query(AssertSqlSafe(insert)).bind(key).bind(value);
            q.execute(conn).await.map(drop)
        })
    }

    fn effects<'a>(store: &'a SqliteStore, table: &'a str) -> BoxFuture<'a, Vec<(String, String)>> {
        let select = format!("SELECT key, value FROM {table} ORDER BY key");
        Box::pin(async move {
            let q = sqlx::query_as(AssertSqlSafe(select));
            q.fetch_all(store.pool()).await.unwrap()
        })
    }
}

async fn sqlite_sql(case: String) -> Result<SqliteStore, String> {
    let path = dir().join(format!("{case}.db"));
    SqliteStore::open(&path).await.map_err(|e| e.to_string())
}

stent_conformance::transactional_tests!(Lite, sqlite_sql);
