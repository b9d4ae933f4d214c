//! The whole conformance suite against PostgreSQL: the server in `STENT_POSTGRES_URL`, else
//! a container (see `stent_conformance::servers`), one schema per case (`stent_test_<unix secs>_<case id>`, tables `app_idempotency` and
//! `app_cache`), so every case runs in parallel against one database. Schemas older than
//! ten minutes are dropped when a run starts.

use std::sync::Arc;
use std::time::Duration;

use stent_conformance::servers::{self, Server};
use stent_core::ResultStore;
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
