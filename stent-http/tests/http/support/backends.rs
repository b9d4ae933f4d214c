//! One isolated store per case on each backend: the case's unique id is its key prefix,
//! schema or file.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stent_conformance::servers::turn::{WithTurn, turn};
use stent_conformance::servers::{self, Server};
use stent_core::{MemoryStore, ResultStore};

type Factory = std::result::Result<Arc<dyn ResultStore>, String>;

pub(crate) async fn memory(_case: String) -> Factory {
    Ok(Arc::new(MemoryStore::new()))
}

/// A database file per case in the temp dir; files older than an hour are removed.
pub(crate) async fn sqlite(case: String) -> Factory {
    let dir = std::env::temp_dir().join("stent-http-tests");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let age = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok());
        if age.is_some_and(|age| age > Duration::from_secs(3600)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let store = stent_sqlite::SqliteStore::open(dir.join(format!("{case}.db")))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(store))
}

/// A schema per case, named as stent-postgres's own tests name theirs
/// (`stent_test_<unix secs>_<id>`), so their sweep drops it after ten minutes.
pub(crate) async fn postgres(case: String) -> Factory {
    postgres_store(case, true).await
}

/// As [`postgres`], but the schema's tables are never created: every claim fails with an
/// error no retry fixes.
pub(crate) async fn postgres_without_tables(case: String) -> Factory {
    postgres_store(case, false).await
}

async fn postgres_store(case: String, create_tables: bool) -> Factory {
    let url = servers::url(Server::Postgres).await?;
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let store = stent_postgres::PostgresStore::builder()
        .url(url)
        .schema(format!("stent_test_{secs}_{case}"))
        .map_err(|e| e.to_string())?
        .max_connections(8)
        .create_tables(create_tables)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(store))
}

pub(crate) async fn redis(case: String) -> Factory {
    redis_on(Server::Redis, case).await
}

pub(crate) async fn redis_cluster(case: String) -> Factory {
    redis_on(Server::RedisCluster, case).await
}

async fn redis_on(server: Server, case: String) -> Factory {
    let url = servers::url(server).await?;
    let store = stent_redis::RedisStore::builder()
        .url(url)
        .prefix(format!("http-{case}"))
        .build()
        .await
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(store))
}

/// One shared table, a key prefix per case; the case holds the DynamoDB tests' turn on
/// the server (see stent-dynamodb's tests: moto answers one request at a time, and their
/// short leases must not wait behind a 64-request race of ours).
pub(crate) async fn dynamodb(case: String) -> Factory {
    let url = servers::url(Server::DynamoDb).await?;
    let store = stent_dynamodb::DynamoDbStore::builder()
        .endpoint_url(&url)
        .and_then(|b| b.table("stent_http_tests"))
        .and_then(|b| b.key_prefix(case))
        .map_err(|e| e.to_string())?
        .region("us-east-1")
        .credentials("test", "test")
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let turn = turn().await;
    store.migrate().await.map_err(|e| format!("{url}: {e}"))?;
    Ok(Arc::new(WithTurn::new(Arc::new(store), turn)))
}
