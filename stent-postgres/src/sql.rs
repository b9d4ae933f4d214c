//! The tables' layout: each namespace's table and claim function, their DDL, and the columns
//! a record is read from (each operation's statement is in its method, in `store.rs`). Names
//! are validated identifiers; every time is the server's `now()`: one instant per statement.

use stent_core::Namespace;

/// The `pg_advisory_xact_lock` key of migrations: "stent_mg".
const MIGRATION_LOCK: i64 = 0x7374_656e_745f_6d67;

/// A record's columns, in the table's order. Times are `timestamptz`, decoded on the client,
/// so the server spends nothing converting them.
pub(crate) const COLUMNS: &str = "key, state, value, lease_token, lease_expires_at, attempt, \
     fingerprint, function, version, created_at, completed_at, expires_at";

/// A record that has not expired.
pub(crate) const LIVE: &str = "(expires_at IS NULL OR expires_at > now())";

/// A namespace's table and what belongs to it, named for SQL (quoted) and for people.
pub(crate) struct Table {
    /// `schema.table` or `table`.
    pub(crate) shown: String,
    /// The table, quoted.
    pub(crate) sql: String,
    /// The claim function, quoted: the write half of a claim.
    pub(crate) claim: String,
    /// Creates the table, its index and its claim function, where they are missing.
    create: String,
    /// An SQL expression, true when the table, its index and its claim function all exist.
    pub(crate) exists: String,
}

impl Table {
    pub(crate) fn new(schema: Option<&str>, prefix: &str, ns: Namespace) -> Self {
        let name = format!("{prefix}{}", ns.as_str());
        let index = format!("{name}_expires_at");
        let qualify = |n: &str| match schema {
            Some(s) => format!("\"{s}\".\"{n}\""),
            None => format!("\"{n}\""),
        };
        let t = qualify(&name);
        // The layout version is part of the name: a database holding an older function of
        // another shape gets the current one created beside it instead of a failing claim.
        let f = qualify(&format!("{name}_claim_v2"));
        let create = [
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (
    key              TEXT COLLATE \"C\" PRIMARY KEY,
    state            TEXT NOT NULL CHECK (state IN ('in_progress', 'completed')),
    value            BYTEA,
    lease_token      TEXT,
    lease_expires_at TIMESTAMPTZ,
    attempt          INTEGER NOT NULL DEFAULT 1,
    fingerprint      TEXT,
    function         TEXT,
    version          TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at     TIMESTAMPTZ,
    expires_at       TIMESTAMPTZ
)"
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS \"{index}\" ON {t} (expires_at) \
                 WHERE expires_at IS NOT NULL"
            ),
            // Absent, expired or lapsed → taken, decided again on the row it locks (ON
            // CONFLICT's WHERE sees the latest committed version). Returns the new attempt
            // number, or NULL when another claim got there first. PL/pgSQL keeps its plan
            // for the session.
            format!(
                "CREATE OR REPLACE FUNCTION {f}(
    k text, tok text, lease_ms bigint, fp text, fname text, ver text
) RETURNS integer LANGUAGE plpgsql VOLATILE AS $claim$
DECLARE
    taken integer;
BEGIN
    INSERT INTO {t} AS r (key, state, lease_token, lease_expires_at, attempt,
                         fingerprint, function, version, created_at)
    VALUES (k, 'in_progress', tok, now() + lease_ms::int8 * interval '1 millisecond', 1, fp,
            fname, ver, now())
    ON CONFLICT (key) DO UPDATE SET
        attempt = CASE WHEN r.expires_at <= now() THEN 1 ELSE r.attempt + 1 END,
        created_at = CASE WHEN r.expires_at <= now() THEN now() ELSE r.created_at END,
        state = 'in_progress', value = NULL,
        lease_token = excluded.lease_token, lease_expires_at = excluded.lease_expires_at,
        fingerprint = excluded.fingerprint, function = excluded.function,
        version = excluded.version, completed_at = NULL, expires_at = NULL
    WHERE r.expires_at <= now()
       OR (r.state = 'in_progress' AND (r.lease_expires_at IS NULL OR r.lease_expires_at <= now()))
    RETURNING r.attempt INTO taken;
    RETURN taken;
END
$claim$"
            ),
        ]
        .join(";\n");
        Table {
            shown: schema.map_or_else(|| name.clone(), |s| format!("{s}.{name}")),
            exists: format!(
                "to_regclass('{t}') IS NOT NULL AND to_regclass('{}') IS NOT NULL \
                 AND to_regprocedure('{f}(text, text, bigint, text, text, text)') IS NOT NULL",
                qualify(&index)
            ),
            sql: t,
            claim: f,
            create,
        }
    }
}

/// What `migrate` runs, in one transaction, when something is missing: an advisory lock that
/// serializes concurrent migrations (two `CREATE TABLE IF NOT EXISTS` racing can otherwise
/// fail on `pg_type`'s unique index), the schema if it is missing (`CREATE SCHEMA IF NOT
/// EXISTS` would need the privilege to create one even when it exists), then every table.
pub(crate) fn migration(schema: Option<&str>, tables: &[Table]) -> String {
    let mut script = format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK});\n");
    if let Some(s) = schema {
        script += &format!(
            "DO $schema$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '{s}') THEN
        CREATE SCHEMA \"{s}\";
    END IF;
END $schema$;\n"
        );
    }
    script.extend(tables.iter().map(|t| format!("{};\n", t.create)));
    script
}
