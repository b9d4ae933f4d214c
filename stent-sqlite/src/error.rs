//! The one place sqlx and rusqlite errors become stent errors.

use std::path::Path;

use rusqlite::ErrorCode as Code;
use stent_core::{Error, ErrorKind};

/// The primary result code of a database error, if it is one.
fn code_of(err: &sqlx::Error) -> Option<Code> {
    let code = err.as_database_error()?.code()?.parse().ok()?;
    Some(rusqlite::ffi::Error::new(code).code)
}

/// The kind of an error SQLite returned with result code `code`.
fn kind_of(code: Code) -> ErrorKind {
    match code {
        Code::DatabaseBusy | Code::DatabaseLocked => ErrorKind::Busy,
        Code::SystemIoFailure | Code::OutOfMemory | Code::DiskFull => ErrorKind::Unavailable,
        Code::TooBig => ErrorKind::ValueTooLarge,
        _ => ErrorKind::Store,
    }
}

/// Converts an error from operation `what` on `key` (if any); retryable as its kind is.
pub(crate) fn convert(err: sqlx::Error, what: &str, key: Option<&str>) -> Error {
    use sqlx::Error as E;
    let kind = match (code_of(&err), &err) {
        (Some(code), _) => kind_of(code),
        (None, E::PoolTimedOut) => ErrorKind::Busy,
        (None, E::Io(_) | E::PoolClosed | E::WorkerCrashed) => ErrorKind::Unavailable,
        (None, E::ColumnDecode { .. } | E::Decode(_)) => ErrorKind::Decode,
        _ => ErrorKind::Store,
    };
    failed(kind, what, key).with_source(err)
}

/// Converts an error of a read (which rusqlite runs; see `SqliteStore::on_reader`).
pub(crate) fn convert_read(err: rusqlite::Error, what: &str, key: Option<&str>) -> Error {
    use rusqlite::Error as E;
    let kind = match &err {
        E::SqliteFailure(e, _) => kind_of(e.code),
        E::InvalidColumnType(..) | E::FromSqlConversionFailure(..) => ErrorKind::Decode,
        E::IntegralValueOutOfRange(..) | E::Utf8Error(..) => ErrorKind::Decode,
        _ => ErrorKind::Store,
    };
    failed(kind, what, key).with_source(err)
}

/// What operation `what` on `key` (if any) failed with.
fn failed(kind: ErrorKind, what: &str, key: Option<&str>) -> Error {
    let e = Error::new(kind, format!("SQLite {what} failed"));
    if let Some(k) = key { e.with_key(k) } else { e }
}

/// Converts an error met while opening `path`, naming the file and what is wrong with it.
pub(crate) fn open_error(err: sqlx::Error, path: &Path) -> Error {
    let path = path.display();
    let message = match (code_of(&err), &err) {
        (Some(Code::NotADatabase), _) => format!("{path} is not a SQLite database"),
        (Some(Code::ReadOnly), _) => format!("{path} is read-only; stent needs to write to it"),
        (Some(Code::CannotOpen), _) => {
            format!("cannot open {path} (does its directory exist, and is it writable?)")
        }
        (Some(Code::DatabaseCorrupt), _) => format!("{path} is corrupt"),
        (Some(Code::DatabaseBusy | Code::DatabaseLocked), _) => {
            return convert(err, &format!("opening {path}"), None);
        }
        (_, sqlx::Error::Io(_)) => format!("cannot open {path}"),
        _ => format!("opening {path} failed"),
    };
    Error::new(ErrorKind::Config, message).with_source(err)
}
