#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::sync::Arc;

pub use stent_core::{
    Capabilities, Claim, ClaimOutcome, Clock, DEFAULT_LEASE, DEFAULT_WAIT, DefaultKey, Durable,
    DurableBuilder, Error, ErrorKind, Execution, ExecutionState, InFlight, KeyScope, KeyStrategy,
    LeaseToken, ListQuery, ManualClock, MemoryStore, Namespace, Outcome, Page, ProgressEntry,
    Record, RecordMeta, RecordState, Result, ResultStore, Status, Stent, SystemClock, Timestamp,
    Traced, async_trait, clock, codec, error, key, observe, progress, record, store,
};

// ---- backends (one block per cargo feature) ----

#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use stent_sqlite::{Durability, SqliteStore, SqliteStoreBuilder};

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub use stent_core::testkit;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use stent_redis::{RedisStore, RedisStoreBuilder};

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use stent_postgres::{PostgresStore, PostgresStoreBuilder};

#[cfg(feature = "dynamodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "dynamodb")))]
pub use stent_dynamodb::{DynamoDbStore, DynamoDbStoreBuilder};

// ---- end of backends ----

/// Opens the store a URL names, with whichever backends are compiled in.
///
/// | URL | store | feature |
/// |---|---|---|
/// | `memory://` (no options) | [`MemoryStore`] (this process only) | always |
/// | `sqlite://path/to/file.db`, `sqlite:///abs/file.db`, `sqlite:file.db` | `SqliteStore` | `sqlite` (default) |
/// | `postgres://user:pass@host:5432/db`, `postgresql://…` | `PostgresStore` | `postgres` |
/// | `redis://host:6379`, `rediss://…` (TLS), `redis+unix:///path.sock`, `redis+cluster://h1:p1,h2:p2` | `RedisStore` | `redis` |
/// | `dynamodb://TABLE?endpoint=http://127.0.0.1:8000&region=us-east-1` | `DynamoDbStore` | `dynamodb` |
///
/// Where to find a store's records goes in the URL too: `sqlite://app.db?table_prefix=billing_`,
/// `postgres://…/db?schema=stent&table_prefix=billing_`, `redis://host:6379?prefix=billing`,
/// as the backends' builders would set them.
///
/// Every scheme follows the same rules, and breaking one is an [`ErrorKind::Config`] error
/// that says what to change; passwords never appear in error messages:
///
/// - A string without a scheme (`garbage`, `stent.db`) is not a store URL, and an unknown
///   scheme is refused; both errors list the schemes accepted.
/// - A URL whose backend is not compiled in names the cargo feature to enable.
/// - An option a store does not know is an error naming it, for every scheme: `memory://`
///   takes none; `sqlite://` takes `table_prefix`; `postgres://` takes `schema`,
///   `table_prefix` and the driver's connection parameters (`sslmode`, `options`,
///   `application_name`, …); `dynamodb://` takes `endpoint`, `region` and `prefix`.
///   Redis URLs are the exception the Redis store documents: it takes `prefix` and passes
///   any other parameter to the Redis driver.
/// - A PostgreSQL URL names its user (`postgres://USER@host/db` or `?user=USER`), or the
///   `PGUSER` variable does, as for `psql`; no user at all is an error, never a guess.
/// - A DynamoDB URL carries no credentials: they come from the AWS environment
///   (`AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, …), and a store
///   without any fails here, naming the variables to set, not at its first call.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> stent::Result<()> {
/// let store = stent::connect("memory://").await?;
/// let stent = stent::Stent::from_arc(store);
/// # let _ = stent;
/// let err = stent::connect("mongodb://localhost").await.unwrap_err();
/// assert_eq!(err.kind(), stent::ErrorKind::Config);
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<Arc<dyn ResultStore>> {
    let Some(scheme) = scheme_of(url) else {
        return Err(Error::config(format!(
            "{:?} is not a store URL: expected {ACCEPTED}",
            redact(url)
        )));
    };
    match scheme {
        "memory" => {
            let rest = &url["memory:".len()..];
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            if rest.is_empty() {
                Ok(Arc::new(MemoryStore::new()))
            } else {
                Err(memory_url_error(url, rest))
            }
        }
        "sqlite" => {
            #[cfg(feature = "sqlite")]
            return Ok(Arc::new(SqliteStore::connect(url).await?));
            #[cfg(not(feature = "sqlite"))]
            return Err(missing_feature(scheme, "sqlite"));
        }
        "postgres" | "postgresql" => {
            #[cfg(feature = "postgres")]
            return Ok(Arc::new(PostgresStore::connect(url).await?));
            #[cfg(not(feature = "postgres"))]
            return Err(missing_feature(scheme, "postgres"));
        }
        "redis" | "rediss" | "redis+unix" | "redis+cluster" => {
            #[cfg(feature = "redis")]
            return Ok(Arc::new(RedisStore::connect(url).await?));
            #[cfg(not(feature = "redis"))]
            return Err(missing_feature(scheme, "redis"));
        }
        "dynamodb" => {
            #[cfg(feature = "dynamodb")]
            return Ok(Arc::new(DynamoDbStore::connect(url).await?));
            #[cfg(not(feature = "dynamodb"))]
            return Err(missing_feature(scheme, "dynamodb"));
        }
        _ => Err(Error::config(format!(
            "unknown store URL scheme {:?} in {:?}: expected {ACCEPTED}",
            scheme,
            redact(url)
        ))),
    }
}

/// The URL forms [`connect`] accepts, for its error messages.
const ACCEPTED: &str = "memory://, sqlite://PATH, postgres://USER@HOST/DB (or postgresql://), \
     redis://HOST (or rediss://, redis+unix://, redis+cluster://), or dynamodb://TABLE";

/// The scheme of `url`: RFC 3986's letter, then letters, digits, `+`, `-` and `.`, before
/// the first `:`. `None` when there is none.
fn scheme_of(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

/// Why a `memory:` URL with anything after the scheme is refused: the store has no
/// location and no options.
fn memory_url_error(url: &str, rest: &str) -> Error {
    let options: Vec<&str> = rest
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').map_or(p, |(name, _)| name))
        .collect();
    if options.is_empty() {
        Error::config(format!(
            "memory store URL {:?} names a location, but a memory store has none: use memory://",
            redact(url)
        ))
    } else {
        Error::config(format!(
            "unknown option{} {} in memory store URL {:?}: memory:// takes no options",
            if options.len() == 1 { "" } else { "s" },
            options
                .iter()
                .map(|o| format!("{o:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            redact(url)
        ))
    }
}

#[allow(dead_code)]
fn missing_feature(scheme: &str, feature: &str) -> Error {
    Error::config(format!(
        "{scheme}:// stores need stent's `{feature}` cargo feature, which this build does not enable"
    ))
}

/// A URL with any password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("redis://:pw@h"), "redis://:***@h");
        assert_eq!(redact("redis://user@h/0"), "redis://user@h/0");
        assert_eq!(redact("sqlite://a/b.db"), "sqlite://a/b.db");
        assert_eq!(redact("memory://"), "memory://");
    }
}
