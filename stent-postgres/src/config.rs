//! The builder, and validation of what it is given.

use std::fmt;
use std::time::Duration;

use sqlx::PgPool;
use stent_core::store::{redact, take_url_params};
use stent_core::{Error, Result};

use crate::store::PostgresStore;

/// Longest table prefix accepted: the longest name stent derives from it
/// (`{prefix}idempotency_expires_at`) must fit PostgreSQL's 63-byte identifiers.
pub const MAX_PREFIX_LEN: usize = 40;

/// Longest schema name accepted (PostgreSQL's identifier limit).
pub const MAX_SCHEMA_LEN: usize = 63;

/// Where the connections come from.
#[derive(Clone)]
pub(crate) enum Source {
    /// Nothing given yet: `build` reads [`ENV_URL`](crate::ENV_URL).
    Env,
    Url(String),
    Pool(PgPool),
}

/// Shows a URL without its password.
impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Env => write!(f, "${}", crate::ENV_URL),
            Source::Url(url) => f.write_str(&redact(url)),
            Source::Pool(pool) => write!(f, "caller's pool ({} connections)", pool.size()),
        }
    }
}

/// Builds a [`PostgresStore`].
///
/// ```no_run
/// # async fn f() -> stent_core::Result<()> {
/// use std::time::Duration;
/// use stent_postgres::PostgresStore;
///
/// let store = PostgresStore::builder()
///     .url("postgres://app:secret@db.internal:5432/app")
///     .schema("stent")?              // tables stent.billing_idempotency, stent.billing_cache, …
///     .table_prefix("billing_")?
///     .max_connections(16)
///     .acquire_timeout(Duration::from_secs(2))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresStoreBuilder {
    pub(crate) source: Source,
    pub(crate) table_prefix: String,
    pub(crate) schema: Option<String>,
    pub(crate) max_connections: u32,
    pub(crate) acquire_timeout: Duration,
    pub(crate) create_tables: bool,
}

impl Default for PostgresStoreBuilder {
    fn default() -> Self {
        PostgresStoreBuilder {
            source: Source::Env,
            table_prefix: String::new(),
            schema: None,
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            create_tables: true,
        }
    }
}

/// Checks an identifier stent puts in SQL, at most `max` bytes: a lower-case ASCII letter,
/// then lower-case letters, digits and `_` (so it needs no quoting in `psql` either).
fn check_identifier(what: &str, s: &str, max: usize) -> Result<()> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    if s.len() <= max && s.starts_with(|c: char| c.is_ascii_lowercase()) && s.chars().all(allowed) {
        return Ok(());
    }
    Err(Error::config(format!(
        "invalid {what} {s:?}: use a lower-case ASCII letter followed by lower-case letters, \
         digits or '_', at most {max} characters"
    )))
}

impl PostgresStoreBuilder {
    /// The server to connect to, in any [form of the crate docs](crate#urls); default: the
    /// URL in [`STENT_POSTGRES_URL`](crate::ENV_URL). Its `table_prefix=` and `schema=` set
    /// what [`table_prefix`](Self::table_prefix) and [`schema`](Self::schema) set (the call
    /// made last wins; in `STENT_POSTGRES_URL`, where the builder sets nothing of its own).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        let (url, taken) = take_url_params(&url.into(), &["table_prefix", "schema"]);
        for (name, value) in taken {
            match name {
                "table_prefix" => self.table_prefix = value,
                _ => self.schema = Some(value),
            }
        }
        self.source = Source::Url(url);
        self
    }

    /// Prepended to each table's name (`app_` gives `app_idempotency`, `app_cache`, …): a
    /// lower-case ASCII letter, then lower-case letters, digits and `_`, at most
    /// [`MAX_PREFIX_LEN`] bytes.
    pub fn table_prefix(mut self, prefix: impl Into<String>) -> Result<Self> {
        let prefix = prefix.into();
        if !prefix.is_empty() {
            check_identifier("table prefix", &prefix, MAX_PREFIX_LEN)?;
        }
        self.table_prefix = prefix;
        Ok(self)
    }

    /// The schema the tables live in, created if missing. Default: none, so table names
    /// are resolved through the connection's `search_path` (usually `public`).
    pub fn schema(mut self, schema: impl Into<String>) -> Result<Self> {
        let schema = schema.into();
        check_identifier("schema", &schema, MAX_SCHEMA_LEN)?;
        if schema.starts_with("pg_") {
            return Err(Error::config(format!(
                "invalid schema {schema:?}: names starting with \"pg_\" are reserved by PostgreSQL"
            )));
        }
        self.schema = Some(schema);
        Ok(self)
    }

    stent_core::builder_setters! {
        /// Uses a pool the caller owns instead of opening one, for transactional calls and
        /// [`migrate`](crate::PostgresStore::migrate); the store's one-statement operations run
        /// on connections of its own, opened with the pool's connect options (not its
        /// `after_connect` hook), as many as the pool's maximum.
        pool(pool: PgPool) => source = Source::Pool(pool);

        /// Size of the connection pool stent opens (default 10), and of the set of connections
        /// its one-statement operations run on (see the crate docs' Statements): up to twice
        /// this many connections in all.
        max_connections(n: u32) => max_connections = n.max(1);

        /// How long an operation waits for a connection, including connecting to a server
        /// that refuses, before failing with a retryable
        /// [`ErrorKind::Unavailable`](stent_core::ErrorKind::Unavailable) (default 5 s).
        acquire_timeout(timeout: Duration) => acquire_timeout = timeout;

        /// Whether [`build`](Self::build) creates missing tables and checks existing ones
        /// (default `true`). Turn it off when the application's role may not run DDL: run
        /// [`PostgresStore::migrate`] from a role that may.
        create_tables(yes: bool) => create_tables = yes;
    }

    /// Connects, creates the schema and tables if they are missing, and checks that
    /// existing tables are stent's (unless [`create_tables(false)`](Self::create_tables)),
    /// with the errors of the crate docs' [Errors](crate#errors), a foreign table of the same
    /// name, or a database encoding that cannot hold UTF-8 keys.
    pub async fn build(mut self) -> Result<PostgresStore> {
        if let (Source::Env, Ok(url)) = (&self.source, std::env::var(crate::ENV_URL)) {
            // The builder's own settings win over the environment's.
            let env = Self::default().url(url);
            if self.table_prefix.is_empty() {
                self.table_prefix = env.table_prefix;
            }
            self.schema = self.schema.or(env.schema);
            self.source = env.source;
        }
        // Checked here for the URL's options, as the builder's calls check theirs.
        Self::default().table_prefix(&self.table_prefix)?;
        if let Some(schema) = &self.schema {
            Self::default().schema(schema)?;
        }
        PostgresStore::open_with(self).await
    }
}

/// The connection parameters the driver understands in a URL's query (sqlx's names and
/// their aliases); stent's own `schema` and `table_prefix` are taken out before.
const DRIVER_PARAMS: &str = "sslmode, ssl-mode, sslrootcert, ssl-root-cert, ssl-ca, sslcert, \
     ssl-cert, sslkey, ssl-key, statement-cache-capacity, host, hostaddr, port, dbname, user, \
     password, application_name, options";

/// Checks that `url` is a PostgreSQL URL, and what the driver would let pass silently: a
/// query parameter it does not know (ignored), and no user (it would use the system's user
/// name or a placeholder). As for `psql`, the user comes from the URL or from `pguser`, the
/// `PGUSER` variable. `shown` is the URL without its password.
pub(crate) fn check_url(url: &str, shown: &str, pguser: Option<&str>) -> Result<()> {
    let scheme = |s: &str| url.strip_prefix(s);
    let Some(rest) = scheme("postgres://").or_else(|| scheme("postgresql://")) else {
        return Err(Error::config(format!(
            "not a PostgreSQL URL: {shown:?} (expected postgres://user:password@host:port/database)"
        )));
    };
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = location.split_once('/').map_or(location, |(a, _)| a);
    let userinfo = authority.rsplit_once('@').map(|(userinfo, _)| userinfo);
    let mut user = userinfo.is_some_and(|u| !u.is_empty() && !u.starts_with(':'));
    let mut unknown = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        user |= name == "user" && !value.is_empty();
        let known = DRIVER_PARAMS.split(", ").any(|p| p == name)
            || (name.starts_with("options[") && name.ends_with(']'));
        unknown.extend((!known).then(|| format!("{name:?}")));
    }
    if !unknown.is_empty() {
        return Err(Error::config(format!(
            "unknown option{} {} in PostgreSQL URL {shown:?} \
             (known: schema, table_prefix, {DRIVER_PARAMS})",
            if unknown.len() == 1 { "" } else { "s" },
            unknown.join(", "),
        )));
    }
    if !user && pguser.is_none_or(str::is_empty) {
        return Err(Error::config(format!(
            "PostgreSQL URL {shown:?} names no user: write one in the URL \
             (postgres://USER@host/database, or ?user=USER) or set PGUSER"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_user_and_only_known_options() {
        let ok = |url: &str, pguser| check_url(url, url, pguser).unwrap();
        ok("postgres://app@h/db", None);
        ok(
            "postgres://app:secret@h:5432/db?sslmode=require&options=-c%20x",
            None,
        );
        ok("postgres:///db?host=/var/run/postgresql&user=app", None);
        ok("postgresql://h/db?options[search_path]=app", Some("app"));
        ok("postgres://h/db", Some("from-env"));
        for url in [
            "postgres://h/db",
            "postgres://:pw@h/db",
            "postgres://h/db?user=",
        ] {
            let e = check_url(url, url, None).unwrap_err();
            assert_eq!(e.kind(), stent_core::ErrorKind::Config);
            assert!(e.to_string().contains("PGUSER"), "{e}");
        }
        assert!(check_url("postgres://h/db", "postgres://h/db", Some("")).is_err());
        let e = check_url(
            "postgres://u@h/db?sslmode=require&shema=x&x",
            "postgres://u@h/db",
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains(r#"options "shema", "x" in"#), "{e}");
        assert!(e.to_string().contains("table_prefix"), "{e}");
    }

    #[test]
    fn stent_s_options_are_taken_out_of_the_url() {
        let taken = |url: &str| {
            let b = PostgresStoreBuilder::default().url(url);
            let Source::Url(url) = b.source else {
                panic!("a URL source")
            };
            (url, b.table_prefix, b.schema)
        };
        let plain = "postgres://u@h:5432/db";
        assert_eq!(taken(plain), (plain.to_owned(), String::new(), None));
        assert_eq!(
            taken(
                "postgres://u@h/db?sslmode=require&schema=stent&table_prefix=app_&options=-c%20x#f"
            ),
            (
                "postgres://u@h/db?sslmode=require&options=-c%20x#f".to_owned(),
                "app_".to_owned(),
                Some("stent".to_owned())
            )
        );
        assert_eq!(taken("postgres://h/db?schema=s").0, "postgres://h/db");
    }

    #[test]
    fn url_options_and_builder_calls_follow_the_order_of_the_calls() {
        let b = PostgresStoreBuilder::default()
            .table_prefix("early_")
            .unwrap()
            .url("postgres://h/db?table_prefix=url_&schema=s");
        assert_eq!(
            (b.table_prefix.as_str(), b.schema.as_deref()),
            ("url_", Some("s"))
        );
        let b = PostgresStoreBuilder::default()
            .url("postgres://h/db?table_prefix=url_")
            .table_prefix("late_")
            .unwrap();
        assert_eq!(b.table_prefix, "late_");
        assert!(matches!(b.source, Source::Url(ref u) if u == "postgres://h/db"));
    }
}
