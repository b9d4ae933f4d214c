//! [`ResultStore`] for PostgreSQL.

use std::fmt;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{
    PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow, PgTypeInfo, PgValueFormat,
    PgValueRef, Postgres,
};
use sqlx::{AssertSqlSafe, Connection as _, Row as _, ValueRef as _};
use stent_core::store::{check_key_len, check_value_len};
use stent_core::{
    Capabilities, Claim, ClaimOutcome, Error, ErrorKind, LeaseToken, ListQuery, Namespace, Page,
    Record, RecordMeta, RecordState, Result, ResultStore, Timestamp,
};

use crate::config::{PostgresStoreBuilder, Source};
use crate::error::{Target, connect_error, convert, migrate_error, redact};
use crate::sql::{MIGRATION_LOCK, Statements, col};

/// Longest key accepted, in bytes: a btree entry must fit in a third of an 8 KiB page
/// (about 2.7 KB), and a key needs headroom below that.
pub const MAX_KEY_LEN: usize = 2048;

/// Largest value accepted, in bytes: PostgreSQL's limit on one field is 1 GiB.
pub const MAX_VALUE_LEN: usize = 1_000_000_000;

/// Durations past this are stored as this (a thousand years): `timestamptz` has an end.
const MAX_DURATION_MS: i64 = 1000 * 366 * 24 * 3600 * 1000;

/// A pooled connection idle this long is pinged before it is used again.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// How often a claim runs its statement before calling the key contended. A second run
/// happens only in one race: another claim committed the key after the statement's snapshot
/// was taken, so its read found nothing and its write found the key taken.
const CLAIM_ROUNDS: usize = 8;

/// A [`ResultStore`] in a PostgreSQL database: shared by any number of processes and
/// machines, with every lease and expiry decided by the server's clock.
///
/// Three tables, `idempotency`, `cache` and `progress` (optionally prefixed, optionally in a schema);
/// every state transition is one SQL statement that the server executes atomically.
///
/// Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    target: Target,
    schema: Option<String>,
    /// Each namespace's statements, by [`Namespace`] order.
    stmts: [Statements; Namespace::ALL.len()],
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("server", &self.inner.target)
            .field(
                "tables",
                &self.inner.stmts.each_ref().map(|st| st.display.as_str()),
            )
            .finish()
    }
}

impl PostgresStore {
    /// Connects to the server a URL names, creating the tables if they are missing.
    ///
    /// ```no_run
    /// # async fn f() -> stent_core::Result<()> {
    /// let store = stent_postgres::PostgresStore::connect("postgres://app:secret@localhost/app").await?;
    /// # Ok(()) }
    /// ```
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

    /// The connection pool, for running your own queries against the tables.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The table a namespace is stored in, as `schema.table` or `table`.
    pub fn table(&self, ns: Namespace) -> &str {
        &self.stmts(ns).display
    }

    /// Creates the schema, tables and indexes that are missing, and checks that existing
    /// tables are stent's. Safe to run from many processes at once, and again at any time;
    /// [`build`](PostgresStoreBuilder::build) runs it unless told
    /// [not to](PostgresStoreBuilder::create_tables).
    pub async fn migrate(&self) -> Result<()> {
        let target = &self.inner.target;
        let mut conn = self
            .inner
            .pool
            .acquire()
            .await
            .map_err(|e| connect_error(e, target))?;
        self.create_tables(&mut conn).await?;
        self.check_tables(&mut conn).await
    }

    pub(crate) async fn open_with(b: PostgresStoreBuilder) -> Result<Self> {
        let (pool, target, first) = match &b.source {
            Source::Env => {
                let url = std::env::var(crate::ENV_URL).map_err(|_| {
                    Error::config(format!(
                        "{} is not set: give a URL such as postgres://user:password@localhost:5432/db",
                        crate::ENV_URL
                    ))
                })?;
                connect_url(&url, &b).await?
            }
            Source::Url(url) => connect_url(url, &b).await?,
            Source::Pool(pool) => {
                let target = target_of(&pool.connect_options(), None);
                let conn = pool
                    .acquire()
                    .await
                    .map_err(|e| connect_error(e, &target))?;
                (pool.clone(), target, FirstConnection::Pooled(conn))
            }
        };
        let store = PostgresStore {
            inner: Arc::new(Inner {
                pool,
                target,
                stmts: Namespace::ALL
                    .map(|ns| Statements::new(b.schema.as_deref(), &b.table_prefix, ns)),
                schema: b.schema,
            }),
        };
        let mut first = first;
        if b.create_tables {
            let conn = first.as_mut();
            store.create_tables(conn).await?;
            store.check_tables(conn).await?;
        }
        first.finish().await;
        Ok(store)
    }

    /// Creates whatever is missing, under an advisory lock so that concurrent callers
    /// never race on the catalog.
    async fn create_tables(&self, conn: &mut PgConnection) -> Result<()> {
        let target = &self.inner.target;
        let fail = |what: &str| {
            let what = what.to_owned();
            move |e| migrate_error(e, target, what)
        };
        let encoding: String = sqlx::query_scalar("SELECT current_setting('server_encoding')")
            .fetch_one(&mut *conn)
            .await
            .map_err(fail("reading the database encoding"))?;
        if encoding != "UTF8" && encoding != "SQL_ASCII" {
            return Err(Error::config(format!(
                "the database on {} is encoded in {encoding}, which cannot hold every UTF-8 key; \
                 use a UTF8 database",
                target.name
            )));
        }
        if self.tables_exist(conn).await? {
            return Ok(());
        }
        let mut tx = conn.begin().await.map_err(fail("starting the migration"))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(fail("taking the migration lock"))?;
        if let Some(schema) = &self.inner.schema {
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                    .bind(schema)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(fail("looking up the schema"))?;
            if !exists {
                let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
                sqlx::query(AssertSqlSafe(create))
                    .execute(&mut *tx)
                    .await
                    .map_err(fail(&format!("creating schema {schema:?}")))?;
            }
        }
        for ns in Namespace::ALL {
            let st = self.stmts(ns);
            for sql in &st.create {
                sqlx::query(AssertSqlSafe(sql.as_str()))
                    .execute(&mut *tx)
                    .await
                    .map_err(fail(&format!(
                        "creating {} (table, index, claim function)",
                        st.display
                    )))?;
            }
        }
        tx.commit()
            .await
            .map_err(fail("committing the migration"))?;
        Ok(())
    }

    /// Whether every table and index exists already (then no DDL, and no privilege to
    /// run it, is needed).
    async fn tables_exist(&self, conn: &mut PgConnection) -> Result<bool> {
        let relations: Vec<&str> = Namespace::ALL
            .iter()
            .flat_map(|&ns| self.stmts(ns).relations.iter().map(String::as_str))
            .collect();
        let functions: Vec<&str> = Namespace::ALL
            .iter()
            .map(|&ns| self.stmts(ns).function.as_str())
            .collect();
        sqlx::query_scalar(
            "SELECT (SELECT bool_and(to_regclass(n) IS NOT NULL) FROM unnest($1::text[]) AS n)
                AND (SELECT bool_and(to_regprocedure(f) IS NOT NULL) FROM unnest($2::text[]) AS f)",
        )
        .bind(relations)
        .bind(functions)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| migrate_error(e, &self.inner.target, "looking up the tables".into()))
    }

    /// Checks that every table exists and have stent's columns.
    async fn check_tables(&self, conn: &mut PgConnection) -> Result<()> {
        let target = &self.inner.target;
        for ns in Namespace::ALL {
            let st = self.stmts(ns);
            if let Err(e) = sqlx::query(AssertSqlSafe(st.probe.clone()))
                .execute(&mut *conn)
                .await
            {
                let code = match &e {
                    sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
                    _ => None,
                };
                let what = match code.as_deref() {
                    Some("42P01" | "3F000") => format!(
                        "table {} does not exist (run PostgresStore::migrate with a role that may create it)",
                        st.display
                    ),
                    Some("42703") => format!(
                        "table {} is not a stent table (its columns differ); choose a schema or table prefix",
                        st.display
                    ),
                    _ => format!("checking table {}", st.display),
                };
                return Err(migrate_error(e, target, what));
            }
        }
        Ok(())
    }

    fn stmts(&self, ns: Namespace) -> &Statements {
        &self.inner.stmts[ns as usize]
    }

    fn fail<'a>(
        &'a self,
        what: &'a str,
        key: Option<&'a str>,
    ) -> impl FnOnce(sqlx::Error) -> Error + 'a {
        move |e| convert(e, &self.inner.target, what, key)
    }
}

/// The first connection of a store: made directly, so that a refused port or a wrong
/// password fails at once with its cause (a pool would retry until its timeout), and
/// closed once the tables are checked. For a caller's pool, one of its connections.
enum FirstConnection {
    Own(PgConnection),
    Pooled(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

impl FirstConnection {
    fn as_mut(&mut self) -> &mut PgConnection {
        match self {
            FirstConnection::Own(c) => c,
            FirstConnection::Pooled(c) => c,
        }
    }

    async fn finish(self) {
        if let FirstConnection::Own(c) = self {
            let _ = c.close().await;
        }
    }
}

fn target_of(opts: &PgConnectOptions, url: Option<&str>) -> Target {
    let place = match opts.get_socket() {
        Some(dir) => format!("{}:{}", dir.display(), opts.get_port()),
        None => format!("{}:{}", opts.get_host(), opts.get_port()),
    };
    let database = opts.get_database().map(str::to_owned);
    let name = format!(
        "{}@{place}/{}",
        opts.get_username(),
        database.as_deref().unwrap_or_default()
    );
    Target::new(name, database, url)
}

async fn connect_url(
    url: &str,
    b: &PostgresStoreBuilder,
) -> Result<(PgPool, Target, FirstConnection)> {
    let shown = redact(url);
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(Error::config(format!(
            "not a PostgreSQL URL: {shown:?} (expected postgres://user:password@host:port/database)"
        )));
    }
    crate::config::check_url(url, &shown, std::env::var("PGUSER").ok().as_deref())?;
    let unparsed = Target::new(shown.clone(), None, Some(url));
    let opts = PgConnectOptions::from_str(url).map_err(|e| connect_error(e, &unparsed))?;
    let target = target_of(&opts, Some(url));
    let conn =
        match tokio::time::timeout(b.acquire_timeout, PgConnection::connect_with(&opts)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(connect_error(e, &target)),
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "PostgreSQL at {} did not answer within {:?}",
                        target.name, b.acquire_timeout
                    ),
                ));
            }
        };
    let pool = PgPoolOptions::new()
        .max_connections(b.max_connections)
        .acquire_timeout(b.acquire_timeout)
        // A ping before every use would double the round trips of a cache hit: only a
        // connection that sat idle is pinged, so one left dead by a server restart is
        // replaced instead of failing the next call.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(opts);
    Ok((pool, target, FirstConnection::Own(conn)))
}

/// Milliseconds of a duration, capped where `timestamptz` arithmetic stays in range.
fn millis(d: Duration) -> i64 {
    stent_core::record::duration_millis(d).min(MAX_DURATION_MS)
}

/// Refuses keys PostgreSQL cannot index or hold, before anything is sent.
fn check_key(key: &str) -> Result<()> {
    check_key_len(&CAPABILITIES, key)?;
    if key.contains('\0') {
        return Err(Error::new(
            ErrorKind::Key,
            "key contains a NUL character, which PostgreSQL text cannot hold",
        )
        .with_key(key.replace('\0', "\\0")));
    }
    Ok(())
}

const CAPABILITIES: Capabilities = Capabilities::new()
    .server_clock(true)
    .shared(true)
    .durable(true)
    .max_key_len(Some(MAX_KEY_LEN))
    .max_value_len(Some(MAX_VALUE_LEN));

/// A `timestamptz` as PostgreSQL sends it in binary: microseconds since 2000-01-01 UTC.
struct Instant(Timestamp);

/// 2000-01-01T00:00:00Z in Unix milliseconds.
const PG_EPOCH_MS: i64 = 946_684_800_000;

impl sqlx::Type<Postgres> for Instant {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(TIMESTAMPTZ)
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        ty.oid() == Some(TIMESTAMPTZ)
    }
}

const TIMESTAMPTZ: Oid = Oid(1184);

impl sqlx::Decode<'_, Postgres> for Instant {
    fn decode(value: PgValueRef<'_>) -> std::result::Result<Self, BoxDynError> {
        match value.format() {
            PgValueFormat::Binary => {
                let micros = i64::from_be_bytes(value.as_bytes()?.try_into()?);
                let ms = micros.div_euclid(1000).saturating_add(PG_EPOCH_MS);
                Ok(Instant(Timestamp::from_millis(ms)))
            }
            PgValueFormat::Text => Err("timestamptz in text format (expected binary)".into()),
        }
    }
}

/// Column `at` of a record's row, or a decode error naming the key and the column.
fn column<'r, T>(row: &'r PgRow, at: usize, key: &str) -> Result<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(at).map_err(|e| {
        Error::decode(
            key,
            format!(
                "stored record's column `{}` has the wrong type: {e}",
                col::name(at)
            ),
        )
    })
}

/// The outcome of a claim that found `record` standing.
fn standing(record: Record) -> Result<ClaimOutcome> {
    Ok(match record.state {
        RecordState::Completed => ClaimOutcome::Completed(record),
        RecordState::InProgress => ClaimOutcome::InFlight(record),
    })
}

fn decode_row(row: &PgRow, key: &str) -> Result<Record> {
    let state: &str = column(row, col::STATE, key)?;
    let state = RecordState::parse(state)
        .ok_or_else(|| Error::decode(key, format!("stored record has unknown state {state:?}")))?;
    let ts = |at: usize| -> Result<Option<Timestamp>> {
        Ok(column::<Option<Instant>>(row, at, key)?.map(|t| t.0))
    };
    let mut record = Record::new(
        column::<String>(row, col::KEY, key)?,
        state,
        ts(col::CREATED_AT)?.unwrap_or_default(),
    );
    record.value = column(row, col::VALUE, key)?;
    record.lease_token =
        column::<Option<String>>(row, col::LEASE_TOKEN, key)?.map(LeaseToken::from_string);
    record.lease_expires_at = ts(col::LEASE_EXPIRES_AT)?;
    record.attempt = u32::try_from(column::<i32>(row, col::ATTEMPT, key)?).unwrap_or(1);
    record.fingerprint = column(row, col::FINGERPRINT, key)?;
    record.function = column(row, col::FUNCTION, key)?;
    record.version = column(row, col::VERSION, key)?;
    record.completed_at = ts(col::COMPLETED_AT)?;
    record.expires_at = ts(col::EXPIRES_AT)?;
    Ok(record)
}

/// The smallest string greater than every string that starts with `prefix`, if any:
/// the prefix with its last character incremented (trailing `char::MAX`es dropped).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 + 1 {
            0xD800 => Some('\u{E000}'),
            n => char::from_u32(n),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[async_trait]
impl ResultStore for PostgresStore {
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Record>> {
        check_key(key)?;
        let row = sqlx::query(AssertSqlSafe(self.stmts(ns).get.clone()))
            .bind(key)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(self.fail("get", Some(key)))?;
        row.map(|r| decode_row(&r, key)).transpose()
    }

    async fn claim(&self, ns: Namespace, key: &str, claim: &Claim<'_>) -> Result<ClaimOutcome> {
        check_key(key)?;
        let fail = |e| convert(e, &self.inner.target, "claim", Some(key));
        for _ in 0..CLAIM_ROUNDS {
            let row = sqlx::query(AssertSqlSafe(self.stmts(ns).claim.clone()))
                .bind(key)
                .bind(claim.token.as_str())
                .bind(millis(claim.lease))
                .bind(claim.meta.fingerprint)
                .bind(claim.meta.function)
                .bind(claim.meta.version)
                .fetch_one(&self.inner.pool)
                .await
                .map_err(fail)?;
            // A record that stands has a state; the claim's own row has none (see the
            // claim statement), and holds the attempt it took and its lease.
            if !row.try_get_raw(col::STATE).map_err(fail)?.is_null() {
                return standing(decode_row(&row, key)?);
            }
            if let Some(attempt) = row.try_get::<Option<i32>, _>(col::ATTEMPT).map_err(fail)? {
                let until: Instant = row.try_get(col::LEASE_EXPIRES_AT).map_err(fail)?;
                return Ok(ClaimOutcome::Acquired {
                    attempt: u32::try_from(attempt).unwrap_or(1),
                    lease_expires_at: until.0,
                });
            }
            // Another claim took the key after this statement's snapshot: read it again.
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
        check_key(key)?;
        let until: Option<Instant> =
            sqlx::query_scalar(AssertSqlSafe(self.stmts(ns).renew.clone()))
                .bind(key)
                .bind(token.as_str())
                .bind(millis(lease))
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(self.fail("renew", Some(key)))?;
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
        check_key(key)?;
        check_value_len(&CAPABILITIES, key, value)?;
        let done = sqlx::query(AssertSqlSafe(self.stmts(ns).complete.clone()))
            .bind(key)
            .bind(token.as_str())
            .bind(value)
            .bind(ttl.map(millis))
            .execute(&self.inner.pool)
            .await
            .map_err(self.fail("complete", Some(key)))?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(Error::lease_lost(key))
        }
    }

    async fn release(&self, ns: Namespace, key: &str, token: &LeaseToken) -> Result<bool> {
        check_key(key)?;
        let done = sqlx::query(AssertSqlSafe(self.stmts(ns).release.clone()))
            .bind(key)
            .bind(token.as_str())
            .execute(&self.inner.pool)
            .await
            .map_err(self.fail("release", Some(key)))?;
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
        check_key(key)?;
        check_value_len(&CAPABILITIES, key, value)?;
        sqlx::query(AssertSqlSafe(self.stmts(ns).put.clone()))
            .bind(key)
            .bind(value)
            .bind(meta.fingerprint)
            .bind(meta.function)
            .bind(meta.version)
            .bind(ttl.map(millis))
            .execute(&self.inner.pool)
            .await
            .map_err(self.fail("put", Some(key)))?;
        Ok(())
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool> {
        check_key(key)?;
        let done = sqlx::query(AssertSqlSafe(self.stmts(ns).delete.clone()))
            .bind(key)
            .execute(&self.inner.pool)
            .await
            .map_err(self.fail("delete", Some(key)))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list(&self, ns: Namespace, query: &ListQuery) -> Result<Page> {
        let limit = query.limit.max(1);
        // No key holds a NUL, so a prefix with one matches nothing, and a cursor with one
        // sorts exactly where its part before the NUL does.
        if query.prefix.contains('\0') {
            return Ok(Page::new(Vec::new(), None));
        }
        let cursor = query
            .cursor
            .as_deref()
            .map(|c| c.split('\0').next().unwrap_or_default());
        let prefix = query.prefix.as_str();
        let (lower, after) = match cursor {
            Some(c) if c >= prefix => (c, true),
            _ => (prefix, false),
        };
        let upper = prefix_end(prefix);
        let sql = self.stmts(ns).list[usize::from(after)][usize::from(upper.is_some())].clone();
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(lower)
            .bind(upper.as_deref())
            .bind(prefix)
            .bind(query.include_expired)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(self.fail("list", None))?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            let key: &str = row.try_get(col::KEY).map_err(self.fail("list", None))?;
            records.push(decode_row(row, key)?);
        }
        Ok(Page::from_fetched(records, limit))
    }

    async fn clear(&self, ns: Namespace) -> Result<u64> {
        let done = sqlx::query(AssertSqlSafe(self.stmts(ns).clear.clone()))
            .execute(&self.inner.pool)
            .await
            .map_err(self.fail("clear", None))?;
        Ok(done.rows_affected())
    }

    async fn purge_expired(&self, ns: Namespace, limit: usize) -> Result<u64> {
        let done = sqlx::query(AssertSqlSafe(self.stmts(ns).purge.clone()))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .execute(&self.inner.pool)
            .await
            .map_err(self.fail("purge_expired", None))?;
        Ok(done.rows_affected())
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
