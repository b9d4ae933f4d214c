//! Helpers shared by the test binaries: the server to test against, and one schema per
//! test case so cases run in parallel against one database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{Connection as _, PgConnection};

/// Every schema a test creates starts with this, then the creation time in Unix seconds.
pub(crate) const SCHEMA_PREFIX: &str = "stent_test_";

/// Schemas of earlier runs are dropped once they are this old: far past the 120 s a case may
/// take, so no running case loses its tables.
const KEEP: Duration = Duration::from_secs(600);

/// The server in `STENT_POSTGRES_URL`, or why there is none.
pub(crate) fn url() -> Result<String, String> {
    std::env::var(stent_postgres::ENV_URL)
        .map_err(|_| format!("{} is not set", stent_postgres::ENV_URL))
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// A fresh schema name for the test case `id`: `stent_test_<unix secs>_<id>`.
#[allow(dead_code)]
pub(crate) fn schema_for(id: &str) -> String {
    format!("{SCHEMA_PREFIX}{}_{id}", unix_secs())
}

/// Drops the schemas test runs left behind more than ten minutes ago, once per process: a
/// case cannot drop its own (its store lives until the case's runtime ends), so the
/// database keeps at most ten minutes of runs.
pub(crate) async fn sweep_old_schemas(url: &str) {
    static SWEPT: AtomicBool = AtomicBool::new(false);
    if SWEPT.swap(true, Ordering::SeqCst) {
        return;
    }
    let Ok(mut conn) = PgConnection::connect(url).await else {
        return;
    };
    let pattern = format!("{}%", SCHEMA_PREFIX.replace('_', "\\_"));
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1")
            .bind(pattern)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    let cutoff = unix_secs().saturating_sub(KEEP.as_secs());
    for name in names {
        let born = name[SCHEMA_PREFIX.len()..]
            .split('_')
            .next()
            .and_then(|s| s.parse::<u64>().ok());
        if born.is_some_and(|t| t < cutoff) {
            let drop = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
            let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                .execute(&mut conn)
                .await;
        }
    }
    let _ = conn.close().await;
}

/// Whether `STENT_REQUIRE_BACKENDS=1` is set: a missing server fails instead of skipping.
pub(crate) fn required() -> bool {
    std::env::var("STENT_REQUIRE_BACKENDS").is_ok_and(|v| v == "1" || v == "true")
}

/// The server URL, or `None` after a loud skip message (a panic under
/// `STENT_REQUIRE_BACKENDS=1`).
#[allow(dead_code)]
pub(crate) fn url_or_skip(test: &str) -> Option<String> {
    match url() {
        Ok(url) => Some(url),
        Err(reason) if required() => panic!("{test}: STENT_REQUIRE_BACKENDS=1 but {reason}"),
        Err(reason) => {
            eprintln!("SKIPPED {test}: {reason} (set STENT_REQUIRE_BACKENDS=1 to fail instead)");
            None
        }
    }
}
