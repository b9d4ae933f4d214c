//! [`ResultStore`] for SQLite.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row as _};
use stent_core::store::check_value_len;
use stent_core::{
    Capabilities, Claim, ClaimOutcome, Clock, Error, ErrorKind, LeaseToken, ListQuery, Namespace,
    Page, Record, RecordMeta, RecordState, Result, ResultStore, Timestamp,
};

use crate::config::{Durability, SqliteStoreBuilder};
use crate::error::{convert, open_error};
use crate::sql::Statements;

/// SQLite's own limit on a BLOB or TEXT value (`SQLITE_MAX_LENGTH`), in bytes.
const MAX_VALUE_LEN: usize = 1_000_000_000;

/// A [`ResultStore`] in a SQLite database file: the embedded default.
///
/// Two tables, `idempotency` and `cache` (optionally prefixed), in WAL mode; every state
/// transition is one SQL statement. Several processes may share one file and keep every
/// guarantee: SQLite serializes the writes. Time comes from a [`Clock`] (the system clock
/// by default); leases compare against it, so processes sharing a file need synchronized
/// clocks, as on one machine.
///
/// Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SqlitePool,
    path: PathBuf,
    clock: Arc<dyn Clock>,
    idempotency: Statements,
    cache: Statements,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field(
                "tables",
                &[&self.inner.idempotency.table, &self.inner.cache.table],
            )
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with default settings.
    ///
    /// ```no_run
    /// # async fn f() -> stent_core::Result<()> {
    /// let store = stent_sqlite::SqliteStore::open("stent.db").await?;
    /// # Ok(()) }
    /// ```
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder().path(path).build().await
    }

    /// Opens the store a URL names: `sqlite://path/to/file.db` (relative),
    /// `sqlite:///abs/path.db`, or `sqlite:file.db`, with an optional
    /// `?table_prefix=app_` query.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder_from_url(url)?.build().await
    }

    /// A builder configured from a `sqlite:` URL (see [`connect`](Self::connect)).
    pub fn builder_from_url(url: &str) -> Result<SqliteStoreBuilder> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| {
                Error::config(format!(
                    "not a sqlite URL: {url:?} (expected sqlite://path)"
                ))
            })?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(Error::config(format!("sqlite URL {url:?} names no file")));
        }
        let mut builder = Self::builder().path(path);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("table_prefix", v)) => builder = builder.table_prefix(v)?,
                _ => {
                    return Err(Error::config(format!(
                        "unknown option {pair:?} in sqlite URL (known: table_prefix)"
                    )));
                }
            }
        }
        Ok(builder)
    }

    /// A builder with the defaults: `stent.db`, no table prefix, [`Durability::Normal`].
    pub fn builder() -> SqliteStoreBuilder {
        SqliteStoreBuilder::default()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The underlying connection pool, for running your own queries against the tables.
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    /// The table a namespace is stored in.
    pub fn table(&self, ns: Namespace) -> &str {
        &self.stmts(ns).table
    }

    pub(crate) async fn open_with(b: SqliteStoreBuilder) -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|e| open_error(e, &b.path))?
            .filename(&b.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match b.durability {
                Durability::Normal => SqliteSynchronous::Normal,
                Durability::Full => SqliteSynchronous::Full,
            })
            .busy_timeout(b.busy_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(b.max_connections)
            .min_connections(1)
            .acquire_timeout(b.busy_timeout.max(Duration::from_secs(5)))
            .connect_with(options)
            .await
            .map_err(|e| open_error(e, &b.path))?;
        let store = SqliteStore {
            inner: Arc::new(Inner {
                pool,
                path: b.path,
                clock: b.clock,
                idempotency: Statements::new(&b.table_prefix, Namespace::Idempotency),
                cache: Statements::new(&b.table_prefix, Namespace::Cache),
            }),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Creates the tables if missing, and checks that existing ones are stent's.
    async fn migrate(&self) -> Result<()> {
        let path = &self.inner.path;
        let mut conn = self
            .inner
            .pool
            .acquire()
            .await
            .map_err(|e| open_error(e, path))?;
        // Fails at once on a read-only file, before anything else is attempted.
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .map_err(|e| open_error(e, path))?;
        let mut result = Ok(());
        for ns in Namespace::ALL {
            let st = self.stmts(ns);
            result = self.create(&mut conn, st).await;
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            // Records the schema version, and proves at open that the file is writable
            // (SQLite opens a read-only file without complaint and fails the first write).
            for sql in [
                &self.inner.idempotency.create_schema,
                &self.inner.idempotency.record_schema,
            ] {
                if let Err(e) = sqlx::query(AssertSqlSafe(sql.as_str()))
                    .execute(&mut *conn)
                    .await
                {
                    result = Err(open_error(e, path));
                    break;
                }
            }
        }
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = sqlx::query(end).execute(&mut *conn).await;
        result?;
        ended.map_err(|e| open_error(e, path))?;
        Ok(())
    }

    async fn create(&self, conn: &mut sqlx::SqliteConnection, st: &Statements) -> Result<()> {
        let path = &self.inner.path;
        sqlx::query(AssertSqlSafe(st.create_table.as_str()))
            .execute(&mut *conn)
            .await
            .map_err(|e| open_error(e, path))?;
        // An existing table of the same name may be someone else's: check before indexing it.
        sqlx::query(AssertSqlSafe(st.probe.clone()))
            .execute(&mut *conn)
            .await
            .map_err(|e| {
                Error::config(format!(
                    "{} has a table {:?} that is not a stent table; choose a table prefix",
                    path.display(),
                    st.table
                ))
                .with_source(e)
            })?;
        sqlx::query(AssertSqlSafe(st.create_index.as_str()))
            .execute(&mut *conn)
            .await
            .map_err(|e| open_error(e, path))?;
        Ok(())
    }

    fn stmts(&self, ns: Namespace) -> &Statements {
        match ns {
            Namespace::Idempotency => &self.inner.idempotency,
            Namespace::Cache => &self.inner.cache,
        }
    }

    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    async fn fetch_live(&self, ns: Namespace, key: &str, now: Timestamp) -> Result<Option<Record>> {
        let row = sqlx::query(AssertSqlSafe(self.stmts(ns).get.clone()))
            .bind(key)
            .bind(now.as_millis())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|e| convert(e, "get", Some(key)))?;
        row.map(|r| decode_row(&r, key)).transpose()
    }
}

fn ms(t: Option<Timestamp>) -> Option<i64> {
    t.map(Timestamp::as_millis)
}

fn decode_row(row: &SqliteRow, key: &str) -> Result<Record> {
    let bad = |e: sqlx::Error| {
        Error::decode(
            key,
            format!("stored record has a column of the wrong type: {e}"),
        )
        .with_source(e)
    };
    let state: String = row.try_get("state").map_err(bad)?;
    let state = RecordState::parse(&state)
        .ok_or_else(|| Error::decode(key, format!("stored record has unknown state {state:?}")))?;
    let attempt: i64 = row.try_get("attempt").map_err(bad)?;
    let ts = |col: &str| -> Result<Option<Timestamp>> {
        Ok(row
            .try_get::<Option<i64>, _>(col)
            .map_err(bad)?
            .map(Timestamp::from_millis))
    };
    let mut record = Record::new(
        row.try_get::<String, _>("key").map_err(bad)?,
        state,
        ts("created_ms")?.unwrap_or_default(),
    );
    record.value = row.try_get("value").map_err(bad)?;
    record.lease_token = row
        .try_get::<Option<String>, _>("lease_token")
        .map_err(bad)?
        .map(LeaseToken::from_string);
    record.lease_expires_at = ts("lease_expires_ms")?;
    record.attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
    record.fingerprint = row.try_get("fingerprint").map_err(bad)?;
    record.function = row.try_get("function").map_err(bad)?;
    record.version = row.try_get("version").map_err(bad)?;
    record.completed_at = ts("completed_ms")?;
    record.expires_at = ts("expires_ms")?;
    Ok(record)
}

#[async_trait]
impl ResultStore for SqliteStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .shared(true)
            .durable(true)
            .max_value_len(Some(MAX_VALUE_LEN))
    }

    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Record>> {
        self.fetch_live(ns, key, self.now()).await
    }

    async fn claim(&self, ns: Namespace, key: &str, claim: &Claim<'_>) -> Result<ClaimOutcome> {
        // A few rounds at most: each lost round means the record changed between the
        // claim statement and the read, which needs another writer to act in that gap.
        for _ in 0..8 {
            let now = self.now();
            // Reading first keeps the hot path (a completed key) free of write locks.
            match self.fetch_live(ns, key, now).await? {
                Some(r) if r.state == RecordState::Completed => {
                    return Ok(ClaimOutcome::Completed(r));
                }
                Some(r) if !r.lease_lapsed(now) => return Ok(ClaimOutcome::InFlight(r)),
                _ => {}
            }
            let lease_expires_at = now.add(claim.lease);
            let acquired: Option<i64> =
                sqlx::query_scalar(AssertSqlSafe(self.stmts(ns).claim.clone()))
                    .bind(key)
                    .bind(claim.token.as_str())
                    .bind(lease_expires_at.as_millis())
                    .bind(claim.meta.fingerprint)
                    .bind(claim.meta.function)
                    .bind(claim.meta.version)
                    .bind(now.as_millis())
                    .fetch_optional(&self.inner.pool)
                    .await
                    .map_err(|e| convert(e, "claim", Some(key)))?;
            if let Some(attempt) = acquired {
                return Ok(ClaimOutcome::Acquired {
                    attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                    lease_expires_at,
                });
            }
        }
        Err(Error::new(ErrorKind::Busy, "claim kept racing with other writers").with_key(key))
    }

    async fn renew(
        &self,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        lease: Duration,
    ) -> Result<Timestamp> {
        let until = self.now().add(lease);
        let done = sqlx::query(AssertSqlSafe(self.stmts(ns).renew.clone()))
            .bind(key)
            .bind(token.as_str())
            .bind(until.as_millis())
            .execute(&self.inner.pool)
            .await
            .map_err(|e| convert(e, "renew", Some(key)))?;
        if done.rows_affected() == 1 {
            Ok(until)
        } else {
            Err(Error::lease_lost(key))
        }
    }

    async fn complete(
        &self,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()> {
        check_value_len(&self.capabilities(), key, value)?;
        let now = self.now();
        let done = sqlx::query(AssertSqlSafe(self.stmts(ns).complete.clone()))
            .bind(key)
            .bind(token.as_str())
            .bind(value)
            .bind(now.as_millis())
            .bind(ms(ttl.map(|t| now.add(t))))
            .execute(&self.inner.pool)
            .await
            .map_err(|e| convert(e, "complete", Some(key)))?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(Error::lease_lost(key))
        }
    }

    async fn release(&self, ns: Namespace, key: &str, token: &LeaseToken) -> Result<bool> {
        let done = sqlx::query(AssertSqlSafe(self.stmts(ns).release.clone()))
            .bind(key)
            .bind(token.as_str())
            .execute(&self.inner.pool)
            .await
            .map_err(|e| convert(e, "release", Some(key)))?;
        Ok(done.rows_affected() == 1)
    }

    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        meta: RecordMeta<'_>,
    ) -> Result<()> {
        check_value_len(&self.capabilities(), key, value)?;
        let now = self.now();
        sqlx::query(AssertSqlSafe(self.stmts(ns).put.clone()))
            .bind(key)
            .bind(value)
            .bind(meta.fingerprint)
            .bind(meta.function)
            .bind(meta.version)
            .bind(now.as_millis())
            .bind(ms(ttl.map(|t| now.add(t))))
            .execute(&self.inner.pool)
            .await
            .map_err(|e| convert(e, "put", Some(key)))?;
        Ok(())
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool> {
        let done = sqlx::query(AssertSqlSafe(self.stmts(ns).delete.clone()))
            .bind(key)
            .execute(&self.inner.pool)
            .await
            .map_err(|e| convert(e, "delete", Some(key)))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list(&self, ns: Namespace, query: &ListQuery) -> Result<Page> {
        let limit = query.limit.max(1);
        let rows = sqlx::query(AssertSqlSafe(self.stmts(ns).list.clone()))
            .bind(query.prefix.as_str())
            .bind(query.cursor.as_deref())
            .bind(query.include_expired)
            .bind(self.now().as_millis())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| convert(e, "list", None))?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            let key: String = row.try_get("key").map_err(|e| convert(e, "list", None))?;
            records.push(decode_row(row, &key)?);
        }
        let next_cursor = if records.len() > limit {
            records.truncate(limit);
            records.last().map(|r| r.key.clone())
        } else {
            None
        };
        Ok(Page::new(records, next_cursor))
    }

    async fn clear(&self, ns: Namespace) -> Result<u64> {
        let done = sqlx::query(AssertSqlSafe(self.stmts(ns).clear.clone()))
            .execute(&self.inner.pool)
            .await
            .map_err(|e| convert(e, "clear", None))?;
        Ok(done.rows_affected())
    }

    async fn purge_expired(&self, ns: Namespace, limit: usize) -> Result<u64> {
        let done = sqlx::query(AssertSqlSafe(self.stmts(ns).purge.clone()))
            .bind(self.now().as_millis())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .execute(&self.inner.pool)
            .await
            .map_err(|e| convert(e, "purge_expired", None))?;
        Ok(done.rows_affected())
    }
}
