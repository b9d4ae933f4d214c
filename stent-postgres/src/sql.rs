//! Every SQL statement the store runs, built once per table.
//!
//! Table and schema names are validated identifiers (see `config.rs`); every value is a
//! bound parameter. Every time is the server's: `now()`, the start of the statement's own
//! transaction, so one statement decides with one instant.

use std::sync::Arc;

use stent_core::Namespace;

/// Serializes concurrent table creation (`pg_advisory_xact_lock` key): two
/// `CREATE TABLE IF NOT EXISTS` racing can otherwise fail on `pg_type`'s unique index.
pub(crate) const MIGRATION_LOCK: i64 = 0x7374_656e_745f_6d67; // "stent_mg"

/// `now()` plus a bound number of milliseconds (`NULL` stays `NULL`).
fn later(param: &str) -> String {
    format!("now() + {param}::int8 * interval '1 millisecond'")
}

/// The claim statement's second branch: the claim's own row, in the record's columns. Its
/// `state` is NULL; `attempt` is what the claim function `qfn` returns (the new attempt, or
/// NULL when another claim got there first) and `lease_expires_at` the lease it wrote.
fn claim_row(qfn: &str) -> Vec<String> {
    (0..col::NAMES.len())
        .map(|at| match at {
            col::LEASE_EXPIRES_AT => later("$3"),
            col::ATTEMPT => format!("{qfn}($1, $2, $3, $4, $5, $6)"),
            _ => "NULL".to_owned(),
        })
        .collect()
}

/// Where each column is in a record-returning row: a record's twelve columns, which every
/// such statement yields in this order. Rows are read by position: a lookup by name hashes
/// and compares the name, for every column of every row. Times come back as `timestamptz`
/// and are decoded on the client (see `store.rs`), so the server spends nothing converting
/// them.
pub(crate) mod col {
    pub(crate) const KEY: usize = 0;
    /// NULL only in a claim's own row (see the claim statement): no record stands.
    pub(crate) const STATE: usize = 1;
    pub(crate) const VALUE: usize = 2;
    pub(crate) const LEASE_TOKEN: usize = 3;
    /// In a claim's own row: the lease this claim holds if it acquired the key.
    pub(crate) const LEASE_EXPIRES_AT: usize = 4;
    /// In a claim's own row: the new attempt number when this claim acquired the key,
    /// NULL when another claim got there first.
    pub(crate) const ATTEMPT: usize = 5;
    pub(crate) const FINGERPRINT: usize = 6;
    pub(crate) const FUNCTION: usize = 7;
    pub(crate) const VERSION: usize = 8;
    pub(crate) const CREATED_AT: usize = 9;
    pub(crate) const COMPLETED_AT: usize = 10;
    pub(crate) const EXPIRES_AT: usize = 11;

    /// Every column's name, by position: the table's columns in the table's order.
    pub(crate) const NAMES: [&str; 12] = [
        "key",
        "state",
        "value",
        "lease_token",
        "lease_expires_at",
        "attempt",
        "fingerprint",
        "function",
        "version",
        "created_at",
        "completed_at",
        "expires_at",
    ];

    /// The name of the column at `at`, for error messages.
    pub(crate) fn name(at: usize) -> &'static str {
        NAMES.get(at).copied().unwrap_or("?")
    }
}

const LIVE: &str = "(expires_at IS NULL OR expires_at > now())";

/// The statements for one namespace's table.
#[derive(Debug)]
pub(crate) struct Statements {
    /// The table's name as shown to people: `schema.table` or `table`.
    pub(crate) display: String,
    /// The table's and its index's names, quoted, for `to_regclass`.
    pub(crate) relations: [String; 2],
    /// The claim function's signature, quoted, for `to_regprocedure`.
    pub(crate) function: String,
    pub(crate) create: Vec<String>,
    pub(crate) probe: Arc<str>,
    pub(crate) get: Arc<str>,
    pub(crate) claim: Arc<str>,
    pub(crate) renew: Arc<str>,
    pub(crate) complete: Arc<str>,
    pub(crate) release: Arc<str>,
    pub(crate) put: Arc<str>,
    pub(crate) delete: Arc<str>,
    /// Indexed by `[after_cursor][bounded]`: the key range is `> $1` or `>= $1`, with
    /// or without `< $2`, so every variant is one btree range scan.
    pub(crate) list: [[Arc<str>; 2]; 2],
    pub(crate) clear: Arc<str>,
    pub(crate) purge: Arc<str>,
}

/// Version of the claim function's shape, part of its name (`{table}_claim_v2`).
pub(crate) const CLAIM_FUNCTION_VERSION: u32 = 2;

impl Statements {
    pub(crate) fn new(schema: Option<&str>, prefix: &str, ns: Namespace) -> Self {
        let name = format!("{prefix}{}", ns.as_str());
        let index = format!("{name}_expires_at");
        // The layout version is part of the name: a database holding an older function of
        // another shape gets the current one created beside it instead of a failing claim.
        let claim_fn = format!("{name}_claim_v{CLAIM_FUNCTION_VERSION}");
        let qualify = |n: &str| match schema {
            Some(s) => format!("\"{s}\".\"{n}\""),
            None => format!("\"{n}\""),
        };
        let (t, qindex, qfn) = (qualify(&name), qualify(&index), qualify(&claim_fn));
        let display = match schema {
            Some(s) => format!("{s}.{name}"),
            None => name.clone(),
        };
        let cols = col::NAMES.join(", ");
        // One space between words: sqlx hashes and compares a statement's text on every
        // execution to find its prepared statement, and the layout above is only for reading.
        let s = |sql: String| -> Arc<str> {
            sql.split_whitespace().collect::<Vec<_>>().join(" ").into()
        };
        let list = |after: bool, bounded: bool| {
            s(format!(
                "SELECT {cols} FROM {t}
                 WHERE key {} $1 {} AND starts_with(key, $3)
                   AND ($4 OR {LIVE})
                 ORDER BY key LIMIT $5",
                if after { ">" } else { ">=" },
                if bounded {
                    "AND key < $2"
                } else {
                    "AND $2::text IS NULL"
                },
            ))
        };
        let standing = format!(
            "SELECT {cols} FROM {t} WHERE key = $1 AND {LIVE}
                 AND (state = 'completed' OR lease_expires_at > now())"
        );
        Statements {
            create: vec![
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
                // The write half of a claim: absent, expired or lapsed → taken, decided again
                // on the row it locks (ON CONFLICT's WHERE sees the latest committed version).
                // Returns the new attempt number, or NULL when another claim got there first.
                // PL/pgSQL keeps its plan for the session.
                format!(
                    "CREATE OR REPLACE FUNCTION {qfn}(
    k text, tok text, lease_ms bigint, fp text, fname text, ver text
) RETURNS integer LANGUAGE plpgsql VOLATILE AS $claim$
DECLARE
    taken integer;
BEGIN
    INSERT INTO {t} AS r (key, state, lease_token, lease_expires_at, attempt,
                         fingerprint, function, version, created_at)
    VALUES (k, 'in_progress', tok, {lease}, 1, fp, fname, ver, now())
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
$claim$",
                    lease = later("lease_ms"),
                ),
            ],
            probe: s(format!("SELECT {cols} FROM {t} LIMIT 0")),
            get: s(format!("SELECT {cols} FROM {t} WHERE key = $1 AND {LIVE}")),
            // One statement that reads the record as it stands and calls the claim function
            // only when it does not stand (absent, expired, or in flight on a lapsed lease).
            // The first branch is the plain read of a standing record, every column in the
            // table's order, so the scan hands its tuples on without a projection; `LIMIT 1`
            // stops the `Append` as soon as that branch yields its row, so the second
            // branch, and the function in it, runs only when no record stands. A completed
            // or in-flight key therefore costs a primary-key read: no row lock, no
            // transaction id, and none of the executor set-up an INSERT costs even when it
            // writes nothing.
            //
            // The second branch is the claim's own row, told by its NULL `state`: `attempt`
            // is the new attempt when this claim acquired the key, and `lease_expires_at`
            // the lease it holds (`now()` is the transaction's start, so it is the lease
            // written). A NULL `attempt` means another claim got there first (a row that
            // committed after this statement's snapshot), and the caller runs the
            // statement again. Columns of its own would cost every replay a projection.
            claim: s(format!(
                "({standing}) UNION ALL (SELECT {claim_row}) LIMIT 1",
                claim_row = claim_row(&qfn).join(", "),
            )),
            renew: s(format!(
                "UPDATE {t} SET lease_expires_at = {}
                 WHERE key = $1 AND lease_token = $2 AND state = 'in_progress'
                 RETURNING lease_expires_at",
                later("$3"),
            )),
            complete: s(format!(
                "UPDATE {t} SET state = 'completed', value = $3, lease_token = NULL,
                     lease_expires_at = NULL, completed_at = now(), expires_at = {}
                 WHERE key = $1 AND lease_token = $2 AND state = 'in_progress'",
                later("$4")
            )),
            release: s(format!(
                "DELETE FROM {t} WHERE key = $1 AND lease_token = $2 AND state = 'in_progress'"
            )),
            put: s(format!(
                "INSERT INTO {t} (key, state, value, attempt, fingerprint, function, version,
                                 created_at, completed_at, expires_at)
                 VALUES ($1, 'completed', $2, 1, $3, $4, $5, now(), now(), {})
                 ON CONFLICT (key) DO UPDATE SET
                     state = 'completed', value = excluded.value, lease_token = NULL,
                     lease_expires_at = NULL, attempt = 1, fingerprint = excluded.fingerprint,
                     function = excluded.function, version = excluded.version,
                     created_at = excluded.created_at, completed_at = excluded.completed_at,
                     expires_at = excluded.expires_at",
                later("$6")
            )),
            delete: s(format!("DELETE FROM {t} WHERE key = $1")),
            list: [
                [list(false, false), list(false, true)],
                [list(true, false), list(true, true)],
            ],
            clear: s(format!("DELETE FROM {t}")),
            // Oldest first, through the partial index on expires_at, then straight to each
            // row by its address: the cost follows `limit`, not the number of expired rows.
            // The lock keeps every picked row as it was checked (still expired, same address);
            // rows another session holds are skipped rather than waited for.
            purge: s(format!(
                "DELETE FROM {t} WHERE ctid = ANY (ARRAY(
                     SELECT ctid FROM {t} WHERE expires_at <= now()
                     ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED))"
            )),
            relations: [t.clone(), qindex],
            function: format!("{qfn}(text, text, bigint, text, text, text)"),
            display,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_positions_follow_the_column_list() {
        let positions = [
            ("key", col::KEY),
            ("state", col::STATE),
            ("value", col::VALUE),
            ("lease_token", col::LEASE_TOKEN),
            ("lease_expires_at", col::LEASE_EXPIRES_AT),
            ("attempt", col::ATTEMPT),
            ("fingerprint", col::FINGERPRINT),
            ("function", col::FUNCTION),
            ("version", col::VERSION),
            ("created_at", col::CREATED_AT),
            ("completed_at", col::COMPLETED_AT),
            ("expires_at", col::EXPIRES_AT),
        ];
        assert_eq!(col::NAMES.len(), positions.len());
        for (name, at) in positions {
            assert_eq!(col::NAMES[at], name);
            assert_eq!(col::name(at), name);
        }
        // The claim's first branch yields the record's columns in this order; its second
        // branch as many, with the claim's own values at `lease_expires_at` and `attempt`.
        let claim = Statements::new(None, "t_", Namespace::Idempotency).claim;
        assert!(claim.starts_with(&format!("(SELECT {} FROM ", col::NAMES.join(", "))));
        let fields = claim_row("f");
        assert!(claim.contains(&format!(
            "UNION ALL (SELECT {}) LIMIT 1",
            claim_row("\"t_idempotency_claim_v2\"").join(", ")
        )));
        assert_eq!(fields.len(), col::NAMES.len());
        assert!(fields[col::LEASE_EXPIRES_AT].starts_with("now() + $3"));
        assert_eq!(fields[col::ATTEMPT], "f($1, $2, $3, $4, $5, $6)");
        for (at, field) in fields.iter().enumerate() {
            if at != col::LEASE_EXPIRES_AT && at != col::ATTEMPT {
                assert_eq!(field, "NULL", "column {}", col::name(at));
            }
        }
        // The first branch reads only a record that stands: live, and completed or on a
        // live lease.
        let first = &claim[..claim.find("UNION ALL").unwrap()];
        assert!(first.contains(LIVE));
        assert!(first.contains("AND (state = 'completed' OR lease_expires_at > now())"));
        assert!(claim.ends_with("LIMIT 1"));
    }
}
