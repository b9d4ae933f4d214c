//! The one place sqlx errors become stent errors, and where passwords are kept out of them.

use std::fmt;

use sqlx::error::DatabaseError;
use stent_core::{Error, ErrorKind};

/// What the store knows about its server, for messages: where it is (never the password)
/// and the password's spellings, to scrub from any text a driver produces.
#[derive(Clone, Default)]
pub(crate) struct Target {
    /// `user@host:port/database`.
    pub(crate) name: String,
    /// The database name, when the options name one.
    pub(crate) database: Option<String>,
    secrets: Vec<String>,
}

impl Target {
    pub(crate) fn new(name: String, database: Option<String>, url: Option<&str>) -> Self {
        Target {
            name,
            database,
            secrets: url.map(secrets_of).unwrap_or_default(),
        }
    }

    /// `text` with every spelling of the password replaced by `***`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.secrets
            .iter()
            .fold(text.to_owned(), |t, s| t.replace(s.as_str(), "***"))
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// The driver's error, reduced to scrubbed text: it becomes the stent error's `source`.
#[derive(Debug)]
struct DriverError(String);

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DriverError {}

/// The error's text with its whole chain of causes, and the SQLSTATE when there is one.
fn describe(err: &sqlx::Error, target: &Target) -> DriverError {
    let mut text = match err {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} [SQLSTATE {code}]", db.message()),
            None => db.message().to_owned(),
        },
        other => other.to_string(),
    };
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    DriverError(target.scrub(&text))
}

fn sqlstate(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// The kind of an error, and whether retrying the same operation may succeed.
fn classify(err: &sqlx::Error) -> (ErrorKind, bool) {
    use ErrorKind::{Busy, Config, Decode, Store, Unavailable};
    match err {
        sqlx::Error::Database(db) => classify_sqlstate(db.as_ref()),
        sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => (Unavailable, true),
        sqlx::Error::Configuration(_) | sqlx::Error::Tls(_) => (Config, false),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => (Decode, false),
        sqlx::Error::BeginFailed => (Busy, true),
        _ => (Store, false),
    }
}

fn classify_sqlstate(db: &dyn DatabaseError) -> (ErrorKind, bool) {
    use ErrorKind::{Busy, Config, Store, Unavailable};
    let code = db.code().unwrap_or_default();
    match &*code {
        // connection_exception, and the server shutting down or starting up
        c if c.starts_with("08") => (Unavailable, true),
        "57P01" | "57P02" | "57P03" => (Unavailable, true),
        // a standby that was primary a moment ago (after a failover)
        "25006" => (Unavailable, true),
        // serialization_failure, deadlock_detected, lock_not_available, query_canceled
        "40001" | "40P01" | "55P03" | "57014" => (Busy, true),
        // insufficient_resources: too many connections, out of memory or disk
        c if c.starts_with("53") => (Busy, true),
        // invalid password, invalid authorization (pg_hba), missing database or role
        "28P01" | "28000" | "3D000" => (Config, false),
        _ => (Store, false),
    }
}

/// Converts an error from operation `what` on `key` (if any).
pub(crate) fn convert(err: sqlx::Error, target: &Target, what: &str, key: Option<&str>) -> Error {
    let (kind, retryable) = classify(&err);
    let message = match sqlstate(&err).as_deref() {
        // undefined_table, undefined_function
        Some("42P01" | "42883") => format!(
            "PostgreSQL {what} failed: a stent table is missing on {} (run PostgresStore::migrate)",
            target.name
        ),
        _ => format!("PostgreSQL {what} failed"),
    };
    let mut e = Error::new(kind, message)
        .set_retryable(retryable)
        .with_source(describe(&err, target));
    if let Some(key) = key {
        e = e.with_key(key);
    }
    e
}

/// Converts an error met while connecting, naming what is wrong with the configuration.
pub(crate) fn connect_error(err: sqlx::Error, target: &Target) -> Error {
    let name = &target.name;
    let message = match sqlstate(&err).as_deref() {
        Some("28P01") => {
            format!("PostgreSQL refused the password of {name} (check the URL's user and password)")
        }
        Some("28000") => {
            format!("PostgreSQL does not let {name} connect (check the user, and pg_hba.conf)")
        }
        Some("3D000") => match &target.database {
            Some(db) => format!("PostgreSQL database {db:?} does not exist on {name}"),
            None => format!("the PostgreSQL database for {name} does not exist"),
        },
        _ => match &err {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => {
                format!("cannot reach PostgreSQL at {name}")
            }
            sqlx::Error::Tls(_) => {
                format!("TLS with PostgreSQL at {name} failed (check sslmode and certificates)")
            }
            sqlx::Error::Configuration(_) => {
                format!("invalid PostgreSQL connection options for {name}")
            }
            _ => return convert(err, target, "connecting", None),
        },
    };
    let (kind, retryable) = classify(&err);
    Error::new(kind, message)
        .set_retryable(retryable)
        .with_source(describe(&err, target))
}

/// Converts an error met while creating or checking the tables.
pub(crate) fn migrate_error(err: sqlx::Error, target: &Target, what: String) -> Error {
    match classify(&err) {
        (_, true) => convert(err, target, "migration", None),
        _ => {
            Error::config(format!("{what} on {}", target.name)).with_source(describe(&err, target))
        }
    }
}

/// A URL with its password replaced by `***`, in the user-info part and in any
/// `password=` option, for messages and `Debug`.
pub(crate) fn redact(url: &str) -> String {
    let (head, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{head}{authority}{tail}")
}

/// Every spelling of the password a URL carries: as written and percent-decoded, from the
/// user-info part and from `password=` options.
fn secrets_of(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let mut raw = Vec::new();
    if let Some((userinfo, _)) = rest[..authority_end].rsplit_once('@')
        && let Some((_, password)) = userinfo.split_once(':')
    {
        raw.push(password.to_owned());
    }
    if let Some((_, query)) = rest.split_once('?') {
        let query = query.split('#').next().unwrap_or_default();
        for pair in query.split('&') {
            if let Some((k, v)) = pair.split_once('=')
                && k.eq_ignore_ascii_case("password")
            {
                raw.push(v.to_owned());
            }
        }
    }
    let mut all: Vec<String> = raw
        .iter()
        .flat_map(|s| [s.clone(), percent_decode(s)])
        .filter(|s| !s.is_empty())
        .collect();
    // Longest first, so a password containing another is scrubbed whole.
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    all.dedup();
    all
}

fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&stent_core::store::percent_decode(s)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password_everywhere_it_can_be() {
        assert_eq!(
            redact("postgres://user:secret@host/db"),
            "postgres://user:***@host/db"
        );
        assert_eq!(
            redact("postgres://user@host:5432/db"),
            "postgres://user@host:5432/db"
        );
        assert_eq!(
            redact("postgresql://u:p%40ss@h/db?sslmode=require&password=x&application_name=a"),
            "postgresql://u:***@h/db?sslmode=require&password=***&application_name=a"
        );
        assert_eq!(redact("postgres://:pw@h"), "postgres://:***@h");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn scrub_removes_every_spelling_of_the_password() {
        let t = Target::new(
            "u@h:5432/db".into(),
            None,
            Some("postgres://u:p%40ss@h/db?password=other"),
        );
        assert_eq!(t.scrub("a p%40ss b p@ss c other"), "a *** b *** c ***");
    }
}
