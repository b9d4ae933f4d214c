//! Every SQL statement the store runs, built once per table.
//!
//! Table names are validated identifiers (see `config.rs`); every value is a bound parameter.

use std::sync::Arc;

use stent_core::Namespace;

/// Human-readable UTC text for an epoch-milliseconds column, in the format every part of
/// stent shows a time in (RFC 3339, UTC, milliseconds): `2026-11-28T15:54:30.123Z`.
fn readable(col: &str) -> String {
    format!(
        "strftime('%Y-%m-%dT%H:%M:%S', {col} / 1000, 'unixepoch') || printf('.%03dZ', {col} % 1000)"
    )
}

/// Version of the table layout, recorded in `{prefix}stent_schema`. Version 2 writes the
/// readable time columns as `…T…Z` (version 1 wrote `2026-11-28 15:54:30.123`).
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// The generated columns that show a time in readable form, and the column each shows.
const READABLE: [(&str, &str); 3] = [
    ("created_at", "created_ms"),
    ("completed_at", "completed_ms"),
    ("expires_at", "expires_ms"),
];

pub(crate) const COLUMNS: &str = "key, state, value, lease_token, lease_expires_ms, attempt, \
     fingerprint, function, version, created_ms, completed_ms, expires_ms";

/// The statements for one namespace's table.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) table: String,
    pub(crate) create_table: String,
    pub(crate) create_index: String,
    pub(crate) create_schema: String,
    pub(crate) record_schema: String,
    pub(crate) schema_version: String,
    /// Rewrites a version-1 table's readable time columns in today's format.
    pub(crate) upgrade_from_v1: Vec<String>,
    pub(crate) probe: Arc<str>,
    pub(crate) get: Arc<str>,
    pub(crate) claim: Arc<str>,
    pub(crate) renew: Arc<str>,
    pub(crate) complete: Arc<str>,
    pub(crate) release: Arc<str>,
    pub(crate) put: Arc<str>,
    pub(crate) delete: Arc<str>,
    pub(crate) list: Arc<str>,
    pub(crate) clear: Arc<str>,
    pub(crate) purge: Arc<str>,
}

impl Statements {
    pub(crate) fn new(prefix: &str, ns: Namespace) -> Self {
        let table = format!("{prefix}{}", ns.as_str());
        let t = format!("\"{table}\"");
        let live = |now: &str| format!("(expires_ms IS NULL OR expires_ms > {now})");
        let s = |sql: String| -> Arc<str> { sql.into() };
        Statements {
            create_table: format!(
                    "CREATE TABLE IF NOT EXISTS {t} (
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
)",
                    READABLE.map(|(col, ms)| format!(
                        "{col:<16} TEXT GENERATED ALWAYS AS ({}) VIRTUAL",
                        readable(ms)
                    ))
                    .join(",\n    ")
                ),
            create_index: format!(
                "CREATE INDEX IF NOT EXISTS \"{table}_expires_ms\" ON {t} (expires_ms) \
                 WHERE expires_ms IS NOT NULL"
            ),
            create_schema: format!(
                "CREATE TABLE IF NOT EXISTS \"{prefix}stent_schema\" \
                 (component TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL)"
            ),
            record_schema: format!(
                "INSERT INTO \"{prefix}stent_schema\" (component, version) VALUES ('sqlite', {SCHEMA_VERSION}) \
                 ON CONFLICT (component) DO UPDATE SET version = excluded.version"
            ),
            schema_version: format!(
                "SELECT version FROM \"{prefix}stent_schema\" WHERE component = 'sqlite'"
            ),
            upgrade_from_v1: READABLE
                .iter()
                .flat_map(|(col, ms)| {
                    [
                        format!("ALTER TABLE {t} DROP COLUMN {col}"),
                        format!(
                            "ALTER TABLE {t} ADD COLUMN {col} TEXT GENERATED ALWAYS AS ({}) VIRTUAL",
                            readable(ms)
                        ),
                    ]
                })
                .collect(),
            probe: s(format!("SELECT {COLUMNS} FROM {t} LIMIT 0")),
            get: s(format!("SELECT {COLUMNS} FROM {t} WHERE key = ?1 AND {}", live("?2"))),
            // One statement: take an absent, expired or lapsed key; leave anything else as is
            // (then no row comes back and the caller reads what stands).
            claim: s(format!(
                "INSERT INTO {t} (key, state, value, lease_token, lease_expires_ms, attempt, \
                     fingerprint, function, version, created_ms, completed_ms, expires_ms)
                 VALUES (?1, 'in_progress', NULL, ?2, ?3, 1, ?4, ?5, ?6, ?7, NULL, NULL)
                 ON CONFLICT (key) DO UPDATE SET
                     attempt = CASE WHEN expires_ms IS NOT NULL AND expires_ms <= ?7
                                    THEN 1 ELSE attempt + 1 END,
                     created_ms = CASE WHEN expires_ms IS NOT NULL AND expires_ms <= ?7
                                       THEN excluded.created_ms ELSE created_ms END,
                     state = 'in_progress', value = NULL,
                     lease_token = excluded.lease_token,
                     lease_expires_ms = excluded.lease_expires_ms,
                     fingerprint = excluded.fingerprint, function = excluded.function,
                     version = excluded.version, completed_ms = NULL, expires_ms = NULL
                 WHERE (expires_ms IS NOT NULL AND expires_ms <= ?7)
                    OR (state = 'in_progress' AND (lease_expires_ms IS NULL OR lease_expires_ms <= ?7))
                 RETURNING attempt"
            )),
            renew: s(format!(
                "UPDATE {t} SET lease_expires_ms = ?3 \
                 WHERE key = ?1 AND lease_token = ?2 AND state = 'in_progress'"
            )),
            complete: s(format!(
                "UPDATE {t} SET state = 'completed', value = ?3, lease_token = NULL, \
                     lease_expires_ms = NULL, completed_ms = ?4, expires_ms = ?5 \
                 WHERE key = ?1 AND lease_token = ?2 AND state = 'in_progress'"
            )),
            release: s(format!(
                "DELETE FROM {t} WHERE key = ?1 AND lease_token = ?2 AND state = 'in_progress'"
            )),
            put: s(format!(
                "INSERT INTO {t} (key, state, value, lease_token, lease_expires_ms, attempt, \
                     fingerprint, function, version, created_ms, completed_ms, expires_ms)
                 VALUES (?1, 'completed', ?2, NULL, NULL, 1, ?3, ?4, ?5, ?6, ?6, ?7)
                 ON CONFLICT (key) DO UPDATE SET
                     state = 'completed', value = excluded.value, lease_token = NULL,
                     lease_expires_ms = NULL, attempt = 1, fingerprint = excluded.fingerprint,
                     function = excluded.function, version = excluded.version,
                     created_ms = excluded.created_ms, completed_ms = excluded.completed_ms,
                     expires_ms = excluded.expires_ms"
            )),
            delete: s(format!("DELETE FROM {t} WHERE key = ?1")),
            // Prefix match on bytes (not LIKE, whose wildcards and case folding would leak in).
            list: s(format!(
                "SELECT {COLUMNS} FROM {t}
                 WHERE key >= ?1 AND substr(CAST(key AS BLOB), 1, length(CAST(?1 AS BLOB))) = CAST(?1 AS BLOB)
                   AND (?2 IS NULL OR key > ?2)
                   AND (?3 OR {})
                 ORDER BY key LIMIT ?5",
                live("?4")
            )),
            clear: s(format!("DELETE FROM {t}")),
            purge: s(format!(
                "DELETE FROM {t} WHERE key IN (
                     SELECT key FROM {t} WHERE expires_ms IS NOT NULL AND expires_ms <= ?1 LIMIT ?2)"
            )),
            table,
        }
    }
}
