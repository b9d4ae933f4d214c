#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::sync::Arc;

pub use stent_core::{
    Capabilities, Claim, ClaimOutcome, Clock, DEFAULT_LEASE, DEFAULT_WAIT, DefaultKey, Durable,
    DurableBuilder, Error, ErrorKind, Execution, ExecutionState, InFlight, KeyScope, KeyStrategy,
    LeaseToken, ListQuery, ManualClock, MemoryStore, Namespace, Outcome, Page, ProgressEntry,
    Record, RecordMeta, RecordState, Result, ResultStore, Status, Stent, SystemClock, Timestamp,
    Traced, async_trait, broadcast, clock, codec, error, key, observe, progress, record, store,
};

#[doc(inline)]
pub use stent_core::store::redact;

#[cfg(feature = "sqlite")]
pub use stent_sqlite::{Durability, SqliteStore, SqliteStoreBuilder};

/// Transactional calls, on the SQL stores: see [`DurableBuilder::wrap_tx`].
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use stent_core::{OnConnection, SqlConnection, SqlStore, TxDurable, sqlx};

#[cfg(feature = "testkit")]
pub use stent_core::testkit;
#[cfg(feature = "local")]
pub use stent_core::{LocalTier, local};
#[cfg(feature = "redis")]
pub use stent_redis::{RedisStore, RedisStoreBuilder};

#[cfg(feature = "postgres")]
pub use stent_postgres::{PostgresStore, PostgresStoreBuilder};

#[cfg(feature = "dynamodb")]
pub use stent_dynamodb::{DynamoDbStore, DynamoDbStoreBuilder};

/// An `Idempotency-Key` layer for tower and axum, on any store (the `stent-http` crate).
#[cfg(feature = "http")]
pub use stent_http as http;

/// Opens the store a URL names, with whichever backends are compiled in.
///
/// | URL | store (cargo feature) | options, as the store's builder sets them |
/// |---|---|---|
/// | `memory://` | [`MemoryStore`], this process only (always) | none |
/// | `sqlite://path/to/file.db`, `sqlite:///abs/file.db`, `sqlite:file.db` | `SqliteStore` (`sqlite`, default) | `table_prefix` |
/// | `postgres://user:pass@host:5432/db`, `postgresql://…` | `PostgresStore` (`postgres`) | `schema`, `table_prefix`, the driver's (`sslmode`, `options`, `application_name`, …) |
/// | `redis://host:6379`, `redis+unix:///path.sock`, `redis+cluster://h1:p1,h2:p2` (`rediss://`, TLS, is refused: it is not compiled in) | `RedisStore` (`redis`) | `prefix`; any other goes to the Redis driver |
/// | `dynamodb://TABLE?endpoint=http://127.0.0.1:8000&region=us-east-1` | `DynamoDbStore` (`dynamodb`) | `endpoint`, `region`, `prefix` |
///
/// Anything else is an [`ErrorKind::Config`] error that says what to change, without the
/// URL's password: a string without a scheme or an unknown scheme (listing those accepted), a
/// backend not compiled in (naming its cargo feature), an option the store does not take, a
/// PostgreSQL URL that names no user (nor does `PGUSER`), a DynamoDB store without AWS
/// credentials in the environment (naming the variables to set).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> stent::Result<()> {
/// let store = stent::connect("memory://").await?;
/// let stent = stent::Stent::from_arc(store);
/// let err = stent::connect("mongodb://localhost").await.unwrap_err();
/// assert_eq!(err.kind(), stent::ErrorKind::Config);
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<Arc<dyn ResultStore>> {
    // RFC 3986's scheme: a letter, then letters, digits, `+`, `-` and `.`, before the first `:`.
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
    let rest = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.');
    let valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic()) && scheme.chars().all(rest);
    let scheme = if valid { scheme } else { "" };
    let backend = BACKENDS.iter().find(|b| b.1.contains(&scheme));
    let all = BACKENDS.iter().flat_map(|(_, schemes)| *schemes);
    let expected = all.fold("memory://".to_owned(), |list, s| format!("{list}, {s}://"));
    let shown = redact(url);
    let message = match backend.map(|&(feature, _)| feature) {
        _ if scheme == "memory" => return memory(url),
        #[cfg(feature = "sqlite")]
        Some("sqlite") => return Ok(Arc::new(SqliteStore::connect(url).await?)),
        #[cfg(feature = "postgres")]
        Some("postgres") => return Ok(Arc::new(PostgresStore::connect(url).await?)),
        #[cfg(feature = "redis")]
        Some("redis") => return Ok(Arc::new(RedisStore::connect(url).await?)),
        #[cfg(feature = "dynamodb")]
        Some("dynamodb") => return Ok(Arc::new(DynamoDbStore::connect(url).await?)),
        _ if scheme.is_empty() => format!("{shown:?} is not a store URL: expected {expected}"),
        Some(feature) => format!(
            "{scheme}:// stores need stent's `{feature}` cargo feature, which this build does not enable"
        ),
        None => format!("unknown store URL scheme {scheme:?} in {shown:?}: expected {expected}"),
    };
    Err(Error::config(message))
}

/// Each backend's cargo feature and URL schemes (its crate's `SCHEMES`, as a test checks),
/// spelled out here so that the schemes of a backend not compiled in are still known.
const BACKENDS: [(&str, &[&str]); 4] = [
    ("sqlite", &["sqlite"]),
    ("postgres", &["postgres", "postgresql"]),
    ("redis", &["redis", "rediss", "redis+unix", "redis+cluster"]),
    ("dynamodb", &["dynamodb"]),
];

/// A memory store for `memory://` (or `memory:`); anything after the scheme is refused,
/// since a memory store has no location and no options.
fn memory(url: &str) -> Result<Arc<dyn ResultStore>> {
    let rest = &url["memory:".len()..];
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Arc::new(MemoryStore::new()));
    }
    let query = rest.split_once('?').map_or("", |(_, query)| query);
    let pairs = query.split('&').filter(|pair| !pair.is_empty());
    let names = Vec::from_iter(pairs.map(|p| format!("{:?}", p.split('=').next().unwrap_or(p))));
    let shown = redact(url);
    Err(Error::config(match names.len() {
        0 => format!(
            "memory store URL {shown:?} names a location, but a memory store has none: use memory://"
        ),
        n => format!(
            "unknown option{} {} in memory store URL {shown:?}: memory:// takes no options",
            if n == 1 { "" } else { "s" },
            names.join(", ")
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(
        feature = "sqlite",
        feature = "postgres",
        feature = "redis",
        feature = "dynamodb"
    ))]
    fn the_schemes_are_the_backend_crates_own() {
        let crates = [
            stent_sqlite::SCHEMES,
            stent_postgres::SCHEMES,
            stent_redis::SCHEMES,
            stent_dynamodb::SCHEMES,
        ];
        for ((_, schemes), own) in BACKENDS.iter().zip(crates) {
            assert_eq!(*schemes, own);
        }
    }
}
