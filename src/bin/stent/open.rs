//! Opening the store a URL names as it stands: an operator's command creates no file, schema
//! or table, so a mistyped name is an error rather than an empty store made on the spot.
//! Redis has no tables, and a DynamoDB store creates its table only when told to: those open
//! as the library opens them.

use std::sync::Arc;

use stent::{Namespace, ResultStore, sqlx};

use crate::Failure;

/// The store `url` names, its tables checked rather than created.
pub(crate) async fn open(url: &str) -> Result<Arc<dyn ResultStore>, Failure> {
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
    #[cfg(feature = "sqlite")]
    if stent_sqlite::SCHEMES.contains(&scheme) {
        return sqlite(url).await;
    }
    #[cfg(feature = "postgres")]
    if stent_postgres::SCHEMES.contains(&scheme) {
        return postgres(url).await;
    }
    let _ = scheme;
    Ok(stent::connect(url).await?)
}

/// Looks the tables up on a read-only connection first: opening the store switches the file
/// to WAL, as a store that created its tables left it, but a file without them must not change.
#[cfg(feature = "sqlite")]
async fn sqlite(url: &str) -> Result<Arc<dyn ResultStore>, Failure> {
    use sqlx::Connection as _;

    let builder = stent::SqliteStore::builder().url(url)?;
    let (path, tables) = (builder.file().display().to_string(), builder.table_names());
    if !builder.file().exists() {
        let message = format!("no SQLite database at {path}: nothing is stored there yet");
        return Err(Failure(message));
    }
    let unreadable = |e| Failure(format!("cannot read {path} as a SQLite database: {e}"));
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(builder.file())
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .map_err(unreadable)?;
    let q = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name COLLATE NOCASE IN (?, ?, ?)";
    let q = tables.iter().fold(sqlx::query_scalar(q), |q, t| q.bind(t));
    let found: i64 = q.fetch_one(&mut conn).await.map_err(unreadable)?;
    let _ = conn.close().await;
    require(found, &tables, &path)?;
    Ok(Arc::new(builder.create_tables(false).build().await?))
}

/// Connects without creating anything, then looks the tables up.
#[cfg(feature = "postgres")]
async fn postgres(url: &str) -> Result<Arc<dyn ResultStore>, Failure> {
    let store = stent::PostgresStore::builder()
        .url(url)
        .create_tables(false)
        .build()
        .await?;
    let tables = Namespace::ALL.map(|ns| store.table(ns).to_owned());
    let q = "SELECT count(*) FROM unnest($1::text[]) AS t WHERE to_regclass(t) IS NOT NULL";
    let database = stent::redact(url);
    let found = sqlx::query_scalar(q)
        .bind(&tables[..])
        .fetch_one(store.pool())
        .await;
    let failed = |e| Failure(format!("cannot look up the tables in {database}: {e}"));
    require(found.map_err(failed)?, &tables, &database)?;
    Ok(Arc::new(store))
}

/// An error unless all of `tables` were `found` in `place`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn require(found: i64, tables: &[String], place: &str) -> Result<(), Failure> {
    if found == tables.len() as i64 {
        return Ok(());
    }
    Err(Failure(format!(
        "no stent tables {} in {place}: check the store URL's schema and table prefix (this \
         tool never creates tables)",
        tables.join(", ")
    )))
}
