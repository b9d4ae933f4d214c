//! The one place sqlx and rusqlite errors become stent errors.

use std::path::Path;

use stent_core::{Error, ErrorKind};

const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_NOMEM: i32 = 7;
const SQLITE_READONLY: i32 = 8;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CORRUPT: i32 = 11;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_TOOBIG: i32 = 18;
const SQLITE_NOTADB: i32 = 26;

/// The primary result code of a database error, if it is one.
fn primary_code(err: &sqlx::Error) -> Option<i32> {
    match err {
        sqlx::Error::Database(db) => db.code()?.parse::<i32>().ok().map(|c| c & 0xff),
        _ => None,
    }
}

/// The kind of an error SQLite returned with result code `code`.
fn kind_of(code: i32) -> ErrorKind {
    match code & 0xff {
        SQLITE_BUSY | SQLITE_LOCKED => ErrorKind::Busy,
        SQLITE_IOERR | SQLITE_NOMEM | SQLITE_FULL => ErrorKind::Unavailable,
        SQLITE_TOOBIG => ErrorKind::ValueTooLarge,
        _ => ErrorKind::Store,
    }
}

/// Converts an error from operation `what` on `key` (if any); retryable as its kind is.
pub(crate) fn convert(err: sqlx::Error, what: &str, key: Option<&str>) -> Error {
    let kind = match (primary_code(&err), &err) {
        (Some(code), _) => kind_of(code),
        (None, sqlx::Error::PoolTimedOut) => ErrorKind::Busy,
        (None, sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed) => {
            ErrorKind::Unavailable
        }
        (None, sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)) => ErrorKind::Decode,
        _ => ErrorKind::Store,
    };
    failed(kind, what, key, err)
}

/// Converts an error of a read (which rusqlite runs; see `SqliteStore::on_reader`).
pub(crate) fn convert_read(err: rusqlite::Error, what: &str, key: Option<&str>) -> Error {
    use rusqlite::Error as E;
    let kind = match &err {
        E::SqliteFailure(e, _) => kind_of(e.extended_code),
        E::InvalidColumnType(..) | E::FromSqlConversionFailure(..) => ErrorKind::Decode,
        E::IntegralValueOutOfRange(..) | E::Utf8Error(..) => ErrorKind::Decode,
        _ => ErrorKind::Store,
    };
    failed(kind, what, key, err)
}

fn failed(
    kind: ErrorKind,
    what: &str,
    key: Option<&str>,
    err: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    let e = Error::new(kind, format!("SQLite {what} failed")).with_source(err);
    match key {
        Some(key) => e.with_key(key),
        None => e,
    }
}

/// Converts an error met while opening `path`, naming the file and what is wrong with it.
pub(crate) fn open_error(err: sqlx::Error, path: &Path) -> Error {
    let path = path.display();
    let message = match (primary_code(&err), &err) {
        (Some(SQLITE_NOTADB), _) => format!("{path} is not a SQLite database"),
        (Some(SQLITE_READONLY), _) => format!("{path} is read-only; stent needs to write to it"),
        (Some(SQLITE_CANTOPEN), _) => {
            format!("cannot open {path} (does its directory exist, and is it writable?)")
        }
        (Some(SQLITE_CORRUPT), _) => format!("{path} is corrupt"),
        (Some(SQLITE_BUSY | SQLITE_LOCKED), _) => {
            return convert(err, &format!("opening {path}"), None);
        }
        (_, sqlx::Error::Io(_)) => format!("cannot open {path}"),
        _ => format!("opening {path} failed"),
    };
    Error::new(ErrorKind::Config, message).with_source(err)
}
