//! The tables' layout: the columns a record is read from, and the DDL of `migrate`. Each
//! operation's statement is written in its method, in `store.rs`.
//!
//! Table names are validated identifiers (see `config.rs`); every value is a bound parameter.

use sqlx::{AssertSqlSafe, RawSql};
use stent_core::{Error, LeaseToken, Record, RecordState, Result, Timestamp};

/// A record's columns, in the table's order: what every record-returning statement selects.
pub(crate) const COLUMNS: &str = "key, state, value, lease_token, lease_expires_ms, attempt, \
     fingerprint, function, version, created_ms, completed_ms, expires_ms";

/// A row of [`COLUMNS`], times in epoch milliseconds, as both drivers decode it (sqlx in a
/// transaction, rusqlite for reads).
pub(crate) type Columns = (
    String,
    String,
    Option<Vec<u8>>,
    Option<String>,
    Option<i64>,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// The record in a row of [`COLUMNS`].
pub(crate) fn record(row: Columns) -> Result<Record> {
    let (key, state, value, token, lease_ms, attempt, fingerprint, function, version, ..) = row;
    let time = |ms: Option<i64>| ms.map(Timestamp::from_millis);
    let Some(state) = RecordState::parse(&state) else {
        let message = format!("stored record has unknown state {state:?}");
        return Err(Error::decode(&key, message));
    };
    let mut r = Record::new(key, state, time(row.9).unwrap_or_default());
    r.value = value;
    r.lease_token = token.map(LeaseToken::from_string);
    r.lease_expires_at = time(lease_ms);
    r.attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
    r.fingerprint = fingerprint;
    r.function = function;
    r.version = version;
    r.completed_at = time(row.10);
    r.expires_at = time(row.11);
    Ok(r)
}

/// Version of the table layout, recorded in `{prefix}stent_schema`. Version 2 writes the
/// readable time columns as `…T…Z` (version 1 wrote `2026-11-28 15:54:30.123`).
const SCHEMA_VERSION: i64 = 2;

/// The times also shown in readable form: generated column `{time}_at` shows `{time}_ms` as
/// RFC 3339 in UTC with milliseconds (`2026-11-28T15:54:30.123Z`), as stent shows times
/// everywhere.
const READABLE: [&str; 3] = ["created", "completed", "expires"];

fn readable_column(time: &str) -> String {
    let (col, ms) = (format!("{time}_at"), format!("{time}_ms"));
    format!(
        "{col:<16} TEXT GENERATED ALWAYS AS (strftime('%Y-%m-%dT%H:%M:%S', {ms} / 1000, \
         'unixepoch') || printf('.%03dZ', {ms} % 1000)) VIRTUAL"
    )
}

/// Creates the version table and `tables`, where they are missing.
pub(crate) fn create_tables(prefix: &str, tables: &[String]) -> RawSql {
    let mut script = format!(
        "CREATE TABLE IF NOT EXISTS \"{prefix}stent_schema\" \
         (component TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL);"
    );
    for t in tables {
        script += &format!(
            "CREATE TABLE IF NOT EXISTS \"{t}\" (
    key              TEXT PRIMARY KEY NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('in_progress', 'completed')),
    value            BLOB,
    lease_token      TEXT,
    lease_expires_ms INTEGER,
    attempt          INTEGER NOT NULL DEFAULT 1,
    fingerprint      TEXT,
    function         TEXT,
    version          TEXT,
    created_ms       INTEGER NOT NULL,
    completed_ms     INTEGER,
    expires_ms       INTEGER,
    {}
);",
            READABLE.map(readable_column).join(",\n    ")
        );
    }
    sqlx::raw_sql(AssertSqlSafe(script))
}

/// Creates each table's index on `expires_ms` where missing, rewrites version-1 readable
/// columns in today's format when `from_v1`, and records the layout's version.
pub(crate) fn finish_tables(prefix: &str, tables: &[String], from_v1: bool) -> RawSql {
    let mut script = String::new();
    for t in tables {
        script += &format!(
            "CREATE INDEX IF NOT EXISTS \"{t}_expires_ms\" ON \"{t}\" (expires_ms) \
             WHERE expires_ms IS NOT NULL;"
        );
        for time in READABLE.into_iter().filter(|_| from_v1) {
            script += &format!(
                "ALTER TABLE \"{t}\" DROP COLUMN {time}_at;\
                 ALTER TABLE \"{t}\" ADD COLUMN {};",
                readable_column(time)
            );
        }
    }
    script += &format!(
        "INSERT INTO \"{prefix}stent_schema\" (component, version) \
         VALUES ('sqlite', {SCHEMA_VERSION}) \
         ON CONFLICT (component) DO UPDATE SET version = excluded.version"
    );
    sqlx::raw_sql(AssertSqlSafe(script))
}
