//! The whole conformance suite against SQLite, one database file per case.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
