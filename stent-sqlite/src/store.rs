//! [`ResultStore`] for SQLite: each operation with the statement it sends.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::OptionalExtension as _;
use rusqlite::trace::{TraceEvent, TraceEventCodes};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection as _, Sqlite, SqliteConnection};
use stent_core::store::check_value_len;
use stent_core::{
    Capabilities, Claim, ClaimOutcome, Clock, Error, ErrorKind, LeaseToken, ListQuery, Namespace,
    OnConnection, Page, Record, RecordMeta, RecordState, Result, ResultStore, SqlStore, Timestamp,
};
use tokio::sync::Mutex;

use crate::config::{Durability, SqliteStoreBuilder};
use crate::error::{convert, convert_read, open_error};
use crate::sql::{self, COLUMNS, Columns};

const CAPABILITIES: Capabilities = Capabilities::new()
    .shared(true)
    .durable(true)
    .max_value_len(Some(1_000_000_000)); // SQLite's own limit (`SQLITE_MAX_LENGTH`)

/// How often a claim reads and runs the claim statement before calling the key contended
/// (a second round only when a record came to stand between the two).
const CLAIM_ROUNDS: usize = 8;

/// A [`ResultStore`] in a SQLite database file (WAL mode): the embedded default. Processes
/// sharing the file keep every guarantee (leases and expiry follow a [`Clock`], so theirs
/// must agree); the crate docs list what each operation sends. Cheap to clone: clones share
/// the connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SqlitePool,
    /// Where writes run (see `SqliteStore::write`); `None` once broken, until the next write.
    writer: Mutex<Option<SqliteConnection>>,
    /// The idle connections reads run on (see `SqliteStore::on_reader`).
    readers: std::sync::Mutex<Vec<rusqlite::Connection>>,
    busy_timeout: Duration,
    path: PathBuf,
    clock: Arc<dyn Clock>,
    prefix: String,
    /// Each namespace's table, by [`Namespace`] order.
    tables: [String; Namespace::ALL.len()],
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("tables", &self.inner.tables)
            .finish()
    }
}

type Stmt<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>;

/// Statement `$sql` on table `$table`, which it names `{t}`; with a query function `$q`
/// (`query`, `query_as`, `query_scalar`), that sqlx query with each `$arg` bound in turn.
macro_rules! sql {
    ($table:expr => $sql:literal) => {
        format!($sql, t = format_args!("\"{}\"", $table))
    };
    ($q:ident, $table:expr => $sql:literal $(, $arg:expr)*) => {
        sqlx::$q(AssertSqlSafe(sql!($table => $sql)))$(.bind($arg))*
    };
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with default settings.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder().path(path).build().await
    }

    /// Opens the store a URL names (see [`SqliteStoreBuilder::url`]).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder().url(url)?.build().await
    }

    /// Opens the store the URL in [`STENT_SQLITE_URL`](crate::ENV_URL) names, or
    /// [`DEFAULT_PATH`](crate::DEFAULT_PATH) when it is unset or empty.
    pub async fn from_env() -> Result<Self> {
        let named = |e: Error| Error::config(format!("{}: {}", crate::ENV_URL, e.message()));
        match std::env::var(crate::ENV_URL).unwrap_or_default().trim() {
            "" => Self::builder().build().await,
            url => Self::builder().url(url).map_err(named)?.build().await,
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

    /// The connection pool, for your own queries against the tables: the store's reads,
    /// writes and transactional calls run on connections of their own (see the crate docs).
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    /// The table a namespace is stored in.
    pub fn table(&self, ns: Namespace) -> &str {
        &self.inner.tables[ns as usize]
    }

    pub(crate) async fn open_with(b: SqliteStoreBuilder) -> Result<Self> {
        let fail = |e| open_error(e, &b.path);
        let opts = SqliteConnectOptions::new()
            .filename(&b.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match b.durability {
                Durability::Normal => SqliteSynchronous::Normal,
                Durability::Full => SqliteSynchronous::Full,
            })
            .busy_timeout(b.busy_timeout);
        // The writer first: it creates the file and switches it to WAL before the pool connects.
        let writer = SqliteConnection::connect_with(&opts).await.map_err(fail)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(b.max_connections)
            .min_connections(1)
            .acquire_timeout(b.busy_timeout.max(Duration::from_secs(5)))
            // An in-process connection has no peer to lose: a ping would only cost a round
            // trip to its thread on every acquire. A crashed one still fails its statement.
            .test_before_acquire(false)
            .connect_with(opts)
            .await
            .map_err(fail)?;
        let store = SqliteStore {
            inner: Arc::new(Inner {
                pool,
                writer: Mutex::new(Some(writer)),
                readers: std::sync::Mutex::new(Vec::new()),
                busy_timeout: b.busy_timeout,
                tables: b.table_names(),
                prefix: b.table_prefix,
                path: b.path,
                clock: b.clock,
            }),
        };
        if b.create_tables {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Creates the tables and indexes that are missing, brings older layouts up to date,
    /// and checks that existing tables are stent's, in one transaction: safe to run from
    /// many processes at once, and again at any time.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](stent_core::ErrorKind::Config) when the file is read-only or
    /// holds a table of the same name that is not a stent table.
    pub async fn migrate(&self) -> Result<()> {
        let (prefix, tables, path) = (&self.inner.prefix, &self.inner.tables, &self.inner.path);
        let mut foreign = None; // the table found not to be stent's, if one is
        let done = self.write(async |conn| {
            // IMMEDIATE takes the write lock: a read-only file (which SQLite opens without
            // complaint) fails here, before anything else is attempted.
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
            sql::create_tables(prefix, tables).execute(&mut *tx).await?;
            let version = sql!(query_scalar, format!("{prefix}stent_schema") =>
                "SELECT version FROM {t} WHERE component = 'sqlite'");
            let version: Option<i64> = version.fetch_optional(&mut *tx).await?;
            // A table of the same name may be someone else's: check before indexing it.
            for t in tables {
                foreign = Some(t);
                let probe = sql!(query, t => "SELECT {COLUMNS} FROM {t} LIMIT 0");
                probe.execute(&mut *tx).await?;
            }
            foreign = None;
            let finish = sql::finish_tables(prefix, tables, version == Some(1));
            finish.execute(&mut *tx).await?;
            tx.commit().await
        });
        done.await.map_err(|e| match foreign {
            Some(t) => Error::config(format!(
                "{} has a table {t:?} that is not a stent table; choose a table prefix",
                path.display()
            ))
            .with_source(e),
            None => open_error(e, path),
        })
    }

    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Runs `op` on the store's own write connection once the write before it has finished,
    /// and reopens that connection if it broke (an I/O error or a crashed connection thread).
    /// Beside the pool, so that one process's writes queue here, not in SQLite's write lock
    /// (each collision sleeps a millisecond or more there), and pay no acquire and release:
    /// a first call took 1.05–1.27 × two raw writes with it, 1.38–1.48 × with every write on
    /// the pool, past the 1.25 × target (the benches' `interleaved sqlite-miss`).
    async fn write<T>(
        &self,
        op: impl AsyncFnOnce(&mut SqliteConnection) -> sqlx::Result<T>,
    ) -> sqlx::Result<T> {
        let mut writer = self.writer().await?;
        let result = op(writer.as_mut().expect("opened")).await;
        if let Err(sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed) = &result {
            *writer = None;
        }
        result
    }

    /// The writer, once the write before has finished, opened if it is not. Inside a
    /// transactional call's function, which runs on the writer, waiting would never end:
    /// there a write through the store is refused at once.
    async fn writer(&self) -> sqlx::Result<tokio::sync::MutexGuard<'_, Option<SqliteConnection>>> {
        if HOLDING_WRITER.try_with(|&held| held == self.id()) == Ok(true) {
            let why = "a write through the store from inside a transactional call's function \
                       would wait for the transaction it is part of: write through the \
                       connection the function is given";
            return Err(sqlx::Error::Protocol(why.into()));
        }
        let mut writer = self.inner.writer.lock().await;
        if writer.is_none() {
            let options = self.inner.pool.connect_options();
            *writer = Some(SqliteConnection::connect_with(&options).await?);
        }
        Ok(writer)
    }

    /// What tells this store apart in [`HOLDING_WRITER`]: the address its clones share.
    fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    /// Runs one statement on the [writer](Self::write); returns how many rows it changed.
    async fn execute(&self, q: Stmt<'_>, what: &str, key: Option<&str>) -> Result<u64> {
        let done = self.write(async |conn| q.execute(conn).await).await;
        Ok(done.map_err(|e| convert(e, what, key))?.rows_affected())
    }

    /// The write half of a claim, on `conn`: takes an absent, expired or lapsed key and
    /// nothing else (then no row comes back, and it returns `None`).
    async fn take(
        &self,
        conn: &mut SqliteConnection,
        ns: Namespace,
        key: &str,
        claim: &Claim<'_>,
    ) -> sqlx::Result<Option<ClaimOutcome>> {
        // The lease starts when the claim runs, not before the wait for the writer.
        let now = self.now();
        let until = now.add(claim.lease);
        let attempt: Option<i64> = sql!(query_scalar, self.table(ns) =>
            "INSERT INTO {t} (key, state, lease_token, lease_expires_ms, attempt, \
                 fingerprint, function, version, created_ms) \
             VALUES (?1, 'in_progress', ?2, ?3, 1, ?4, ?5, ?6, ?7) \
             ON CONFLICT (key) DO UPDATE SET \
                 attempt = CASE WHEN expires_ms <= ?7 THEN 1 ELSE attempt + 1 END, \
                 created_ms = CASE WHEN expires_ms <= ?7 THEN ?7 ELSE created_ms END, \
                 state = 'in_progress', value = NULL, lease_token = ?2, lease_expires_ms = ?3, \
                 fingerprint = ?4, function = ?5, version = ?6, completed_ms = NULL, \
                 expires_ms = NULL \
             WHERE expires_ms <= ?7 OR (state = 'in_progress' \
                 AND (lease_expires_ms IS NULL OR lease_expires_ms <= ?7)) \
             RETURNING attempt",
            key, claim.token.as_str(), until.as_millis(), claim.meta.fingerprint,
            claim.meta.function, claim.meta.version, now.as_millis())
        .fetch_optional(conn)
        .await?;
        Ok(attempt.map(|attempt| ClaimOutcome::Acquired {
            attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
            lease_expires_at: until,
        }))
    }

    /// What [`ResultStore::complete`] sends, on `conn` (a transaction's) or else on the
    /// [writer](Self::write).
    async fn complete_on(
        &self,
        conn: Option<&mut SqliteConnection>,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()> {
        check_value_len(&CAPABILITIES, key, value)?;
        let now = self.now();
        let q = sql!(query, self.table(ns) =>
            "UPDATE {t} SET state = 'completed', value = ?3, lease_token = NULL, \
                 lease_expires_ms = NULL, completed_ms = ?4, expires_ms = ?5 \
             WHERE key = ?1 AND lease_token = ?2 AND state = 'in_progress'",
            key, token.as_str(), value, now.as_millis(), ttl.map(|t| now.add(t).as_millis()));
        let done = match conn {
            Some(conn) => q.execute(conn).await,
            None => self.write(async |conn| q.execute(conn).await).await,
        };
        let done = done.map_err(|e| convert(e, "complete", Some(key)))?;
        match done.rows_affected() {
            1 => Ok(()),
            _ => Err(Error::lease_lost(key)),
        }
    }

    /// Runs `read` on the calling task, on one of the store's read connections (opened when
    /// none is idle): a point read takes SQLite about a microsecond and in WAL mode never
    /// waits for a writer (bar a crashed one's recovery, within the busy timeout), while
    /// handing it to a connection's thread and back, as sqlx does, cost 18–36 × the read
    /// itself (the benches' `interleaved limits`).
    fn on_reader<T>(
        &self,
        what: &str,
        key: Option<&str>,
        read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let fail = |e| convert_read(e, what, key);
        // A new one has the file's WAL mode (a file setting), the store's busy timeout, and
        // reports each statement as a `tracing` event (target `stent_sqlite::sql`, TRACE).
        let open = || {
            let conn = rusqlite::Connection::open(&self.inner.path)?;
            conn.busy_timeout(self.inner.busy_timeout)?;
            conn.trace_v2(TraceEventCodes::SQLITE_TRACE_STMT, Some(trace));
            Ok(conn)
        };
        let idle = self.readers().pop();
        let conn = idle.map_or_else(open, Ok).map_err(fail)?;
        let result = read(&conn).map_err(fail);
        self.readers().push(conn);
        result
    }

    /// The idle read connections: at most one per thread reading at once (reads never await).
    fn readers(&self) -> MutexGuard<'_, Vec<rusqlite::Connection>> {
        let readers = self.inner.readers.lock();
        readers.unwrap_or_else(PoisonError::into_inner)
    }

    /// The live record of `key` at `now`, read on the calling task (see [`Self::on_reader`]).
    fn read(&self, ns: Namespace, key: &str, now: Timestamp) -> Result<Option<Record>> {
        let row = self.on_reader("get", Some(key), |conn| {
            let mut stmt = conn.prepare_cached(&sql!(self.table(ns) =>
                "SELECT {COLUMNS} FROM {t} WHERE key = ?1 \
                     AND (expires_ms IS NULL OR expires_ms > ?2)"))?;
            stmt.query_row((key, now.as_millis()), |row| Columns::try_from(row))
                .optional()
        });
        row?.map(sql::record).transpose()
    }
}

tokio::task_local! {
    /// The store ([`SqliteStore::id`]) whose writer the task holds for a transactional call.
    static HOLDING_WRITER: usize;
}

/// Reports a statement a read connection runs, as sqlx reports the writer's.
fn trace(event: TraceEvent<'_>) {
    if let TraceEvent::Stmt(_, sql) = event {
        tracing::event!(target: "stent_sqlite::sql", tracing::Level::TRACE, db.statement = sql);
    }
}

/// What a claim returns without writing, given the live record at `now`: the completed
/// record, or the one whose lease still runs; `None` when the key is free to take.
fn settled(record: Option<Record>, now: Timestamp) -> Option<ClaimOutcome> {
    match record {
        Some(r) if r.state == RecordState::Completed => Some(ClaimOutcome::Completed(r)),
        Some(r) if !r.lease_lapsed(now) => Some(ClaimOutcome::InFlight(r)),
        _ => None,
    }
}

/// Transactional calls ([`DurableBuilder::wrap_tx`](stent_core::DurableBuilder::wrap_tx)):
/// `BEGIN IMMEDIATE`, which takes the write lock at once (waiting at most the busy timeout),
/// then on its connection the claim's statements and the completion's (see the crate docs).
#[async_trait]
impl SqlStore for SqliteStore {
    type Db = Sqlite;

    fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    /// On the connection the store writes on, which would wait for the transaction's write
    /// lock anyway (see the crate docs).
    async fn on_own_connection(&self, job: &mut dyn OnConnection<SqliteConnection>) -> Result<()> {
        let writer = self.writer().await;
        let mut writer = writer.map_err(|e| convert(e, "connect", None))?;
        let job = job.run(writer.as_mut().expect("opened"));
        let done = HOLDING_WRITER.scope(self.id(), job).await;
        if matches!(&done, Err(e) if e.kind() == ErrorKind::Unavailable) {
            *writer = None;
        }
        done
    }

    /// `BEGIN IMMEDIATE`: the wait for the write lock is the store's
    /// [busy timeout](crate::SqliteStoreBuilder::busy_timeout), whatever `_lock_wait` says.
    fn begin_statement(&self, _lock_wait: Duration) -> String {
        "BEGIN IMMEDIATE".to_owned()
    }

    async fn claim_in(
        &self,
        conn: &mut SqliteConnection,
        ns: Namespace,
        key: &str,
        claim: &Claim<'_>,
    ) -> Result<ClaimOutcome> {
        // Holding the write lock from here on, the write first: a first call needs nothing
        // else; a replay or a key in flight reads the record that stopped it, on the
        // transaction's connection, which sees what this transaction wrote before.
        let fail = |e| convert(e, "claim", Some(key));
        if let Some(acquired) = self.take(&mut *conn, ns, key, claim).await.map_err(fail)? {
            return Ok(acquired);
        }
        let now = self.now();
        let row: Option<Columns> = sql!(query_as, self.table(ns) =>
            "SELECT {COLUMNS} FROM {t} WHERE key = ?1 AND (expires_ms IS NULL OR expires_ms > ?2)",
            key, now.as_millis())
        .fetch_optional(&mut *conn)
        .await
        .map_err(fail)?;
        settled(row.map(sql::record).transpose()?, now).ok_or_else(|| {
            Error::new(ErrorKind::Busy, "the key was neither free nor held").with_key(key)
        })
    }

    async fn complete_in(
        &self,
        conn: &mut SqliteConnection,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()> {
        self.complete_on(Some(conn), ns, key, token, value, ttl)
            .await
    }

    fn error(&self, err: sqlx::Error, what: &str, key: Option<&str>) -> Error {
        convert(err, what, key)
    }
}

#[async_trait]
impl ResultStore for SqliteStore {
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Record>> {
        self.read(ns, key, self.now())
    }

    async fn claim(&self, ns: Namespace, key: &str, claim: &Claim<'_>) -> Result<ClaimOutcome> {
        for _ in 0..CLAIM_ROUNDS {
            let now = self.now();
            if let Some(settled) = settled(self.read(ns, key, now)?, now) {
                return Ok(settled);
            }
            let taken = self.write(async |conn| self.take(conn, ns, key, claim).await);
            if let Some(acquired) = taken.await.map_err(|e| convert(e, "claim", Some(key)))? {
                return Ok(acquired);
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
        let q = sql!(query, self.table(ns) =>
            "UPDATE {t} SET lease_expires_ms = ?3 \
             WHERE key = ?1 AND lease_token = ?2 AND state = 'in_progress'",
            key, token.as_str(), until.as_millis());
        match self.execute(q, "renew", Some(key)).await? {
            1 => Ok(until),
            _ => Err(Error::lease_lost(key)),
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
        self.complete_on(None, ns, key, token, value, ttl).await
    }

    async fn release(&self, ns: Namespace, key: &str, token: &LeaseToken) -> Result<bool> {
        let q = sql!(query, self.table(ns) =>
            "DELETE FROM {t} WHERE key = ?1 AND lease_token = ?2 AND state = 'in_progress'",
            key, token.as_str());
        Ok(self.execute(q, "release", Some(key)).await? == 1)
    }

    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        meta: RecordMeta<'_>,
    ) -> Result<()> {
        check_value_len(&CAPABILITIES, key, value)?;
        let now = self.now();
        let q = sql!(query, self.table(ns) =>
            "INSERT INTO {t} (key, state, value, attempt, fingerprint, function, version, \
                 created_ms, completed_ms, expires_ms) \
             VALUES (?1, 'completed', ?2, 1, ?3, ?4, ?5, ?6, ?6, ?7) \
             ON CONFLICT (key) DO UPDATE SET state = 'completed', value = ?2, \
                 lease_token = NULL, lease_expires_ms = NULL, attempt = 1, fingerprint = ?3, \
                 function = ?4, version = ?5, created_ms = ?6, completed_ms = ?6, \
                 expires_ms = ?7",
            key, value, meta.fingerprint, meta.function, meta.version, now.as_millis(),
            ttl.map(|t| now.add(t).as_millis()));
        self.execute(q, "put", Some(key)).await.map(drop)
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool> {
        let q = sql!(query, self.table(ns) => "DELETE FROM {t} WHERE key = ?1", key);
        Ok(self.execute(q, "delete", Some(key)).await? > 0)
    }

    async fn list(&self, ns: Namespace, query: &ListQuery) -> Result<Page> {
        let limit = query.limit.max(1);
        let rows: Vec<Columns> = self.on_reader("list", None, |conn| {
            // A prefix match on bytes (not LIKE, whose wildcards and case folding would leak in).
            let mut stmt = conn.prepare_cached(&sql!(self.table(ns) =>
                "SELECT {COLUMNS} FROM {t} WHERE key >= ?1 \
                     AND substr(CAST(key AS BLOB), 1, length(CAST(?1 AS BLOB))) = CAST(?1 AS BLOB) \
                     AND (?2 IS NULL OR key > ?2) AND (?3 OR expires_ms IS NULL OR expires_ms > ?4) \
                 ORDER BY key LIMIT ?5"))?;
            let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
            let (prefix, cursor) = (query.prefix.as_str(), query.cursor.as_deref());
            let params = (prefix, cursor, query.include_expired, self.now().as_millis(), fetch);
            stmt.query_map(params, |row| Columns::try_from(row))?.collect()
        })?;
        let records = rows.into_iter().map(sql::record).collect::<Result<_>>()?;
        Ok(Page::from_fetched(records, limit))
    }

    async fn clear(&self, ns: Namespace) -> Result<u64> {
        let q = sql!(query, self.table(ns) => "DELETE FROM {t}");
        self.execute(q, "clear", None).await
    }

    async fn purge_expired(&self, ns: Namespace, limit: usize) -> Result<u64> {
        let q = sql!(query, self.table(ns) =>
            "DELETE FROM {t} WHERE key IN (SELECT key FROM {t} WHERE expires_ms <= ?1 LIMIT ?2)",
            self.now().as_millis(), i64::try_from(limit).unwrap_or(i64::MAX));
        self.execute(q, "purge_expired", None).await
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
        // What `SqliteStore::write` leaves after an I/O error or a crashed connection thread.
        *store.inner.writer.lock().await = None;
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
        assert!(store.inner.writer.lock().await.is_some());
        let r = store.get(NS, "after").await.unwrap().unwrap();
        assert_eq!(r.value.as_deref(), Some(&b"v"[..]));
    }
}
