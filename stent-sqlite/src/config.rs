//! The builder, and validation of what it is given.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use stent_core::{Clock, Error, Namespace, Result, SystemClock};

use crate::store::SqliteStore;

/// Longest table prefix accepted.
pub const MAX_PREFIX_LEN: usize = 48;

/// How hard SQLite works to make each commit durable (`PRAGMA synchronous`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// `NORMAL`: survives a crash of the process; the last commits may be lost if the
    /// machine loses power. The default: about 10× faster writes in WAL mode.
    #[default]
    Normal,
    /// `FULL`: every commit is on disk before it returns.
    Full,
}

/// Builds a [`SqliteStore`].
///
/// ```no_run
/// # async fn f() -> stent_core::Result<()> {
/// use std::time::Duration;
/// use stent_sqlite::{Durability, SqliteStore};
///
/// let store = SqliteStore::builder()
///     .path("stent.db")
///     .table_prefix("billing_")?         // tables billing_idempotency, billing_cache, …
///     .durability(Durability::Full)
///     .busy_timeout(Duration::from_secs(10))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SqliteStoreBuilder {
    pub(crate) path: PathBuf,
    pub(crate) table_prefix: String,
    pub(crate) durability: Durability,
    pub(crate) busy_timeout: Duration,
    pub(crate) max_connections: u32,
    pub(crate) create_tables: bool,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Default for SqliteStoreBuilder {
    fn default() -> Self {
        SqliteStoreBuilder {
            path: PathBuf::from(crate::DEFAULT_PATH),
            table_prefix: String::new(),
            durability: Durability::default(),
            busy_timeout: Duration::from_secs(5),
            max_connections: 8,
            create_tables: true,
            clock: Arc::new(SystemClock),
        }
    }
}

impl SqliteStoreBuilder {
    stent_core::builder_setters! {
        /// The database file (created if missing). Default `stent.db`.
        path(path: impl AsRef<Path>) => path = path.as_ref().to_path_buf();

        /// How durable each commit is (default [`Durability::Normal`]).
        durability(durability: Durability) => durability = durability;

        /// How long a statement waits for a write lock held by another process, or by a
        /// connection of your own on the [pool](SqliteStore::pool) (default 5 s). The store's
        /// own writes never wait for each other here: they queue in the store.
        busy_timeout(timeout: Duration) => busy_timeout = timeout;

        /// Size of the connection pool your own queries run on (default 8): the store's
        /// reads, writes and transactional calls run on connections of their own (see the
        /// crate docs).
        max_connections(n: u32) => max_connections = n.max(1);

        /// The clock leases and expiry are decided by (default: the system clock).
        clock(clock: impl Clock) => clock = Arc::new(clock);

        /// Whether [`build`](Self::build) creates missing tables and checks existing ones
        /// (default `true`). Turn it off when the tables are created elsewhere, e.g. by
        /// [`SqliteStore::migrate`]; an operation on a missing table then fails with an error.
        create_tables(yes: bool) => create_tables = yes;
    }

    /// The database file and table prefix a URL names: `sqlite://path/to/file.db`
    /// (relative), `sqlite:///abs/path.db`, or `sqlite:file.db`, with an optional
    /// `?table_prefix=app_` query that sets what [`table_prefix`](Self::table_prefix) sets.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](stent_core::ErrorKind::Config) for another scheme, a URL that
    /// names no file, an unknown query option or an invalid table prefix.
    pub fn url(self, url: &str) -> Result<Self> {
        let (scheme, rest) = url.split_once(':').unwrap_or_default();
        if scheme != crate::SCHEME {
            let message = format!("not a sqlite URL: {url:?} (expected sqlite://path)");
            return Err(Error::config(message));
        }
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(Error::config(format!("sqlite URL {url:?} names no file")));
        }
        let mut builder = self.path(path);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let Some(prefix) = pair.strip_prefix("table_prefix=") else {
                let message =
                    format!("unknown option {pair:?} in sqlite URL (known: table_prefix)");
                return Err(Error::config(message));
            };
            builder = builder.table_prefix(prefix)?;
        }
        Ok(builder)
    }

    /// The database file the store opens, as set so far.
    pub fn file(&self) -> &Path {
        &self.path
    }

    /// The store's tables, one per [`Namespace`] in [`Namespace::ALL`]'s order, as named so far.
    pub fn table_names(&self) -> [String; Namespace::ALL.len()] {
        Namespace::ALL.map(|ns| format!("{}{}", self.table_prefix, ns.as_str()))
    }

    /// Prepended to each table's name (`app_` gives `app_idempotency`, `app_cache`, …): empty,
    /// or an ASCII letter then letters, digits and `_`, at most [`MAX_PREFIX_LEN`] bytes.
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Result<Self> {
        let prefix = prefix.into();
        let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let non_letter_first = prefix.starts_with(|c: char| !c.is_ascii_alphabetic());
        if non_letter_first || prefix.len() > MAX_PREFIX_LEN || !prefix.chars().all(allowed) {
            return Err(Error::config(format!(
                "invalid table prefix {prefix:?}: use an ASCII letter followed by letters, \
                 digits or '_', at most {MAX_PREFIX_LEN} characters"
            )));
        }
        self.table_prefix = prefix;
        Ok(self)
    }

    /// Opens the database, switches it to WAL, and creates the tables if they are missing
    /// (unless [`create_tables(false)`](Self::create_tables)).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](stent_core::ErrorKind::Config) when the file is not a SQLite
    /// database, is read-only, cannot be created, or holds a table of the same name that
    /// is not a stent table.
    pub async fn build(self) -> Result<SqliteStore> {
        SqliteStore::open_with(self).await
    }
}
