//! The whole conformance suite against a DynamoDB-API server (`STENT_DYNAMODB_URL`, e.g.
//! moto started by scripts/test; else a container, see `stent_conformance::servers`): all
//! cases share one table, each under its own key prefix,
//! and they take turns on the server (see `support::turn`).

mod support;

use std::sync::Arc;

use stent_conformance::servers::{self, Server};
use stent_core::ResultStore;
use tokio::sync::OnceCell;

/// Creates the shared table once per test process; every case after the first reuses it.
static TABLE_READY: OnceCell<Result<(), String>> = OnceCell::const_new();

async fn dynamodb(case: String) -> Result<Arc<dyn ResultStore>, String> {
    let url = servers::url(Server::DynamoDb).await?;
    let store = support::builder(&url, support::TABLE, &case)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let turn = support::turn().await;
    TABLE_READY
        .get_or_init(|| async { store.migrate().await.map_err(|e| format!("{url}: {e}")) })
        .await
        .clone()?;
    Ok(Arc::new(support::WithTurn::new(Arc::new(store), turn)))
}

stent_conformance::conformance_tests!(dynamodb);
