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
use stent_core::store::{ClaimTrend, check_value_len};
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
/// The store keeps one connection of its own next to its [pool](Self::pool). Every write
/// runs on that connection, one at a time: the writes of one process queue in the store
/// instead of meeting in SQLite's lock, whose busy handler sleeps a millisecond or more per
/// collision. [`get`](ResultStore::get) and [`list`](ResultStore::list) read on the pool,
/// where WAL lets readers run side by side. The pool does not ping a connection before
/// handing it out: an in-process connection has no peer to lose, and the ping is a round
/// trip to the connection's thread.
///
/// A [`claim`](ResultStore::claim) goes one of two ways, and decides the same either way
/// (the claim statement, `INSERT … ON CONFLICT … RETURNING`, takes a key only if it is
/// absent, expired or its lease has lapsed):
///
/// - **reading first**, while the store's recent claims mostly found a record standing: a
///   replay (a completed key) or an in-flight key is one read and never takes SQLite's write
///   lock, so it never waits for a writer in another process. The read runs on the store's
///   connection when that is free, and on the pool when a write holds it, so a replay never
///   queues behind writes either; a first call is then the read, the claim and the
///   completion;
/// - **writing first**, while they mostly took keys (and in a new store): a first call is
///   the claim and the completion, two statements; a replay is the claim, which takes
///   nothing, then the read.
///
/// A claim that found a record counts one way and a claim that took a key eight times the
/// other ([`ClaimTrend`]): claims read first while replays outnumber first calls by more
/// than eight to one.
///
/// What a statement costs is mostly the round trips to a connection's thread: through the
/// pool it pays for acquiring and releasing the connection as well. BENCHMARKS.md gives the
/// measured costs (`benches/examples/sqlite_requests.rs`).
///
/// Cheap to clone: clones share the connection and the pool.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SqlitePool,
    /// The store's own connection (see the struct docs); `None` after it broke, until the
    /// next write opens another.
    conn: Mutex<Option<SqliteConnection>>,
    options: SqliteConnectOptions,
    path: PathBuf,
    clock: Arc<dyn Clock>,
    /// Each namespace's statements, by [`Namespace`] order.
    stmts: [Statements; Namespace::ALL.len()],
    /// How the recent claims of each namespace went, by [`Namespace`] order: whether a
    /// claim reads first (see the struct docs).
    trends: [ClaimTrend; Namespace::ALL.len()],
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
                trends: Default::default(),
            }),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Creates the tables if missing, and checks that existing ones are stent's.
    async fn migrate(&self) -> Result<()> {
        let path = &self.inner.path;
        let mut own = self.own().await.map_err(|e| open_error(e, path))?;
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

    /// The store's own connection, waiting for the write that holds it; reopened if it broke.
    async fn own(&self) -> std::result::Result<Own<'_>, sqlx::Error> {
        let guard = self.inner.conn.lock().await;
        self.connected(guard).await
    }

    async fn connected<'a>(
        &self,
        mut guard: MutexGuard<'a, Option<SqliteConnection>>,
    ) -> std::result::Result<Own<'a>, sqlx::Error> {
        if guard.is_none() {
            *guard = Some(SqliteConnection::connect_with(&self.inner.options).await?);
        }
        Ok(Own { guard })
    }

    /// Runs one write statement on the store's own connection.
    async fn write(&self, q: Stmt<'_>, what: &str, key: Option<&str>) -> Result<SqliteQueryResult> {
        let mut own = self.own().await.map_err(|e| convert(e, what, key))?;
        own.execute(q).await.map_err(|e| convert(e, what, key))
    }

    /// The live record of `key`, read on `own` when given, else on the pool.
    async fn fetch_live(
        &self,
        own: Option<&mut Own<'_>>,
        ns: Namespace,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<Record>> {
        let q = sqlx::query(AssertSqlSafe(self.stmts(ns).get.clone()))
            .bind(key)
            .bind(now.as_millis());
        let row = match own {
            Some(own) => own.fetch_optional(q).await,
            None => q.fetch_optional(&self.inner.pool).await,
        }
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
        self.fetch_live(None, ns, key, self.now()).await
    }

    async fn claim(&self, ns: Namespace, key: &str, claim: &Claim<'_>) -> Result<ClaimOutcome> {
        let failed = |e| convert(e, "claim", Some(key));
        // A few rounds at most: each lost round means the record changed between the read
        // and the claim statement, which needs a writer in another process (or, when the
        // read ran on the pool, in this one) to act in that gap.
        let trend = &self.inner.trends[ns as usize];
        let mut read_first = trend.reads_first();
        for _ in 0..8 {
            let now = self.now();
            let mut own = None;
            if read_first {
                // The read runs on the store's connection when it is free, so a first call
                // keeps it for the claim; when a write holds it, on the pool, so a replay
                // never waits.
                own = match self.inner.conn.try_lock() {
                    Ok(guard) => Some(self.connected(guard).await.map_err(failed)?),
                    Err(_) => None,
                };
                // Reading first keeps replays and in-flight keys free of SQLite's write lock.
                match self.fetch_live(own.as_mut(), ns, key, now).await? {
                    Some(r) if r.state == RecordState::Completed => {
                        trend.found();
                        return Ok(ClaimOutcome::Completed(r));
                    }
                    Some(r) if !r.lease_lapsed(now) => {
                        trend.found();
                        return Ok(ClaimOutcome::InFlight(r));
                    }
                    _ => {}
                }
            }
            let (mut own, now) = match own {
                Some(own) => (own, now),
                // The lease starts when the claim runs, not before the wait for the connection.
                None => (self.own().await.map_err(failed)?, self.now()),
            };
            let lease_expires_at = now.add(claim.lease);
            let q = sqlx::query(AssertSqlSafe(self.stmts(ns).claim.clone()))
                .bind(key)
                .bind(claim.token.as_str())
                .bind(lease_expires_at.as_millis())
                .bind(claim.meta.fingerprint)
                .bind(claim.meta.function)
                .bind(claim.meta.version)
                .bind(now.as_millis());
            let row = own.fetch_optional(q).await.map_err(failed)?;
            if let Some(row) = row {
                let attempt: i64 = row.try_get(0).map_err(failed)?;
                trend.took();
                return Ok(ClaimOutcome::Acquired {
                    attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                    lease_expires_at,
                });
            }
            // Not taken: a record stands. The next round reads it.
            read_first = true;
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
        let next_cursor = if records.len() > limit {
            records.truncate(limit);
            records.last().map(|r| r.key.clone())
        } else {
            None
        };
        Ok(Page::new(records, next_cursor))
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
    //! The claim's two ways (reading or writing first), and its two read paths, chosen by
    //! whether a write holds the store's connection.

    use std::time::Duration;

    use stent_core::{
        Claim, ClaimOutcome, LeaseToken, ManualClock, Namespace, RecordMeta, ResultStore, Timestamp,
    };

    use stent_core::store::ClaimTrend;

    use super::SqliteStore;

    const NS: Namespace = Namespace::Idempotency;
    const LEASE: Duration = Duration::from_secs(30);
    /// Far longer than a read takes: a call that outlasts it is waiting for the connection.
    const PATIENCE: Duration = Duration::from_secs(10);

    async fn store(dir: &tempfile::TempDir, clock: &ManualClock) -> SqliteStore {
        SqliteStore::builder()
            .path(dir.path().join("paths.db"))
            .clock(clock.clone())
            .build()
            .await
            .unwrap()
    }

    async fn claim(store: &SqliteStore, key: &str, token: &LeaseToken) -> ClaimOutcome {
        let claim = Claim {
            token,
            lease: LEASE,
            meta: RecordMeta::default(),
        };
        store.claim(NS, key, &claim).await.unwrap()
    }

    async fn acquire(store: &SqliteStore, key: &str) -> LeaseToken {
        let token = LeaseToken::generate();
        let outcome = claim(store, key, &token).await;
        assert!(
            matches!(outcome, ClaimOutcome::Acquired { attempt: 1, .. }),
            "{outcome:?}"
        );
        token
    }

    /// A claim of `key` made while a write holds the store's connection: it must not write
    /// until the connection is free (checked 200 ms on), then it goes on.
    async fn claim_behind_a_write(store: &SqliteStore, key: &str) -> ClaimOutcome {
        let held = store.inner.conn.lock().await;
        let waiting = tokio::spawn({
            let (store, key) = (store.clone(), key.to_owned());
            async move { claim(&store, &key, &LeaseToken::generate()).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !waiting.is_finished(),
            "a write ran while the connection was held"
        );
        drop(held);
        tokio::time::timeout(PATIENCE, waiting)
            .await
            .unwrap()
            .unwrap()
    }

    fn clock() -> ManualClock {
        ManualClock::new(Timestamp::from_millis(1_800_000_000_000))
    }

    /// Leans `store`'s claims of [`NS`] to reading first, as a run of replays does.
    fn reading_first(store: &SqliteStore) {
        let trend = &store.inner.trends[NS as usize];
        (0..ClaimTrend::BOUND).for_each(|_| trend.found());
        assert!(trend.reads_first());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn claims_write_first_until_replays_outnumber_first_calls() {
        let (dir, clock) = (tempfile::tempdir().unwrap(), clock());
        let store = store(&dir, &clock).await;
        let token = acquire(&store, "done").await;
        store
            .complete(NS, "done", &token, b"v", None)
            .await
            .unwrap();
        // Writing first (a new store, then a key taken): a replay is the claim statement
        // first, so it waits for the store's connection.
        match claim_behind_a_write(&store, "done").await {
            ClaimOutcome::Completed(r) => assert_eq!(r.value.as_deref(), Some(&b"v"[..])),
            other => panic!("expected the completed record, got {other:?}"),
        }
        // Replays that outnumber the first call eight to one turn claims to reading first.
        for _ in 0..ClaimTrend::TOOK {
            claim(&store, "done", &LeaseToken::generate()).await;
        }
        let held = store.inner.conn.lock().await;
        let outcome =
            tokio::time::timeout(PATIENCE, claim(&store, "done", &LeaseToken::generate()))
                .await
                .expect("reading first, a replay must not wait for the store's connection");
        assert!(matches!(outcome, ClaimOutcome::Completed(_)), "{outcome:?}");
        drop(held);
        // A run of first calls turns them back.
        for i in 0..ClaimTrend::BOUND / ClaimTrend::TOOK + 1 {
            acquire(&store, &format!("fresh-{i}")).await;
        }
        match claim_behind_a_write(&store, "done").await {
            ClaimOutcome::Completed(_) => {}
            other => panic!("expected the completed record, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_replay_reads_on_the_pool_while_a_write_holds_the_connection() {
        let (dir, clock) = (tempfile::tempdir().unwrap(), clock());
        let store = store(&dir, &clock).await;
        let token = acquire(&store, "done").await;
        store
            .complete(NS, "done", &token, b"v", None)
            .await
            .unwrap();

        reading_first(&store);
        let held = store.inner.conn.lock().await;
        let outcome =
            tokio::time::timeout(PATIENCE, claim(&store, "done", &LeaseToken::generate()))
                .await
                .expect("a replay must not wait for the store's connection");
        match outcome {
            ClaimOutcome::Completed(r) => assert_eq!(r.value.as_deref(), Some(&b"v"[..])),
            other => panic!("expected the completed record, got {other:?}"),
        }
        drop(held);
    }

    #[tokio::test]
    async fn an_in_flight_key_is_reported_from_the_pool_while_a_write_holds_the_connection() {
        let (dir, clock) = (tempfile::tempdir().unwrap(), clock());
        let store = store(&dir, &clock).await;
        let token = acquire(&store, "running").await;

        reading_first(&store);
        let held = store.inner.conn.lock().await;
        let outcome =
            tokio::time::timeout(PATIENCE, claim(&store, "running", &LeaseToken::generate()))
                .await
                .expect("an in-flight answer must not wait for the store's connection");
        match outcome {
            ClaimOutcome::InFlight(r) => assert_eq!(r.lease_token.as_ref(), Some(&token)),
            other => panic!("expected the in-flight record, got {other:?}"),
        }
        drop(held);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lapsed_lease_read_on_the_pool_is_taken_over_once_the_connection_is_free() {
        let (dir, clock) = (tempfile::tempdir().unwrap(), clock());
        let store = store(&dir, &clock).await;
        let stale = acquire(&store, "lapsed").await;
        clock.advance(LEASE);
        reading_first(&store);

        // The read finds a lapsed lease; the takeover is a write, so it waits its turn.
        let outcome = claim_behind_a_write(&store, "lapsed").await;
        assert!(
            matches!(outcome, ClaimOutcome::Acquired { attempt: 2, .. }),
            "{outcome:?}"
        );
        let e = store
            .complete(NS, "lapsed", &stale, b"late", None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), stent_core::ErrorKind::LeaseLost, "{e}");
    }

    #[tokio::test]
    async fn a_fresh_key_read_on_the_pool_is_claimed_once_the_connection_is_free() {
        let (dir, clock) = (tempfile::tempdir().unwrap(), clock());
        let store = store(&dir, &clock).await;
        reading_first(&store);
        let outcome = claim_behind_a_write(&store, "fresh").await;
        assert!(
            matches!(outcome, ClaimOutcome::Acquired { attempt: 1, .. }),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_broken_connection_is_replaced_by_the_next_write() {
        let (dir, clock) = (tempfile::tempdir().unwrap(), clock());
        let store = store(&dir, &clock).await;
        // What `Own::check` leaves after an I/O error or a crashed connection thread.
        *store.inner.conn.lock().await = None;
        let token = acquire(&store, "after").await;
        store
            .complete(NS, "after", &token, b"v", None)
            .await
            .unwrap();
        assert!(store.inner.conn.lock().await.is_some());
        let r = store.get(NS, "after").await.unwrap().unwrap();
        assert_eq!(r.value.as_deref(), Some(&b"v"[..]));
    }
}
