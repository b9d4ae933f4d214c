//! The whole conformance suite against PostgreSQL: the server in `STENT_POSTGRES_URL`, else
//! a container (see `stent_conformance::servers`), one schema per case (`stent_test_<unix secs>_<case id>`, tables `app_idempotency` and
//! `app_cache`), so every case runs in parallel against one database. Schemas older than
//! ten minutes are dropped when a run starts.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::{AssertSqlSafe, PgConnection};
use stent_conformance::servers::{self, Server};
use stent_core::{Namespace, ResultStore};
use stent_postgres::PostgresStore;

mod support;

async fn postgres(case: String) -> Result<Arc<dyn ResultStore>, String> {
    let url = servers::url(Server::Postgres).await?;
    support::sweep_old_schemas(&url).await;
    let store = PostgresStore::builder()
        .url(url)
        .schema(support::schema_for(&case))
        .and_then(|b| b.table_prefix("app_"))
        .map_err(|e| e.to_string())?
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(20))
        .build()
        .await
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(store))
}

stent_conformance::conformance_tests!(postgres);

/// The transactional cases' effects table, in the case's schema.
struct Pg;

impl stent_conformance::transactional::SqlBackend for Pg {
    type Store = PostgresStore;

    fn create_effects<'a>(store: &'a PostgresStore, name: &'a str) -> BoxFuture<'a, String> {
        Box::pin(async move {
            let schema = store
                .table(Namespace::Idempotency)
                .split('.')
                .next()
                .unwrap();
            let table = format!("\"{schema}\".\"{name}\"");
            let create =
                format!("CREATE TABLE {table} (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
            sqlx::query(AssertSqlSafe(create))
                .execute(store.pool())
                .await
                .unwrap();
            table
        })
    }

    fn insert_effect<'a>(
        conn: &'a mut PgConnection,
        table: &'a str,
        key: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, sqlx::Result<()>> {
        let insert = format!("INSERT INTO {table} (key, value) VALUES ($1, $2)");
        Box::pin(async move {
            let q = sqlx::query(AssertSqlSafe(insert)).bind(key).bind(value);
            q.execute(conn).await.map(drop)
        })
    }

    fn effects<'a>(
        store: &'a PostgresStore,
        table: &'a str,
    ) -> BoxFuture<'a, Vec<(String, String)>> {
        let select = format!("SELECT key, value FROM {table} ORDER BY key");
        Box::pin(async move {
            let q = sqlx::query_as(AssertSqlSafe(select));
            q.fetch_all(store.pool()).await.unwrap()
        })
    }
}

async fn postgres_sql(case: String) -> Result<PostgresStore, String> {
    let url = servers::url(Server::Postgres).await?;
    support::sweep_old_schemas(&url).await;
    PostgresStore::builder()
        .url(url)
        .schema(support::schema_for(&case))
        .map_err(|e| e.to_string())?
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(20))
        .build()
        .await
        .map_err(|e| e.to_string())
}

stent_conformance::transactional_tests!(Pg, postgres_sql);
