//! [`ResultStore`] for SQLite.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteQueryResult, SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection as _, Row as _, Sqlite, SqliteConnection};
use stent_core::store::check_value_len;
use stent_core::{
    Capabilities, Claim, ClaimOutcome, Clock, Error, ErrorKind, LeaseToken, ListQuery, Namespace,
    Page, Record, RecordMeta, RecordState, Result, ResultStore, Timestamp,
};
use tokio::sync::{Mutex, MutexGuard};

use crate::config::{Durability, SqliteStoreBuilder};
use crate::error::{convert, open_error};
use crate::sql::Statements;

/// SQLite's own limit on a BLOB or TEXT value (`SQLITE_MAX_LENGTH`), in bytes.
const MAX_VALUE_LEN: usize = 1_000_000_000;

/// How often a claim reads and runs the claim statement before calling the key contended. A
/// second round happens only in one race: a record came to stand between the read and the
/// claim statement (another process's claim, or one of this process's writes).
const CLAIM_ROUNDS: usize = 8;

/// A [`ResultStore`] in a SQLite database file: the embedded default.
///
/// Three tables, `idempotency`, `cache` and `progress` (optionally prefixed), in WAL mode; every state
/// transition is one SQL statement. Several processes may share one file and keep every
/// guarantee: SQLite serializes the writes. Time comes from a [`Clock`] (the system clock
/// by default); leases compare against it, so processes sharing a file need synchronized
/// clocks, as on one machine.
///
/// # Connections, and what a call costs
///
/// Reads ([`get`](ResultStore::get), [`list`](ResultStore::list) and the read of a claim) run
/// on the [pool](Self::pool), where WAL lets readers run side by side and never wait for a
/// writer. Writes run on one connection the store keeps for itself (see `SqliteStore::writer`).
/// A [`claim`](ResultStore::claim) reads the key, then, only when no record stands (absent,
/// expired, or in flight on a lapsed lease), runs the claim statement: a replay or an
/// in-flight key is one read; a first call is the read, the claim and the completion. The
/// crate's README lists what every operation sends.
///
/// Cheap to clone: clones share the connection and the pool.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SqlitePool,
    /// The connection every write runs on (see `SqliteStore::writer`); `None` after it broke,
    /// until the next write opens another.
    conn: Mutex<Option<SqliteConnection>>,
    options: SqliteConnectOptions,
    path: PathBuf,
    clock: Arc<dyn Clock>,
    /// Each namespace's statements, by [`Namespace`] order.
    stmts: [Statements; Namespace::ALL.len()],
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field(
                "tables",
                &self.inner.stmts.each_ref().map(|st| st.table.as_str()),
            )
            .finish()
    }
}

/// The store's own connection, held: statements on it run one at a time.
struct Own<'a> {
    guard: MutexGuard<'a, Option<SqliteConnection>>,
}

type Stmt<'q> = Query<'q, Sqlite, SqliteArguments>;

impl Own<'_> {
    fn conn(&mut self) -> &mut SqliteConnection {
        self.guard
            .as_mut()
            .expect("SqliteStore::own connects before handing out the guard")
    }

    /// Forgets a connection whose thread or file handle failed, so the next use opens
    /// another (the pool does the same for its own).
    fn check<T>(
        &mut self,
        r: std::result::Result<T, sqlx::Error>,
    ) -> std::result::Result<T, sqlx::Error> {
        if let Err(sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed) = &r {
            *self.guard = None;
        }
        r
    }

    async fn execute(
        &mut self,
        q: Stmt<'_>,
    ) -> std::result::Result<SqliteQueryResult, sqlx::Error> {
        let r = q.execute(self.conn()).await;
        self.check(r)
    }

    async fn fetch_optional(
        &mut self,
        q: Stmt<'_>,
    ) -> std::result::Result<Option<SqliteRow>, sqlx::Error> {
        let r = q.fetch_optional(self.conn()).await;
        self.check(r)
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
    /// `?table_prefix=app_` query (see [`SqliteStoreBuilder::url`]).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder().url(url)?.build().await
    }

    /// Opens the store the URL in [`STENT_SQLITE_URL`](crate::ENV_URL) names, or
    /// [`DEFAULT_PATH`](crate::DEFAULT_PATH) when it is unset or empty.
    pub async fn from_env() -> Result<Self> {
        match std::env::var(crate::ENV_URL) {
            Ok(url) if !url.trim().is_empty() => {
                Self::builder()
                    .url(url.trim())
                    .map_err(|e| Error::config(format!("{}: {}", crate::ENV_URL, e.message())))?
                    .build()
                    .await
            }
            _ => Self::builder().build().await,
        }
    }

    /// A builder with the defaults: `stent.db`, no table prefix, [`Durability::Normal`].
    pub fn builder() -> SqliteStoreBuilder {
        SqliteStoreBuilder::default()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The connection pool reads run on, for running your own queries against the tables.
    /// The store's writes run on a connection of its own (see [`SqliteStore`]).
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
        // Opened first: it creates the file and switches it to WAL before the pool connects.
        let conn = SqliteConnection::connect_with(&options)
            .await
            .map_err(|e| open_error(e, &b.path))?;
        let pool = SqlitePoolOptions::new()
            .max_connections(b.max_connections)
            .min_connections(1)
            .acquire_timeout(b.busy_timeout.max(Duration::from_secs(5)))
            // An in-process connection has no peer to lose: the ping would only cost a round
            // trip to its thread on every acquire. A crashed one still fails its statement.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(|e| open_error(e, &b.path))?;
        let store = SqliteStore {
            inner: Arc::new(Inner {
                pool,
                conn: Mutex::new(Some(conn)),
                options,
                path: b.path,
                clock: b.clock,
                stmts: Namespace::ALL.map(|ns| Statements::new(&b.table_prefix, ns)),
            }),
        };
        if b.create_tables {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Creates the tables and indexes that are missing, brings older layouts up to date,
    /// and checks that existing tables are stent's, in one transaction. Safe to run from
    /// many processes at once, and again at any time; [`build`](SqliteStoreBuilder::build)
    /// runs it unless told [not to](SqliteStoreBuilder::create_tables).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](stent_core::ErrorKind::Config) when the file is read-only or
    /// holds a table of the same name that is not a stent table.
    pub async fn migrate(&self) -> Result<()> {
        let path = &self.inner.path;
        let mut own = self.writer().await.map_err(|e| open_error(e, path))?;
        let conn = own.conn();
        // Fails at once on a read-only file, before anything else is attempted.
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .map_err(|e| open_error(e, path))?;
        let result = self.create_all(conn).await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = sqlx::query(end).execute(&mut *conn).await;
        result?;
        ended.map_err(|e| open_error(e, path))?;
        Ok(())
    }

    /// Creates what is missing and brings older layouts up to date, inside `migrate`'s
    /// transaction.
    async fn create_all(&self, conn: &mut sqlx::SqliteConnection) -> Result<()> {
        let path = &self.inner.path;
        let first = self.stmts(Namespace::Idempotency);
        // Creating the schema table first also proves at open that the file is writable
        // (SQLite opens a read-only file without complaint and fails the first write).
        sqlx::query(AssertSqlSafe(first.create_schema.as_str()))
            .execute(&mut *conn)
            .await
            .map_err(|e| open_error(e, path))?;
        let version: Option<i64> = sqlx::query_scalar(AssertSqlSafe(first.schema_version.as_str()))
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| open_error(e, path))?;
        for ns in Namespace::ALL {
            let st = self.stmts(ns);
            self.create(conn, st).await?;
            if version == Some(1) {
                for sql in &st.upgrade_from_v1 {
                    sqlx::query(AssertSqlSafe(sql.as_str()))
                        .execute(&mut *conn)
                        .await
                        .map_err(|e| open_error(e, path))?;
                }
            }
        }
        sqlx::query(AssertSqlSafe(first.record_schema.as_str()))
            .execute(&mut *conn)
            .await
            .map_err(|e| open_error(e, path))?;
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
        &self.inner.stmts[ns as usize]
    }

    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// The connection every write runs on, once the write before has finished; reopened if
    /// it broke.
    ///
    /// Why one connection of its own beside the pool: the writes of one process then queue
    /// here, in order, instead of meeting in SQLite's write lock, where each collision costs
    /// a sleep of a millisecond or more in SQLite's busy handler. Reads never come here.
    async fn writer(&self) -> std::result::Result<Own<'_>, sqlx::Error> {
        let mut guard = self.inner.conn.lock().await;
        if guard.is_none() {
            *guard = Some(SqliteConnection::connect_with(&self.inner.options).await?);
        }
        Ok(Own { guard })
    }

    /// Runs one write statement on [`writer`](Self::writer)'s connection.
    async fn write(&self, q: Stmt<'_>, what: &str, key: Option<&str>) -> Result<SqliteQueryResult> {
        let mut own = self.writer().await.map_err(|e| convert(e, what, key))?;
        own.execute(q).await.map_err(|e| convert(e, what, key))
    }

    /// The live record of `key`, read on the pool.
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
        let failed = |e| convert(e, "claim", Some(key));
        for _ in 0..CLAIM_ROUNDS {
            let now = self.now();
            match self.fetch_live(ns, key, now).await? {
                Some(r) if r.state == RecordState::Completed => {
                    return Ok(ClaimOutcome::Completed(r));
                }
                Some(r) if !r.lease_lapsed(now) => return Ok(ClaimOutcome::InFlight(r)),
                _ => {}
            }
            let mut own = self.writer().await.map_err(failed)?;
            // The lease starts when the claim runs, not before the wait for the connection.
            let now = self.now();
            let lease_expires_at = now.add(claim.lease);
            let q = sqlx::query(AssertSqlSafe(self.stmts(ns).claim.clone()))
                .bind(key)
                .bind(claim.token.as_str())
                .bind(lease_expires_at.as_millis())
                .bind(claim.meta.fingerprint)
                .bind(claim.meta.function)
                .bind(claim.meta.version)
                .bind(now.as_millis());
            if let Some(row) = own.fetch_optional(q).await.map_err(failed)? {
                let attempt: i64 = row.try_get(0).map_err(failed)?;
                return Ok(ClaimOutcome::Acquired {
                    attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                    lease_expires_at,
                });
            }
            // A record came to stand between the read and the claim: the next round reads it.
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
        let done = self
            .write(
                sqlx::query(AssertSqlSafe(self.stmts(ns).renew.clone()))
                    .bind(key)
                    .bind(token.as_str())
                    .bind(until.as_millis()),
                "renew",
                Some(key),
            )
            .await?;
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
        let q = sqlx::query(AssertSqlSafe(self.stmts(ns).complete.clone()))
            .bind(key)
            .bind(token.as_str())
            .bind(value)
            .bind(now.as_millis())
            .bind(ms(ttl.map(|t| now.add(t))));
        let done = self.write(q, "complete", Some(key)).await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(Error::lease_lost(key))
        }
    }

    async fn release(&self, ns: Namespace, key: &str, token: &LeaseToken) -> Result<bool> {
        let done = self
            .write(
                sqlx::query(AssertSqlSafe(self.stmts(ns).release.clone()))
                    .bind(key)
                    .bind(token.as_str()),
                "release",
                Some(key),
            )
            .await?;
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
        let q = sqlx::query(AssertSqlSafe(self.stmts(ns).put.clone()))
            .bind(key)
            .bind(value)
            .bind(meta.fingerprint)
            .bind(meta.function)
            .bind(meta.version)
            .bind(now.as_millis())
            .bind(ms(ttl.map(|t| now.add(t))));
        self.write(q, "put", Some(key)).await?;
        Ok(())
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool> {
        let done = self
            .write(
                sqlx::query(AssertSqlSafe(self.stmts(ns).delete.clone())).bind(key),
                "delete",
                Some(key),
            )
            .await?;
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
        Ok(Page::from_fetched(records, limit))
    }

    async fn clear(&self, ns: Namespace) -> Result<u64> {
        let done = self
            .write(
                sqlx::query(AssertSqlSafe(self.stmts(ns).clear.clone())),
                "clear",
                None,
            )
            .await?;
        Ok(done.rows_affected())
    }

    async fn purge_expired(&self, ns: Namespace, limit: usize) -> Result<u64> {
        let done = self
            .write(
                sqlx::query(AssertSqlSafe(self.stmts(ns).purge.clone()))
                    .bind(self.now().as_millis())
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX)),
                "purge_expired",
                None,
            )
            .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use stent_core::{Claim, ClaimOutcome, LeaseToken, Namespace, RecordMeta, ResultStore};

    use super::SqliteStore;

    const NS: Namespace = Namespace::Idempotency;

    #[tokio::test]
    async fn a_broken_connection_is_replaced_by_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("broken.db"))
            .await
            .unwrap();
        // What `Own::check` leaves after an I/O error or a crashed connection thread.
        *store.inner.conn.lock().await = None;
        let token = LeaseToken::generate();
        let claim = Claim {
            token: &token,
            lease: std::time::Duration::from_secs(30),
            meta: RecordMeta::default(),
        };
        let outcome = store.claim(NS, "after", &claim).await.unwrap();
        assert!(
            matches!(outcome, ClaimOutcome::Acquired { attempt: 1, .. }),
            "{outcome:?}"
        );
        store
            .complete(NS, "after", &token, b"v", None)
            .await
            .unwrap();
        assert!(store.inner.conn.lock().await.is_some());
        let r = store.get(NS, "after").await.unwrap().unwrap();
        assert_eq!(r.value.as_deref(), Some(&b"v"[..]));
    }
}
