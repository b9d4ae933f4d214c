//! The one place sqlx errors become stent errors, and where passwords are kept out of them.

use stent_core::store::url_secrets;
use stent_core::{Error, ErrorKind};

/// What the store knows about its server, for messages: where it is (never the password)
/// and the password's spellings, to scrub from any text a driver produces.
pub(crate) struct Target {
    /// `user@host:port/database`.
    pub(crate) name: String,
    secrets: Vec<String>,
}

impl Target {
    /// The server `name`, and the password of `url` (empty for none).
    pub(crate) fn new(name: String, url: &str) -> Self {
        let secrets = url_secrets(url);
        Target { name, secrets }
    }

    /// `text` with every spelling of the password replaced by `***`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let scrub = |text: String, secret: &String| text.replace(secret.as_str(), "***");
        self.secrets.iter().fold(text.to_owned(), scrub)
    }
}

/// The SQLSTATE of a server's error.
pub(crate) fn sqlstate(err: &sqlx::Error) -> Option<String> {
    err.as_database_error()?.code().map(|c| c.into_owned())
}

/// The error's text with its whole chain of causes and the SQLSTATE, passwords scrubbed: the
/// stent error's `source`.
fn describe(err: &sqlx::Error, target: &Target) -> String {
    let mut text = match (err.as_database_error(), sqlstate(err)) {
        (Some(db), Some(code)) => format!("{} [SQLSTATE {code}]", db.message()),
        (Some(db), None) => db.message().to_owned(),
        (None, _) => err.to_string(),
    };
    let causes = std::iter::successors(std::error::Error::source(err), |c| (*c).source());
    for more in causes.map(|c| c.to_string()) {
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
    }
    target.scrub(&text)
}

/// The kind of an error (retrying the same operation may succeed when it is `Unavailable` or
/// `Busy`), and what it tells of the configuration or the server, when it does.
fn classify(err: &sqlx::Error) -> (ErrorKind, Option<&str>) {
    use ErrorKind::{Busy, Config, Decode, Store, Unavailable};
    use sqlx::Error as E;
    let (kind, hint) = match (sqlstate(err).as_deref(), err) {
        // connection_exception, the server shutting down or starting up, and a standby
        // that was primary a moment ago (after a failover)
        (Some(c), _) if c.starts_with("08") => (Unavailable, ""),
        (Some("57P01" | "57P02" | "57P03" | "25006"), _) => (Unavailable, ""),
        // serialization_failure, deadlock_detected, lock_not_available, query_canceled, and
        // insufficient_resources: too many connections, out of memory or disk
        (Some("40001" | "40P01" | "55P03" | "57014"), _) => (Busy, ""),
        (Some(c), _) if c.starts_with("53") => (Busy, ""),
        // invalid password; invalid authorization (a missing role, or pg_hba.conf) and a
        // missing database, which the server's message names
        (Some("28P01"), _) => (Config, "wrong password (check the URL's user and password)"),
        (Some("28000" | "3D000"), E::Database(db)) => (Config, db.message()),
        // undefined_table, undefined_function
        (Some("42P01" | "42883"), _) => (Store, "a table is missing (run PostgresStore::migrate)"),
        (Some(_), _) => (Store, ""),
        (None, E::Io(_) | E::PoolTimedOut) => (Unavailable, "cannot reach the server"),
        (None, E::Protocol(_) | E::PoolClosed | E::WorkerCrashed) => (Unavailable, ""),
        (None, E::Tls(_)) => (Config, "TLS failed (check sslmode and certificates)"),
        (None, E::Configuration(_)) => (Config, "invalid connection options"),
        (None, E::ColumnDecode { .. } | E::Decode(_)) => (Decode, ""),
        (None, E::BeginFailed) => (Busy, ""),
        (None, _) => (Store, ""),
    };
    (kind, Some(hint).filter(|h| !h.is_empty()))
}

/// Converts an error from operation `what` on `key` (if any), naming the server and what is
/// wrong with the configuration or the server when the error tells.
pub(crate) fn convert(err: sqlx::Error, target: &Target, what: &str, key: Option<&str>) -> Error {
    let (kind, hint) = classify(&err);
    let hint = hint.map(|h| format!(": {}", target.scrub(h)));
    let hint = hint.unwrap_or_default();
    let message = format!("PostgreSQL {what} on {} failed{hint}", target.name);
    let e = Error::new(kind, message).with_source(describe(&err, target));
    if let Some(k) = key { e.with_key(k) } else { e }
}

/// Converts an error met while creating or checking the tables: a retryable one as any
/// operation's, any other as a `Config` error saying what was being done.
pub(crate) fn migrate_error(err: sqlx::Error, target: &Target, what: &str) -> Error {
    match classify(&err).0 {
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
            "postgres://u:p%40ss@h/db?password=other",
        );
        assert_eq!(t.scrub("a p%40ss b p@ss c other"), "a *** b *** c ***");
    }
}
