//! The one place sqlx errors become stent errors, and where passwords are kept out of them.

use std::fmt;

use stent_core::store::url_secrets;
use stent_core::{Error, ErrorKind};

/// What the store knows about its server, for messages: where it is (never the password)
/// and the password's spellings, to scrub from any text a driver produces.
pub(crate) struct Target {
    /// `user@host:port/database`.
    pub(crate) name: String,
    /// The database name, when the options name one.
    pub(crate) database: Option<String>,
    secrets: Vec<String>,
}

impl Target {
    /// The server `name`, and the password of `url` (empty for none).
    pub(crate) fn new(name: String, database: Option<String>, url: &str) -> Self {
        let secrets = url_secrets(url);
        Target {
            name,
            database,
            secrets,
        }
    }

    /// `text` with every spelling of the password replaced by `***`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let scrub = |text: String, secret: &String| text.replace(secret.as_str(), "***");
        self.secrets.iter().fold(text.to_owned(), scrub)
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// The SQLSTATE of a server's error.
pub(crate) fn sqlstate(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// The error's text with its whole chain of causes and the SQLSTATE, passwords scrubbed: the
/// stent error's `source`.
fn describe(err: &sqlx::Error, target: &Target) -> String {
    let mut text = match (err, sqlstate(err)) {
        (sqlx::Error::Database(db), Some(code)) => format!("{} [SQLSTATE {code}]", db.message()),
        (sqlx::Error::Database(db), None) => db.message().to_owned(),
        (other, _) => other.to_string(),
    };
    let causes = std::iter::successors(std::error::Error::source(err), |c| (*c).source());
    for more in causes.map(|c| c.to_string()) {
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
    }
    target.scrub(&text)
}

/// The kind of an error; retrying the same operation may succeed when the kind is
/// `Unavailable` or `Busy`.
fn kind(err: &sqlx::Error) -> ErrorKind {
    use ErrorKind::{Busy, Config, Decode, Store, Unavailable};
    use sqlx::Error as E;
    match (sqlstate(err).as_deref(), err) {
        // connection_exception, the server shutting down or starting up, and a standby
        // that was primary a moment ago (after a failover)
        (Some(c), _) if c.starts_with("08") => Unavailable,
        (Some("57P01" | "57P02" | "57P03" | "25006"), _) => Unavailable,
        // serialization_failure, deadlock_detected, lock_not_available, query_canceled, and
        // insufficient_resources: too many connections, out of memory or disk
        (Some("40001" | "40P01" | "55P03" | "57014"), _) => Busy,
        (Some(c), _) if c.starts_with("53") => Busy,
        // invalid password, invalid authorization (pg_hba), missing database
        (Some("28P01" | "28000" | "3D000"), _) => Config,
        (Some(_), _) => Store,
        (None, E::Io(_) | E::Protocol(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed) => {
            Unavailable
        }
        (None, E::Configuration(_) | E::Tls(_)) => Config,
        (None, E::ColumnDecode { .. } | E::Decode(_)) => Decode,
        (None, E::BeginFailed) => Busy,
        (None, _) => Store,
    }
}

/// What an error tells of the configuration or the server, when it does.
fn diagnosis(err: &sqlx::Error, target: &Target) -> Option<String> {
    let name = &target.name;
    Some(match (sqlstate(err).as_deref(), err) {
        (Some("28P01"), _) => {
            format!("the server refused the password of {name} (check the URL's user and password)")
        }
        (Some("28000"), _) => format!("{name} may not connect (check the user, and pg_hba.conf)"),
        (Some("3D000"), _) => match &target.database {
            Some(db) => format!("database {db:?} does not exist on {name}"),
            None => format!("the database of {name} does not exist"),
        },
        // undefined_table, undefined_function
        (Some("42P01" | "42883"), _) => {
            format!("a stent table is missing on {name} (run PostgresStore::migrate)")
        }
        (None, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) => format!("cannot reach {name}"),
        (None, sqlx::Error::Tls(_)) => {
            format!("TLS with {name} failed (check sslmode and certificates)")
        }
        (None, sqlx::Error::Configuration(_)) => format!("invalid connection options for {name}"),
        _ => return None,
    })
}

/// Converts an error from operation `what` on `key` (if any), naming what is wrong with the
/// configuration or the server when the error tells.
pub(crate) fn convert(err: sqlx::Error, target: &Target, what: &str, key: Option<&str>) -> Error {
    let said = diagnosis(&err, target).map(|s| format!(": {s}"));
    let message = format!("PostgreSQL {what} failed{}", said.unwrap_or_default());
    let e = Error::new(kind(&err), message);
    let e = e.with_source(describe(&err, target));
    match key {
        Some(key) => e.with_key(key),
        None => e,
    }
}

/// Converts an error met while creating or checking the tables: a retryable one as any
/// operation's, any other as a `Config` error saying what was being done.
pub(crate) fn migrate_error(err: sqlx::Error, target: &Target, what: &str) -> Error {
    match kind(&err) {
        ErrorKind::Unavailable | ErrorKind::Busy => convert(err, target, "migration", None),
        _ => {
            Error::config(format!("{what} on {}", target.name)).with_source(describe(&err, target))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_every_spelling_of_the_password() {
        let t = Target::new(
            "u@h:5432/db".into(),
            None,
            "postgres://u:p%40ss@h/db?password=other",
        );
        assert_eq!(t.scrub("a p%40ss b p@ss c other"), "a *** b *** c ***");
    }
}
