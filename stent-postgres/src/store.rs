//! [`ResultStore`] for PostgreSQL: each operation with the statement it sends.

use std::fmt;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool::managed::{Metrics, Object, PoolError, RecycleResult};
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{
    PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow, PgTypeInfo, PgValueFormat,
    PgValueRef, Postgres,
};
use sqlx::{AssertSqlSafe, Connection as _, Row as _, ValueRef as _};
use stent_core::broadcast::{Broadcast, Invalidations};
use stent_core::store::{check_key_len, check_value_len, redact};
use stent_core::{
    Capabilities, Claim, ClaimOutcome, Error, ErrorKind, LeaseToken, ListQuery, Namespace,
    OnConnection, Page, Record, RecordMeta, RecordState, Result, ResultStore, SqlStore, Timestamp,
};

use crate::broadcast::{self, Listener};
use crate::config::{PostgresStoreBuilder, Source};
use crate::error::{Target, convert, migrate_error, sqlstate};
use crate::sql::{self, COLUMNS, LIVE, Table};

/// Longest key accepted, in bytes: a btree entry must fit in a third of an 8 KiB page
/// (about 2.7 KB), and a key needs headroom below that.
pub const MAX_KEY_LEN: usize = 2048;

/// Largest value accepted, in bytes: PostgreSQL's limit on one field is 1 GiB.
pub const MAX_VALUE_LEN: usize = 1_000_000_000;

const CAPABILITIES: Capabilities = Capabilities::new()
    .server_clock(true)
    .shared(true)
    .durable(true)
    .max_key_len(Some(MAX_KEY_LEN))
    .max_value_len(Some(MAX_VALUE_LEN));

/// Durations past this are stored as this (a thousand years): `timestamptz` has an end.
const MAX_DURATION_MS: i64 = 1000 * 366 * 24 * 3600 * 1000;

const NO_URL: &str =
    "STENT_POSTGRES_URL is not set: give a URL such as postgres://user:password@localhost:5432/db";

/// A connection idle this long is pinged before it is used again.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// How often a claim runs its statement before calling the key contended (see the crate docs).
const CLAIM_ROUNDS: usize = 8;

/// A [`ResultStore`] in a PostgreSQL database, shared by any number of processes and
/// machines, on the server's clock; the crate docs list what each operation sends. Cheap to
/// clone: clones share the connections.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    /// The connections one-statement operations run on (see `PostgresStore::on_conn`).
    conns: deadpool::managed::Pool<Connector>,
    target: Target,
    schema: Option<String>,
    /// Each namespace's table, by [`Namespace`] order.
    tables: [Table; Namespace::ALL.len()],
    channel: String,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("server", &self.inner.target.name)
            .field("tables", &self.inner.tables.each_ref().map(|t| &t.shown))
            .finish()
    }
}

/// `sqlx::$query` of statement `$sql` on table `$table`, which it names `{t}` (`$name =
/// $value` fill in other names it uses), with the `$arg`s bound to `$1`, `$2`, … in order.
macro_rules! sql {
    ($query:ident, $table:expr => $sql:literal $(, $name:ident = $value:expr)*; $($arg:expr),*) => {
        sqlx::$query(AssertSqlSafe(format!($sql, t = $table.sql $(, $name = $value)*)))
            $(.bind($arg))*
    };
}

impl PostgresStore {
    /// Connects to the server a URL names (see the crate docs), creating the tables if they
    /// are missing.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder().url(url).build().await
    }

    /// Uses a pool the caller already has (its connections, its limits), creating the
    /// tables if they are missing.
    pub async fn from_pool(pool: PgPool) -> Result<Self> {
        Self::builder().pool(pool).build().await
    }

    /// Connects to the server in [`STENT_POSTGRES_URL`](crate::ENV_URL).
    pub async fn from_env() -> Result<Self> {
        Self::builder().build().await
    }

    /// A builder: URL or pool, schema, table prefix, pool size and timeouts.
    pub fn builder() -> PostgresStoreBuilder {
        PostgresStoreBuilder::default()
    }

    /// The connection pool `migrate` and the broadcast listener use, for your own queries on
    /// the tables (the store's operations and transactional calls run on connections of its own).
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The channel this store's deletes and overwrites are announced on (`pg_notify`) and its
    /// [`invalidations`](Broadcast::invalidations) listen on: `stent_` and a hash of the schema
    /// and table prefix. The listening session is `stent listener {channel}` in `pg_stat_activity`.
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// The table a namespace is stored in, as `schema.table` or `table`.
    pub fn table(&self, ns: Namespace) -> &str {
        &self.t(ns).shown
    }

    fn t(&self, ns: Namespace) -> &Table {
        &self.inner.tables[ns as usize]
    }

    /// Creates the schema, tables and indexes that are missing, and checks that existing
    /// tables are stent's. Safe to run from many processes at once, and again at any time;
    /// [`build`](PostgresStoreBuilder::build) runs it unless told
    /// [not to](PostgresStoreBuilder::create_tables).
    pub async fn migrate(&self) -> Result<()> {
        self.migrate_on(&mut *self.acquire().await?).await
    }

    pub(crate) async fn open_with(b: PostgresStoreBuilder) -> Result<Self> {
        // A store's first connection is made directly, so that a refused port or a wrong
        // password fails at once with its cause (a pool would retry until its timeout); it
        // creates the tables, then is closed. A caller's pool hands out one of its own.
        let (pool, target, first) = match b.source {
            // `build` made a URL of a set `STENT_POSTGRES_URL`.
            Source::Env => return Err(Error::config(NO_URL)),
            Source::Url(ref url) => connect_url(url, &b).await?,
            Source::Pool(ref pool) => (pool.clone(), target_of(&pool.connect_options(), ""), None),
        };
        let conns = deadpool::managed::Pool::builder(Connector(pool.connect_options()))
            .max_size(usize::try_from(pool.options().get_max_connections()).unwrap_or(1))
            // The connection used last goes out first: a steady load runs on a few warm
            // connections, and the rest sit idle (pinged before their next use).
            .queue_mode(deadpool::managed::QueueMode::Lifo)
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(b.acquire_timeout))
            .create_timeout(Some(b.acquire_timeout))
            .recycle_timeout(Some(b.acquire_timeout))
            .build()
            .map_err(|e| Error::config(format!("PostgreSQL connections: {e}")))?;
        let (schema, prefix) = (b.schema.as_deref(), b.table_prefix.as_str());
        let store = PostgresStore {
            inner: Arc::new(Inner {
                channel: broadcast::channel(schema, prefix),
                tables: Namespace::ALL.map(|ns| Table::new(schema, prefix, ns)),
                schema: b.schema.clone(),
                pool,
                conns,
                target,
            }),
        };
        match first {
            Some(mut conn) => {
                if b.create_tables {
                    store.migrate_on(&mut conn).await?;
                }
                let _ = conn.close().await;
            }
            None if b.create_tables => store.migrate().await?,
            None => drop(store.acquire().await?),
        }
        Ok(store)
    }

    /// Creates whatever is missing, then checks that every table has stent's columns.
    async fn migrate_on(&self, conn: &mut PgConnection) -> Result<()> {
        let (target, tables) = (&self.inner.target, &self.inner.tables);
        let fail = |what: &'static str| move |e| migrate_error(e, target, what);
        // With everything there already, no DDL, and no privilege to run it, is needed.
        let exists = tables.each_ref().map(|t| t.exists.as_str()).join(" AND ");
        let q = format!("SELECT current_setting('server_encoding'), {exists}");
        let found = sqlx::query_as(AssertSqlSafe(q)).fetch_one(&mut *conn).await;
        let (encoding, exists): (String, bool) = found.map_err(fail("looking up the tables"))?;
        if encoding != "UTF8" && encoding != "SQL_ASCII" {
            return Err(Error::config(format!(
                "the database on {} is encoded in {encoding}, which cannot hold every UTF-8 key; \
                 use a UTF8 database",
                target.name
            )));
        }
        if !exists {
            let mut tx = conn.begin().await.map_err(fail("starting the migration"))?;
            let script = sql::migration(self.inner.schema.as_deref(), tables);
            let created = sqlx::raw_sql(AssertSqlSafe(script)).execute(&mut *tx).await;
            let creating = fail("creating the schema, tables, indexes and claim functions");
            created.map_err(creating)?;
            let committing = fail("committing the migration");
            tx.commit().await.map_err(committing)?;
        }
        for t in tables {
            let probe = format!("SELECT {COLUMNS} FROM {} LIMIT 0", t.sql);
            if let Err(e) = sqlx::query(AssertSqlSafe(probe)).execute(&mut *conn).await {
                let (missing, foreign) = (
                    "does not exist (run PostgresStore::migrate with a role that may create it)",
                    "is not a stent table (its columns differ); choose a schema or table prefix",
                );
                let what = match sqlstate(&e).as_deref() {
                    Some("42P01" | "3F000") => format!("table {} {missing}", t.shown),
                    Some("42703") => format!("table {} {foreign}", t.shown),
                    _ => format!("checking table {}", t.shown),
                };
                return Err(migrate_error(e, target, &what));
            }
        }
        Ok(())
    }

    /// A connection of the pool.
    async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<Postgres>> {
        let conn = self.inner.pool.acquire().await;
        conn.map_err(self.fail("connection", None))
    }

    fn fail(&self, what: &str, key: Option<&str>) -> impl Fn(sqlx::Error) -> Error + Copy {
        move |e| convert(e, &self.inner.target, what, key)
    }

    /// Runs one statement on one of the store's own connections, as operation `what` on `key`.
    async fn run<T>(
        &self,
        what: &str,
        key: Option<&str>,
        op: impl AsyncFnOnce(&mut PgConnection) -> sqlx::Result<T>,
    ) -> Result<T> {
        self.on_conn(async |conn| op(conn).await.map_err(self.fail(what, key)))
            .await
    }

    /// Runs `op` on one of the store's own connections, closed afterwards if its state is
    /// unknown (`op` cancelled midway, or an `Unavailable` error). They exist because sqlx's
    /// pool pings every connection given back to it: in the benches' `interleaved limits
    /// postgres`, a read on the pool took 1.48 × tokio-postgres' read on a held connection,
    /// on a held sqlx connection 1.00 ×. These are pinged only after sitting idle.
    async fn on_conn<T>(&self, op: impl AsyncFnOnce(&mut PgConnection) -> Result<T>) -> Result<T> {
        let conn = self.inner.conns.get().await.map_err(|e| match e {
            PoolError::Backend(e) => e,
            PoolError::Closed => sqlx::Error::PoolClosed,
            _ => sqlx::Error::PoolTimedOut,
        });
        let mut lent = Lent(Some(conn.map_err(self.fail("connection", None))?));
        let done = op(lent.0.as_mut().expect("lent until dropped")).await;
        if done.as_ref().err().map(Error::kind) != Some(ErrorKind::Unavailable) {
            lent.0 = None; // back to the others
        }
        done
    }
}

/// Opens the store's own connections with the pool's options, and pings one that sat idle.
struct Connector(Arc<PgConnectOptions>);

impl deadpool::managed::Manager for Connector {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> sqlx::Result<PgConnection> {
        PgConnection::connect_with(&self.0).await
    }

    async fn recycle(&self, conn: &mut PgConnection, m: &Metrics) -> RecycleResult<sqlx::Error> {
        Ok(ping_if_idle(conn, m.last_used()).await?)
    }
}

/// Pings a connection that sat idle for `idle`, if that is [`PING_AFTER_IDLE`] or longer.
async fn ping_if_idle(conn: &mut PgConnection, idle: Duration) -> sqlx::Result<()> {
    if idle >= PING_AFTER_IDLE {
        conn.ping().await?;
    }
    Ok(())
}

/// A connection lent to one operation: closed when dropped still lent.
struct Lent(Option<Object<Connector>>);

impl Drop for Lent {
    fn drop(&mut self) {
        self.0.take().map(Object::take);
    }
}

/// The server `opts` name, as `user@host:port/database`.
fn target_of(opts: &PgConnectOptions, url: &str) -> Target {
    let host = opts.get_socket().map(|dir| dir.display().to_string());
    let host = host.unwrap_or_else(|| opts.get_host().to_owned());
    let (user, port, database) = (opts.get_username(), opts.get_port(), opts.get_database());
    let name = format!("{user}@{host}:{port}/{}", database.unwrap_or_default());
    Target::new(name, url)
}

/// A pool for `url`, and the store's first connection (see `PostgresStore::open_with`).
async fn connect_url(
    url: &str,
    b: &PostgresStoreBuilder,
) -> Result<(PgPool, Target, Option<PgConnection>)> {
    let shown = redact(url);
    crate::config::check_url(url, &shown, std::env::var("PGUSER").ok().as_deref())?;
    let unparsed = Target::new(shown, url);
    let opts = PgConnectOptions::from_str(url);
    let opts = opts.map_err(|e| convert(e, &unparsed, "connection", None))?;
    let target = target_of(&opts, url);
    let (name, timeout) = (&target.name, b.acquire_timeout);
    let late = format!("PostgreSQL at {name} did not answer within {timeout:?}");
    let conn = tokio::time::timeout(timeout, PgConnection::connect_with(&opts)).await;
    let conn = conn.map_err(|_| Error::new(ErrorKind::Unavailable, late))?;
    let conn = conn.map_err(|e| convert(e, &target, "connection", None))?;
    let pool = PgPoolOptions::new()
        .max_connections(b.max_connections)
        .acquire_timeout(b.acquire_timeout)
        // Only a connection that sat idle is pinged (see the crate docs' Statements).
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move { ping_if_idle(conn, meta.idle_for).await.map(|()| true) })
        })
        .connect_lazy_with(opts);
    Ok((pool, target, Some(conn)))
}

/// Milliseconds of a duration, capped where `timestamptz` arithmetic stays in range.
fn millis(d: Duration) -> i64 {
    stent_core::record::duration_millis(d).min(MAX_DURATION_MS)
}

/// Refuses keys PostgreSQL cannot index or hold, before anything is sent.
fn check_key(key: &str) -> Result<()> {
    check_key_len(&CAPABILITIES, key)?;
    if key.contains('\0') {
        let message = "key contains a NUL character, which PostgreSQL text cannot hold";
        return Err(Error::new(ErrorKind::Key, message).with_key(key.replace('\0', "\\0")));
    }
    Ok(())
}

/// A `timestamptz` as PostgreSQL sends it in binary: microseconds since 2000-01-01 UTC.
struct Instant(Timestamp);

/// 2000-01-01T00:00:00Z in Unix milliseconds.
const PG_EPOCH_MS: i64 = 946_684_800_000;

/// `timestamptz`, matched by OID.
impl sqlx::Type<Postgres> for Instant {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(1184))
    }
}

impl sqlx::Decode<'_, Postgres> for Instant {
    fn decode(value: PgValueRef<'_>) -> std::result::Result<Self, BoxDynError> {
        if value.format() == PgValueFormat::Text {
            return Err("timestamptz in text format (expected binary)".into());
        }
        let micros = i64::from_be_bytes(value.as_bytes()?.try_into()?);
        let ms = micros.div_euclid(1000).saturating_add(PG_EPOCH_MS);
        Ok(Instant(Timestamp::from_millis(ms)))
    }
}

/// Column `name` of a record's row, or a `Decode` error naming the key and the column.
fn column<'r, T>(row: &'r PgRow, name: &str, key: &str) -> Result<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    let wrong = |e| format!("stored record's column `{name}` has the wrong type: {e}");
    row.try_get(name).map_err(|e| Error::decode(key, wrong(e)))
}

/// The record in a row of [`COLUMNS`].
fn decode(row: &PgRow) -> Result<Record> {
    let key: &str = row.try_get("key").map_err(|e| {
        let message = format!("stored record's column `key` has the wrong type: {e}");
        Error::new(ErrorKind::Decode, message)
    })?;
    let time = |name| Ok::<_, Error>(column::<Option<Instant>>(row, name, key)?.map(|t| t.0));
    let state: &str = column(row, "state", key)?;
    let state = RecordState::parse(state)
        .ok_or_else(|| Error::decode(key, format!("stored record has unknown state {state:?}")))?;
    let mut r = Record::new(key, state, time("created_at")?.unwrap_or_default());
    r.value = column(row, "value", key)?;
    r.lease_token = column::<Option<String>>(row, "lease_token", key)?.map(LeaseToken::from_string);
    r.lease_expires_at = time("lease_expires_at")?;
    r.attempt = u32::try_from(column::<i32>(row, "attempt", key)?).unwrap_or(1);
    r.fingerprint = column(row, "fingerprint", key)?;
    r.function = column(row, "function", key)?;
    r.version = column(row, "version", key)?;
    r.completed_at = time("completed_at")?;
    r.expires_at = time("expires_at")?;
    Ok(r)
}

/// The smallest string greater than every string that starts with `prefix`, if any:
/// the prefix with its last character incremented (trailing `char::MAX`es dropped).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars = prefix.chars();
    let last = chars.next_back()?;
    match (last..=char::MAX).nth(1) {
        Some(next) => Some(format!("{}{next}", chars.as_str())),
        None => prefix_end(chars.as_str()),
    }
}

#[async_trait]
impl ResultStore for PostgresStore {
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Record>> {
        check_key(key)?;
        let q = sql!(query, self.t(ns) =>
            "SELECT {COLUMNS} FROM {t} WHERE key = $1 AND {LIVE}"; key);
        let row = self.run("get", Some(key), async |c| q.fetch_optional(c).await);
        row.await?.as_ref().map(decode).transpose()
    }

    async fn claim(&self, ns: Namespace, key: &str, claim: &Claim<'_>) -> Result<ClaimOutcome> {
        self.on_conn(async |conn| self.claim_in(conn, ns, key, claim).await)
            .await
    }

    async fn renew(
        &self,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        lease: Duration,
    ) -> Result<Timestamp> {
        check_key(key)?;
        let q = sql!(query_scalar, self.t(ns) =>
            "UPDATE {t} SET lease_expires_at = now() + $3::int8 * interval '1 millisecond' \
             WHERE key = $1 AND lease_token = $2 AND state = 'in_progress' \
             RETURNING lease_expires_at";
            key, token.as_str(), millis(lease));
        let until = self.run("renew", Some(key), async |c| q.fetch_optional(c).await);
        let until: Option<Instant> = until.await?;
        until.map(|t| t.0).ok_or_else(|| Error::lease_lost(key))
    }

    async fn complete(
        &self,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()> {
        self.on_conn(async |conn| self.complete_in(conn, ns, key, token, value, ttl).await)
            .await
    }

    async fn release(&self, ns: Namespace, key: &str, token: &LeaseToken) -> Result<bool> {
        check_key(key)?;
        let q = sql!(query, self.t(ns) =>
            "DELETE FROM {t} WHERE key = $1 AND lease_token = $2 AND state = 'in_progress'";
            key, token.as_str());
        let done = self.run("release", Some(key), async |c| q.execute(c).await);
        Ok(done.await?.rows_affected() == 1)
    }

    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        meta: RecordMeta<'_>,
    ) -> Result<()> {
        check_key(key)?;
        check_value_len(&CAPABILITIES, key, value)?;
        // A replaced row (its `xmax` set by the update) is announced (see `broadcast.rs`).
        let q = sql!(query, self.t(ns) =>
            "WITH w AS (INSERT INTO {t} (key, state, value, attempt, fingerprint, function, \
                 version, created_at, completed_at, expires_at) \
             VALUES ($1, 'completed', $2, 1, $3, $4, $5, now(), now(), \
                 now() + $6::int8 * interval '1 millisecond') \
             ON CONFLICT (key) DO UPDATE SET state = 'completed', value = $2, \
                 lease_token = NULL, lease_expires_at = NULL, attempt = 1, fingerprint = $3, \
                 function = $4, version = $5, created_at = now(), completed_at = now(), \
                 expires_at = excluded.expires_at \
             RETURNING xmax::text <> '0' AS replaced) \
             SELECT pg_notify($7, $8 || $1) FROM w WHERE replaced";
            key, value, meta.fingerprint, meta.function, meta.version, ttl.map(millis),
            &self.inner.channel, broadcast::key_payload_start(ns));
        let done = self.run("put", Some(key), async |c| q.execute(c).await);
        done.await.map(drop)
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool> {
        check_key(key)?;
        let q = sql!(query, self.t(ns) =>
            "WITH d AS (DELETE FROM {t} WHERE key = $1 RETURNING key) \
             SELECT pg_notify($2, $3 || key) FROM d";
            key, &self.inner.channel, broadcast::key_payload_start(ns));
        let done = self.run("delete", Some(key), async |c| q.execute(c).await);
        Ok(done.await?.rows_affected() > 0)
    }

    async fn list(&self, ns: Namespace, query: &ListQuery) -> Result<Page> {
        let limit = query.limit.max(1);
        // No key holds a NUL, so a prefix with one matches nothing, and a cursor with one
        // sorts exactly where its part before the NUL does.
        if query.prefix.contains('\0') {
            return Ok(Page::new(Vec::new(), None));
        }
        let cursor = query.cursor.as_deref().and_then(|c| c.split('\0').next());
        let prefix = query.prefix.as_str();
        let (lower, after) = match cursor {
            Some(c) if c >= prefix => (c, true),
            _ => (prefix, false),
        };
        let upper = prefix_end(prefix);
        // The key range is `> $1` or `>= $1`, with or without `< $2`: one btree range scan.
        let q = sql!(query, self.t(ns) =>
            "SELECT {COLUMNS} FROM {t} \
             WHERE key {from} $1 {to} AND starts_with(key, $3) AND ($4 OR {LIVE}) \
             ORDER BY key LIMIT $5",
            from = if after { ">" } else { ">=" },
            to = if upper.is_some() { "AND key < $2" } else { "AND $2::text IS NULL" };
            lower, upper.as_deref(), prefix, query.include_expired,
            i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1));
        let rows = self.run("list", None, async |c| q.fetch_all(c).await);
        let records = rows.await?.iter().map(decode).collect::<Result<_>>()?;
        Ok(Page::from_fetched(records, limit))
    }

    async fn clear(&self, ns: Namespace) -> Result<u64> {
        let q = sql!(query, self.t(ns) =>
            "WITH d AS (DELETE FROM {t} RETURNING 1) \
             SELECT count(*), pg_notify($1, $2) FROM d";
            &self.inner.channel, ns.as_str());
        let row = self.run("clear", None, async |c| q.fetch_one(c).await);
        let deleted: i64 = row.await?.get(0);
        Ok(deleted.unsigned_abs())
    }

    async fn purge_expired(&self, ns: Namespace, limit: usize) -> Result<u64> {
        // Oldest first through the partial index, then to each row by its address: the cost
        // follows `limit`. The lock keeps every picked row as checked (still expired, same
        // address); rows another session holds are skipped rather than waited for.
        let q = sql!(query, self.t(ns) =>
            "DELETE FROM {t} WHERE ctid = ANY (ARRAY(SELECT ctid FROM {t} \
             WHERE expires_at <= now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED))";
            i64::try_from(limit).unwrap_or(i64::MAX));
        let done = self.run("purge_expired", None, async |c| q.execute(c).await);
        Ok(done.await?.rows_affected())
    }
}

/// Transactional calls ([`DurableBuilder::wrap_tx`](stent_core::DurableBuilder::wrap_tx)):
/// `BEGIN; SET LOCAL lock_timeout = …`, then the statements of `claim` and `complete`, on
/// the transaction's connection: one of the store's own for `call`, the caller's for `call_in`.
#[async_trait]
impl SqlStore for PostgresStore {
    type Db = Postgres;

    fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    async fn on_own_connection(&self, job: &mut dyn OnConnection<PgConnection>) -> Result<()> {
        self.on_conn(async |conn| job.run(conn).await).await
    }

    fn begin_statement(&self, lock_wait: Duration) -> String {
        let ms = lock_wait.as_millis().clamp(1, i32::MAX as u128);
        format!("BEGIN; SET LOCAL lock_timeout = {ms}")
    }

    async fn claim_in(
        &self,
        conn: &mut PgConnection,
        ns: Namespace,
        key: &str,
        claim: &Claim<'_>,
    ) -> Result<ClaimOutcome> {
        check_key(key)?;
        let fail = self.fail("claim", Some(key));
        for _ in 0..CLAIM_ROUNDS {
            // The first branch selects every column in the table's order, so the scan hands
            // its tuples on without a projection. The second is the claim's own row, told by
            // its NULL `state`: the new attempt (NULL when another claim got there first) and
            // the lease it wrote (`now()` is the transaction's start).
            let q = sql!(query, self.t(ns) =>
                "(SELECT {COLUMNS} FROM {t} WHERE key = $1 AND {LIVE} \
                     AND (state = 'completed' OR lease_expires_at > now())) \
                 UNION ALL (SELECT NULL, NULL, NULL, NULL, \
                     now() + $3::int8 * interval '1 millisecond', {f}($1, $2, $3, $4, $5, $6), \
                     NULL, NULL, NULL, NULL, NULL, NULL) \
                 LIMIT 1",
                f = self.t(ns).claim;
                key, claim.token.as_str(), millis(claim.lease), claim.meta.fingerprint,
                claim.meta.function, claim.meta.version);
            let row = q.fetch_one(&mut *conn).await.map_err(fail)?;
            if !row.try_get_raw("state").map_err(fail)?.is_null() {
                let record = decode(&row)?;
                return Ok(match record.state {
                    RecordState::Completed => ClaimOutcome::Completed(record),
                    RecordState::InProgress => ClaimOutcome::InFlight(record),
                });
            }
            if let Some(attempt) = row.try_get::<Option<i32>, _>("attempt").map_err(fail)? {
                let until: Instant = row.try_get("lease_expires_at").map_err(fail)?;
                return Ok(ClaimOutcome::Acquired {
                    attempt: u32::try_from(attempt).unwrap_or(1),
                    lease_expires_at: until.0,
                });
            }
        }
        Err(Error::new(ErrorKind::Busy, "claim kept racing with other writers").with_key(key))
    }

    async fn complete_in(
        &self,
        conn: &mut PgConnection,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()> {
        check_key(key)?;
        check_value_len(&CAPABILITIES, key, value)?;
        let q = sql!(query, self.t(ns) =>
            "UPDATE {t} SET state = 'completed', value = $3, lease_token = NULL, \
                 lease_expires_at = NULL, completed_at = now(), \
                 expires_at = now() + $4::int8 * interval '1 millisecond' \
             WHERE key = $1 AND lease_token = $2 AND state = 'in_progress'";
            key, token.as_str(), value, ttl.map(millis));
        let fail = self.fail("complete", Some(key));
        let done = q.execute(conn).await.map_err(fail)?;
        match done.rows_affected() {
            1 => Ok(()),
            _ => Err(Error::lease_lost(key)),
        }
    }

    fn error(&self, err: sqlx::Error, what: &str, key: Option<&str>) -> Error {
        self.fail(what, key)(err)
    }
}

/// `delete`, `clear` and a `put` that replaces a row call `pg_notify` in their own statement;
/// the stream `LISTEN`s on a session of its own, taken from the pool (see the crate docs).
impl Broadcast for PostgresStore {
    fn invalidations(&self) -> Invalidations {
        let (pool, channel) = (self.inner.pool.clone(), self.inner.channel.clone());
        Invalidations::reconnecting(Listener { pool, channel })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_string_past_the_prefix() {
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
    }

    #[test]
    fn keys_over_the_limit_or_with_nul_are_refused_before_sending() {
        assert_eq!(
            check_key(&"k".repeat(MAX_KEY_LEN + 1)).unwrap_err().kind(),
            ErrorKind::KeyTooLarge
        );
        assert!(check_key(&"k".repeat(MAX_KEY_LEN)).is_ok());
        assert_eq!(check_key("a\0b").unwrap_err().kind(), ErrorKind::Key);
    }
}
