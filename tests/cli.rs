//! The `stent` binary against real stores: records are written through the library, listed,
//! shown, released, removed, purged and cleared through the command line, and the store is
//! checked through the library afterwards. SQLite always runs; every other backend runs when
//! its URL variable is set, and fails the run under `STENT_REQUIRE_BACKENDS=1` when it is not.
#![cfg(feature = "cli")]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use stent::{
    Claim, LeaseToken, ListQuery, Namespace, RecordMeta, RecordState, ResultStore, Status, Stent,
    codec,
};

// ---- running the binary ----

/// What one run of the binary left behind.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `stent --store URL ARGS…` with no terminal on stdin, stdout or stderr.
fn stent(store: &str, args: &[&str]) -> Run {
    run(Command::new(env!("CARGO_BIN_EXE_stent"))
        .env_remove("STENT_STORE")
        .arg("--store")
        .arg(store)
        .args(args))
}

fn run(cmd: &mut Command) -> Run {
    let out = cmd
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("the stent binary starts");
    Run {
        code: out.status.code().expect("the stent binary exits"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

impl Run {
    /// Asserts success with nothing on stderr (no progress without a terminal).
    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "{self:?}");
        assert_eq!(self.stderr, "", "{self:?}");
        self
    }

    fn json(self) -> Value {
        let run = self.ok();
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:?}"))
    }

    /// Asserts exit status 1 and a single `error: …` line containing `needle`.
    fn error(self, needle: &str) -> Self {
        assert_eq!(self.code, 1, "{self:?}");
        assert_eq!(self.stdout, "", "{self:?}");
        assert!(self.stderr.starts_with("error: "), "{self:?}");
        assert!(self.stderr.ends_with('\n'), "{self:?}");
        assert_eq!(self.stderr.lines().count(), 1, "{self:?}");
        assert!(
            self.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "expected {needle:?} in {self:?}"
        );
        assert!(!self.stderr.contains("panicked"), "{self:?}");
        assert!(!self.stderr.contains("backtrace"), "{self:?}");
        self
    }
}

// ---- stores under test ----

/// A store the binary reaches by URL and the test reaches through the library.
struct Target {
    label: &'static str,
    url: String,
    store: Arc<dyn ResultStore>,
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    fn cli(&self, args: &[&str]) -> Run {
        stent(&self.url, args)
    }

    /// Whether an expired record stays until purged. Redis deletes a record the moment it
    /// expires (its default, no `expiry_grace`): nothing expired is left to list or purge.
    fn keeps_expired(&self) -> bool {
        !self.label.starts_with("redis")
    }

    async fn keys(&self, ns: Namespace) -> Vec<String> {
        let query = ListQuery::new().limit(10_000).include_expired(true);
        let page = self.store.list(ns, &query).await.unwrap();
        page.records.into_iter().map(|r| r.key).collect()
    }
}

#[allow(dead_code)]
fn url_from_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) => Some(url),
        Err(_) if std::env::var("STENT_REQUIRE_BACKENDS").is_ok_and(|v| v == "1") => {
            panic!("{var} is not set and STENT_REQUIRE_BACKENDS=1")
        }
        Err(_) => {
            eprintln!("SKIPPED: {var} is not set");
            None
        }
    }
}

/// A name no other test, process or earlier run uses.
fn unique(label: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!(
        "cli_{label}_{}_{}_{}",
        std::process::id(),
        nanos.subsec_nanos() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

async fn sqlite_target(table_prefix: &str) -> Target {
    let dir = tempfile::tempdir().unwrap();
    let mut url = format!("sqlite://{}", dir.path().join("stent.db").display());
    if !table_prefix.is_empty() {
        url.push_str(&format!("?table_prefix={table_prefix}"));
    }
    Target {
        label: "sqlite",
        store: stent::connect(&url).await.unwrap(),
        url,
        _dir: Some(dir),
    }
}

#[cfg(feature = "postgres")]
async fn postgres_target(private: bool) -> Option<Target> {
    let url = url_from_env("STENT_POSTGRES_URL")?;
    if !private {
        let store = stent::connect(&url).await.unwrap();
        return Some(Target {
            label: "postgres",
            url,
            store,
            _dir: None,
        });
    }
    // A schema of its own, named in the URL as the binary takes it.
    let schema = unique("pg");
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{sep}schema={schema}");
    Some(Target {
        label: "postgres",
        store: stent::connect(&url).await.unwrap(),
        url,
        _dir: None,
    })
}

#[cfg(feature = "postgres")]
async fn drop_postgres_schema(target: &Target) {
    let url = std::env::var("STENT_POSTGRES_URL").unwrap();
    let schema = target.url.rsplit("schema=").next().unwrap();
    let store = stent::PostgresStore::connect(&url).await.unwrap();
    // The schema name is one of `unique`'s: letters, digits and underscores.
    let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(store.pool())
        .await
        .unwrap();
}

#[cfg(feature = "redis")]
async fn redis_target(var: &str, label: &'static str) -> Option<Target> {
    let url = url_from_env(var)?;
    Some(Target {
        label,
        store: stent::connect(&url).await.unwrap(),
        url,
        _dir: None,
    })
}

/// A key prefix of its own on the server or cluster in `var`, named in the URL as the
/// binary takes it (`?prefix=`), so that `clear` and `purge` see this test's records only.
#[cfg(feature = "redis")]
async fn private_redis_target(var: &str, label: &'static str) -> Option<Target> {
    let base = url_from_env(var)?;
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}prefix={}", unique("redis"));
    Some(Target {
        label,
        store: stent::connect(&url).await.unwrap(),
        url,
        _dir: None,
    })
}

/// A key prefix of its own in a shared table.
#[cfg(feature = "dynamodb")]
async fn dynamodb_target() -> Option<Target> {
    let endpoint = url_from_env("STENT_DYNAMODB_URL")?;
    let table = "stent-cli-test";
    let base = format!("dynamodb://{table}?endpoint={endpoint}&region=us-east-1");
    stent::DynamoDbStore::connect(&base)
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
    let url = format!("{base}&prefix={}", unique("ddb"));
    Some(Target {
        label: "dynamodb",
        store: stent::connect(&url).await.unwrap(),
        url,
        _dir: None,
    })
}

// ---- what the stores hold ----

/// The keys `populate` wrote, all starting with one prefix.
struct Keys {
    /// A cached value, live for an hour.
    rates: String,
    /// A cached value that has expired, not purged.
    stale: String,
    /// A completed idempotency record.
    charge: String,
    /// An idempotency record holding a stored error.
    declined: String,
    /// An in-progress idempotency record with a live lease.
    stuck: String,
}

/// Writes one record of every kind, with keys starting with `p`, the way applications do.
async fn populate(store: &Arc<dyn ResultStore>, p: &str) -> Keys {
    let stent = Stent::from_arc(store.clone());
    let rates = stent
        .durable(format!("{p}fx::rates"))
        .cached()
        .ttl(Duration::from_secs(3600))
        .wrap(|date: String| async move { Ok::<_, std::convert::Infallible>(vec![(date, 1.08)]) });
    let rates = rates.call_traced("2026-11-28".into()).await.unwrap();
    assert_eq!(rates.outcome.status, Status::Executed);

    let charge = stent
        .durable(format!("{p}billing::charge"))
        .idempotent()
        .version("v1")
        .wrap(|(order, amount): (String, u64)| async move {
            Ok::<_, std::convert::Infallible>(format!("receipt-{order}-{amount}"))
        });
    let charge = charge.call_traced(("ord-1".into(), 500)).await.unwrap();

    let declined = stent
        .durable(format!("{p}billing::charge_declined"))
        .idempotent()
        .wrap(|order: String| async move { Err::<String, _>(format!("card declined: {order}")) })
        .store_errors_if(|_| true);
    let err = declined.call("ord-2".into()).await.unwrap_err();
    assert_eq!(
        err.function_error().map(String::as_str),
        Some("card declined: ord-2")
    );
    let declined = declined.key_for(&"ord-2".into()).unwrap();

    let stuck = format!("{p}stuck|None|[\"job-9\"]");
    let token = LeaseToken::generate();
    let claim = Claim {
        token: &token,
        lease: Duration::from_secs(600),
        meta: RecordMeta {
            function: Some("stuck"),
            ..RecordMeta::default()
        },
    };
    store
        .claim(Namespace::Idempotency, &stuck, &claim)
        .await
        .unwrap();

    let stale = format!("{p}old");
    let value = codec::encode_value(&7).unwrap();
    store
        .put(
            Namespace::Cache,
            &stale,
            &value,
            Some(Duration::from_millis(1)),
            RecordMeta::default(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    Keys {
        rates: rates.outcome.key,
        stale,
        charge: charge.outcome.key,
        declined,
        stuck,
    }
}

fn keys_of(doc: &Value) -> Vec<&str> {
    doc["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect()
}

// ---- scenarios ----

/// `ls`, `show`, `release` and `rm` on records under a prefix only this test uses.
async fn records_are_listed_shown_released_and_removed(t: &Target) {
    let p = format!("{}:", unique(t.label));
    let k = populate(&t.store, &p).await;
    let label = t.label;

    // ls: live records only, unless --all.
    let doc = t.cli(&["cache", "ls", "--prefix", &p, "--json"]).json();
    assert_eq!(keys_of(&doc), [k.rates.as_str()], "{label}");
    assert_eq!(doc["namespace"], "cache");
    assert_eq!(doc["more"], false);
    assert_eq!(doc["records"][0]["state"], "completed");
    assert_eq!(doc["records"][0]["function"], format!("{p}fx::rates"));
    let doc = t
        .cli(&["--json", "cache", "ls", "--all", "--prefix", &p])
        .json();
    if t.keeps_expired() {
        let mut both = vec![k.rates.as_str(), k.stale.as_str()];
        both.sort_unstable();
        assert_eq!(keys_of(&doc), both, "{label}");
        let stale =
            &doc["records"].as_array().unwrap()[both.iter().position(|&x| x == k.stale).unwrap()];
        assert_eq!(stale["expired"], true, "{label}");
    } else {
        assert_eq!(
            keys_of(&doc),
            [k.rates.as_str()],
            "{label}: deleted when it expired"
        );
    }

    let mut idem = vec![k.charge.as_str(), k.declined.as_str(), k.stuck.as_str()];
    idem.sort_unstable();
    let doc = t
        .cli(&["idempotency", "ls", "--prefix", &p, "--json"])
        .json();
    assert_eq!(keys_of(&doc), idem, "{label}");
    let doc = t
        .cli(&[
            "idempotency",
            "ls",
            "--prefix",
            &p,
            "--limit",
            "2",
            "--json",
        ])
        .json();
    assert_eq!(keys_of(&doc), idem[..2], "{label}");
    assert_eq!(doc["more"], true, "{label}");

    // The table: a header, one aligned row per record, states in words.
    let table = t.cli(&["idempotency", "ls", "--prefix", &p]).ok().stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{label}: {table}");
    assert!(lines[0].starts_with("KEY "), "{table}");
    let state_at = lines[0].find("STATE").unwrap();
    for (line, key) in lines[1..].iter().zip(&idem) {
        assert!(line.starts_with(key), "{label}: {table}");
        assert!(
            line.len() > state_at && line.is_char_boundary(state_at),
            "{table}"
        );
    }
    let row = |key: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(key))
            .unwrap()
            .to_owned()
    };
    assert!(
        row(&k.charge)[state_at..].starts_with("completed"),
        "{table}"
    );
    assert!(
        row(&k.declined)[state_at..].starts_with("stored error"),
        "{table}"
    );
    assert!(
        row(&k.stuck)[state_at..].starts_with("in progress"),
        "{table}"
    );
    assert_eq!(
        t.cli(&["cache", "ls", "--prefix", &format!("{p}nothing")])
            .ok()
            .stdout,
        format!("no cache records with a key starting with \"{p}nothing\"\n")
    );

    // show: every field, the value decoded.
    let doc = t.cli(&["cache", "show", &k.rates, "--json"]).json();
    assert_eq!(doc["value"], json!([["2026-11-28", 1.08]]), "{label}");
    assert_eq!(doc["namespace"], "cache");
    assert_eq!(doc["state"], "completed");
    assert_eq!(doc["attempt"], 1);
    assert_eq!(doc["size"], 1 + r#"[["2026-11-28",1.08]]"#.len());
    assert!(doc["expires_at"].as_str().unwrap().ends_with('Z'), "{doc}");
    let page = t.cli(&["cache", "show", &k.rates]).ok().stdout;
    for needle in [
        "state      completed",
        &format!("function   {p}fx::rates"),
        "attempt    1",
        "value:\n  [\n    [\n      \"2026-11-28\",\n      1.08\n    ]\n  ]\n",
    ] {
        assert!(page.contains(needle), "{label}: {needle:?} in\n{page}");
    }
    let doc = t.cli(&["idempotency", "show", &k.charge, "--json"]).json();
    assert_eq!(doc["value"], "receipt-ord-1-500");
    assert_eq!(doc["version"], "v1");
    let doc = t
        .cli(&["idempotency", "show", &k.declined, "--json"])
        .json();
    assert_eq!(doc["error"], "card declined: ord-2", "{label}: {doc}");
    assert_eq!(doc["stored_error"], true);
    assert!(doc.get("value").is_none(), "{doc}");
    let page = t.cli(&["idempotency", "show", &k.declined]).ok().stdout;
    assert!(
        page.contains("stored error:\n  \"card declined: ord-2\"\n"),
        "{page}"
    );
    let doc = t.cli(&["idempotency", "show", &k.stuck, "--json"]).json();
    assert_eq!(doc["state"], "in_progress", "{label}: {doc}");
    assert_eq!(doc["lease_lapsed"], false);
    assert_eq!(doc["size"], Value::Null);
    assert!(doc["lease_expires_at"].is_string(), "{doc}");
    if t.keeps_expired() {
        let doc = t.cli(&["cache", "show", &k.stale, "--json"]).json();
        assert_eq!(
            doc["expired"], true,
            "{label}: an expired record is still shown"
        );
    } else {
        t.cli(&["cache", "show", &k.stale])
            .error(&format!("no record with key {:?} in cache", k.stale));
    }

    // release: only an in-progress record, only when confirmed.
    t.cli(&["idempotency", "release", &k.charge, "--yes"])
        .error("is completed, not in progress");
    t.cli(&["idempotency", "release", &k.stuck])
        .error("without confirmation: stdin is not a terminal (pass --yes)");
    let still = t.store.get(Namespace::Idempotency, &k.stuck).await.unwrap();
    assert_eq!(still.unwrap().state, RecordState::InProgress, "{label}");
    let doc = t
        .cli(&["idempotency", "release", &k.stuck, "--yes", "--json"])
        .json();
    assert_eq!(doc["released"], true);
    assert!(
        t.store
            .get(Namespace::Idempotency, &k.stuck)
            .await
            .unwrap()
            .is_none()
    );
    t.cli(&["idempotency", "release", &k.stuck, "--yes"])
        .error(&format!("no record with key {:?} in idempotency", k.stuck));

    // rm --function: every record of the function, not of one whose name extends it.
    let charge_fn = format!("{p}billing::charge");
    t.cli(&["idempotency", "rm", "--function", &charge_fn])
        .error("refusing to delete");
    let doc = t
        .cli(&[
            "-y",
            "--json",
            "idempotency",
            "rm",
            "--function",
            &charge_fn,
            "--version",
            "v2",
        ])
        .json();
    assert_eq!(doc["deleted"], 0);
    let doc = t
        .cli(&[
            "-y",
            "--json",
            "idempotency",
            "rm",
            "--function",
            &charge_fn,
        ])
        .json();
    assert_eq!(
        (doc["deleted"].as_u64(), doc["function"].as_str()),
        (Some(1), Some(charge_fn.as_str()))
    );
    for (key, kept) in [(&k.charge, false), (&k.declined, true)] {
        let found = t.store.get(Namespace::Idempotency, key).await.unwrap();
        assert_eq!(found.is_some(), kept, "{key}");
    }

    // rm: refused without confirmation, then gone; a second rm says so.
    t.cli(&["cache", "rm", &k.rates])
        .error("refusing to delete");
    assert!(
        t.store
            .get(Namespace::Cache, &k.rates)
            .await
            .unwrap()
            .is_some()
    );
    let out = t.cli(&["cache", "rm", &k.rates, "-y"]).ok().stdout;
    assert_eq!(out, format!("deleted cache record {:?}\n", k.rates));
    assert!(
        t.store
            .get(Namespace::Cache, &k.rates)
            .await
            .unwrap()
            .is_none()
    );
    t.cli(&["cache", "rm", &k.rates, "--yes"])
        .error(&format!("no record with key {:?} in cache", k.rates));
    t.cli(&["cache", "show", &k.rates])
        .error(&format!("no record with key {:?} in cache", k.rates));
    // The other namespace is another keyspace.
    t.cli(&["cache", "rm", &k.charge, "--yes"])
        .error("no record with key");
    if t.keeps_expired() {
        let doc = t.cli(&["--yes", "--json", "cache", "rm", &k.stale]).json();
        assert_eq!(doc["deleted"], true);
    }
    t.cli(&["idempotency", "rm", &k.declined, "--yes"]).ok();
    assert_eq!(
        keys_of(
            &t.cli(&["idempotency", "ls", "--all", "--prefix", &p, "--json"])
                .json()
        ),
        Vec::<&str>::new()
    );
    assert_eq!(
        keys_of(
            &t.cli(&["cache", "ls", "--all", "--prefix", &p, "--json"])
                .json()
        ),
        Vec::<&str>::new()
    );
}

/// `stats`, `purge` and `clear` on a store nobody else uses.
async fn whole_namespaces_are_counted_purged_and_cleared(t: &Target) {
    let label = t.label;
    for ns in Namespace::ALL {
        assert_eq!(
            t.keys(ns).await,
            Vec::<String>::new(),
            "{label}: a fresh store"
        );
    }
    let k = populate(&t.store, "").await;
    let value = codec::encode_value(&"fresh").unwrap();
    for i in 0..3 {
        t.store
            .put(
                Namespace::Cache,
                &format!("live-{i}"),
                &value,
                None,
                RecordMeta::default(),
            )
            .await
            .unwrap();
    }
    let bytes_of = async |ns: Namespace| {
        let query = ListQuery::new().limit(10_000).include_expired(true);
        let page = t.store.list(ns, &query).await.unwrap();
        page.records
            .iter()
            .map(|r| r.value.as_ref().map_or(0, Vec::len))
            .sum::<usize>()
    };
    let (cache_bytes, idem_bytes) = (
        bytes_of(Namespace::Cache).await,
        bytes_of(Namespace::Idempotency).await,
    );

    let doc = t.cli(&["stats", "--json"]).json();
    let expired = usize::from(t.keeps_expired());
    assert_eq!(
        doc["namespaces"]["cache"],
        json!({"records": 4 + expired, "completed": 4, "stored_errors": 0, "in_progress": 0,
               "lease_lapsed": 0, "expired": expired, "value_bytes": cache_bytes}),
        "{label}"
    );
    assert_eq!(
        doc["namespaces"]["idempotency"],
        json!({"records": 3, "completed": 1, "stored_errors": 1, "in_progress": 1,
               "lease_lapsed": 0, "expired": 0, "value_bytes": idem_bytes}),
        "{label}"
    );
    assert_eq!(doc["total"]["records"], 7 + expired);
    let table = t.cli(&["stats"]).ok().stdout;
    assert!(table.contains("NAMESPACE"), "{table}");
    for name in ["idempotency ", "cache ", "total "] {
        assert!(
            table.lines().any(|l| l.starts_with(name)),
            "{name} in {table}"
        );
    }

    // purge: only what has expired.
    let doc = t.cli(&["cache", "purge", "--yes", "--json"]).json();
    assert_eq!(doc["purged"], expired, "{label}");
    let mut live = vec![
        k.rates.clone(),
        "live-0".into(),
        "live-1".into(),
        "live-2".into(),
    ];
    live.sort_unstable();
    assert_eq!(t.keys(Namespace::Cache).await, live, "{label}");
    assert_eq!(
        t.cli(&["idempotency", "purge", "--yes"]).ok().stdout,
        "purged 0 expired idempotency records\n"
    );

    // clear: refused without confirmation, then one namespace only.
    t.cli(&["cache", "clear"])
        .error("refusing to delete every cache record");
    assert_eq!(t.keys(Namespace::Cache).await.len(), 4, "{label}");
    let doc = t.cli(&["cache", "clear", "--yes", "--json"]).json();
    assert_eq!(doc["deleted"], 4, "{label}");
    assert_eq!(t.keys(Namespace::Cache).await, Vec::<String>::new());
    assert_eq!(t.keys(Namespace::Idempotency).await.len(), 3, "{label}");
    assert_eq!(
        t.cli(&["idempotency", "clear", "--yes"]).ok().stdout,
        "deleted 3 idempotency records\n"
    );
    assert_eq!(t.keys(Namespace::Idempotency).await, Vec::<String>::new());
    let doc = t.cli(&["stats", "--json"]).json();
    assert_eq!(doc["total"]["records"], 0, "{label}");
    let _ = k;
}

// ---- SQLite: always ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_records_are_listed_shown_released_and_removed() {
    records_are_listed_shown_released_and_removed(&sqlite_target("").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_namespaces_are_counted_purged_and_cleared() {
    whole_namespaces_are_counted_purged_and_cleared(&sqlite_target("app_").await).await;
}

/// The guide's "View Cache Contents" query still reads the file the CLI worked on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_sql_query_reads_the_file_after_cli_operations() {
    let t = sqlite_target("").await;
    let k = populate(&t.store, "").await;
    t.cli(&["cache", "ls"]).ok();
    t.cli(&["cache", "show", &k.rates]).ok();
    t.cli(&["stats"]).ok();
    t.cli(&["cache", "purge", "--yes"]).ok();
    t.cli(&["idempotency", "release", &k.stuck, "--yes"]).ok();
    let path = t._dir.as_ref().unwrap().path().join("stent.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT key, created_at FROM cache")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, k.rates);
    assert_eq!(rows[0].0, r#"fx::rates|None|["2026-11-28"]"#);
    t.cli(&["cache", "clear", "--yes"]).ok();
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT key, created_at FROM cache")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(rows.is_empty(), "{rows:?}");
    let left: Vec<(String, String)> = sqlx::query_as("SELECT key, state FROM idempotency")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left.len(), 2, "{left:?}");
}

/// Listing, counting and purging walk a namespace page by page, past the page size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_records_are_listed_counted_and_purged_page_by_page() {
    let t = sqlite_target("").await;
    let value = codec::encode_value(&0).unwrap();
    for i in 0..2400 {
        let ttl = (i % 2 == 1).then_some(Duration::from_millis(1));
        t.store
            .put(
                Namespace::Cache,
                &format!("k{i:05}"),
                &value,
                ttl,
                RecordMeta::default(),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let doc = t.cli(&["cache", "ls", "--limit", "0", "--json"]).json();
    assert_eq!(doc["records"].as_array().unwrap().len(), 1200);
    assert_eq!(doc["more"], false);
    let doc = t
        .cli(&["cache", "ls", "--limit", "1100", "--all", "--json"])
        .json();
    let keys = keys_of(&doc);
    assert_eq!(keys.len(), 1100);
    assert_eq!((keys[0], keys[1099]), ("k00000", "k01099"));
    assert_eq!(doc["more"], true);
    let doc = t.cli(&["stats", "--json"]).json();
    assert_eq!(doc["namespaces"]["cache"]["records"], 2400);
    assert_eq!(doc["namespaces"]["cache"]["expired"], 1200);
    assert_eq!(
        doc["namespaces"]["cache"]["value_bytes"],
        2400 * value.len()
    );
    let doc = t.cli(&["cache", "purge", "--yes", "--json"]).json();
    assert_eq!(doc["purged"], 1200);
    assert_eq!(t.keys(Namespace::Cache).await.len(), 1200);
}

// ---- the other backends, when their URLs are set ----

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_records_are_listed_shown_released_and_removed() {
    if let Some(t) = postgres_target(false).await {
        records_are_listed_shown_released_and_removed(&t).await;
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_namespaces_are_counted_purged_and_cleared() {
    if let Some(t) = postgres_target(true).await {
        whole_namespaces_are_counted_purged_and_cleared(&t).await;
        drop_postgres_schema(&t).await;
    }
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_records_are_listed_shown_released_and_removed() {
    if let Some(t) = redis_target("STENT_REDIS_URL", "redis").await {
        records_are_listed_shown_released_and_removed(&t).await;
    }
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_records_are_listed_shown_released_and_removed() {
    if let Some(t) = redis_target("STENT_REDIS_CLUSTER_URL", "redis_cluster").await {
        records_are_listed_shown_released_and_removed(&t).await;
    }
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_namespaces_are_counted_purged_and_cleared() {
    if let Some(t) = private_redis_target("STENT_REDIS_URL", "redis").await {
        whole_namespaces_are_counted_purged_and_cleared(&t).await;
    }
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_namespaces_are_counted_purged_and_cleared() {
    if let Some(t) = private_redis_target("STENT_REDIS_CLUSTER_URL", "redis_cluster").await {
        whole_namespaces_are_counted_purged_and_cleared(&t).await;
    }
}

#[cfg(feature = "dynamodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_records_are_listed_shown_released_and_removed() {
    if let Some(t) = dynamodb_target().await {
        records_are_listed_shown_released_and_removed(&t).await;
    }
}

#[cfg(feature = "dynamodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_namespaces_are_counted_purged_and_cleared() {
    if let Some(t) = dynamodb_target().await {
        whole_namespaces_are_counted_purged_and_cleared(&t).await;
    }
}

// ---- bad input ----

#[test]
fn usage_errors_exit_with_status_2() {
    for args in [
        &[][..],
        &["cache"],
        &["cache", "bogus"],
        &["cache", "show"],
        &["cache", "rm"],
        &["cache", "rm", "k", "--function", "f"],
        &["cache", "rm", "--version", "v1"],
        &["cache", "ls", "--limit", "many"],
        &["cache", "release", "k"],
        &["stats", "--unknown"],
    ] {
        let out = run(Command::new(env!("CARGO_BIN_EXE_stent"))
            .env_remove("STENT_STORE")
            .args(args));
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert_eq!(out.stdout, "", "{args:?}");
        assert!(
            out.stderr.starts_with("error: ") || out.stderr.contains("Usage: stent"),
            "{args:?}: {out:?}"
        );
    }
    let help = run(Command::new(env!("CARGO_BIN_EXE_stent")).arg("--help")).ok();
    assert!(help.stdout.contains("idempotency"), "{help:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_is_one_line_and_status_1() {
    let t = sqlite_target("").await;
    for ns in ["cache", "idempotency"] {
        for command in ["show", "rm"] {
            t.cli(&[ns, command, "no\nsuch key", "--yes"])
                .error(&format!("no record with key \"no\\nsuch key\" in {ns}"));
        }
    }
    t.cli(&["idempotency", "release", "nope", "--yes", "--json"])
        .error("no record with key \"nope\" in idempotency");
}

#[test]
fn bad_store_urls_are_one_line_errors_without_secrets() {
    for (url, needle) in [
        (
            "mongodb://u:hunter2@localhost/x",
            "unknown store URL scheme \"mongodb\"",
        ),
        ("no-scheme", "not a store URL"),
        ("postgres://u:hunter2@127.0.0.1:1/db", "postgres"),
        ("postgres://u:hunter2@[::1/db", "postgres"),
        ("redis://:hunter2@127.0.0.1:1", "redis"),
        ("redis+cluster://:hunter2@127.0.0.1:1,127.0.0.1:2", "redis"),
        (
            "dynamodb://stent?endpoint=http://127.0.0.1:1&region=us-east-1",
            "dynamodb",
        ),
        ("sqlite://", "names no file"),
    ] {
        let out = stent(url, &["cache", "ls"]).error(needle);
        assert!(!out.stderr.contains("hunter2"), "{out:?}");
        let out = run(Command::new(env!("CARGO_BIN_EXE_stent"))
            .args(["--json", "stats"])
            .env("STENT_STORE", url)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "hunter2"))
        .error(needle);
        assert!(!out.stderr.contains("hunter2"), "{out:?}");
    }
}

#[test]
fn a_missing_sqlite_file_is_reported_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.db");
    let url = format!("sqlite://{}", path.display());
    stent(&url, &["cache", "ls"]).error("no SQLite database at");
    assert!(!path.exists());
}

/// Commands of every kind, reading and deleting, run against stores whose tables are not there.
const EVERY_COMMAND: [&[&str]; 9] = [
    &["cache", "ls"],
    &["idempotency", "ls", "--json"],
    &["cache", "show", "k"],
    &["stats"],
    &["progress", "exec-1"],
    &["cache", "rm", "k", "--yes"],
    &["idempotency", "release", "k", "--yes"],
    &["cache", "purge", "--yes"],
    &["idempotency", "clear", "--yes"],
];

/// The tables of a SQLite file and its journal mode, read on a connection of its own.
async fn sqlite_layout(path: &std::path::Path) -> (Vec<String>, String) {
    use sqlx::Connection as _;

    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    let tables = sqlx::query_scalar("SELECT name FROM sqlite_master ORDER BY name")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let mode = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    (tables, mode)
}

/// An application's own database (rollback journal, no stent tables) read with a table
/// prefix: every command fails, and the file keeps its tables and its journal mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_without_the_prefixed_tables_is_an_error_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    sqlx::query("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let before = sqlite_layout(&path).await;
    assert_eq!(before, (vec!["orders".to_owned()], "delete".to_owned()));

    let url = format!("sqlite://{}?table_prefix=clifix_typo_", path.display());
    for args in EVERY_COMMAND {
        stent(&url, args).error(&format!(
            "no stent tables clifix_typo_idempotency, clifix_typo_cache, clifix_typo_progress in {}",
            path.display()
        ));
    }
    assert_eq!(sqlite_layout(&path).await, before);
}

/// A stent store's file read with a mistyped table prefix: an error that names the tables
/// looked for, and no table created beside the store's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_sqlite_table_prefix_is_an_error_that_creates_nothing() {
    let t = sqlite_target("clifix_app_").await;
    let path = t._dir.as_ref().unwrap().path().join("stent.db");
    let before = sqlite_layout(&path).await;
    let url = t.url.replace("clifix_app_", "clifix_apq_");
    for args in EVERY_COMMAND {
        stent(&url, args).error(&format!(
            "no stent tables clifix_apq_idempotency, clifix_apq_cache, clifix_apq_progress in {}",
            path.display()
        ));
    }
    assert_eq!(sqlite_layout(&path).await, before);
    t.cli(&["cache", "ls"]).ok();
}

/// A mistyped schema, and a mistyped table prefix in an existing schema: errors, and no
/// schema or table created.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_postgres_schema_or_table_prefix_is_an_error_that_creates_nothing() {
    let Some(base) = url_from_env("STENT_POSTGRES_URL") else {
        return;
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    let schema = format!("clifix_{}", unique("pg"));
    let typo = format!("{schema}_typo");
    // The schema of a store, made by the library as an application makes it.
    let store = stent::PostgresStore::connect(&format!("{base}{sep}schema={schema}"))
        .await
        .unwrap();
    let pool = store.pool();

    let mistyped_schema = format!("{base}{sep}schema={typo}");
    let mistyped_prefix = format!("{base}{sep}schema={schema}&table_prefix=clifix_typo_");
    let mut runs = Vec::new();
    for args in EVERY_COMMAND {
        runs.push((
            stent(&mistyped_schema, args),
            format!("no stent tables {typo}.idempotency, {typo}.cache, {typo}.progress in "),
        ));
        runs.push((
            stent(&mistyped_prefix, args),
            format!("no stent tables {schema}.clifix_typo_idempotency, "),
        ));
    }
    let schema_made: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(&typo)
            .fetch_one(pool)
            .await
            .unwrap();
    let tables_made: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
         WHERE table_schema = $1 AND table_name LIKE 'clifix_typo_%')",
    )
    .bind(&schema)
    .fetch_one(pool)
    .await
    .unwrap();
    for name in [&schema, &typo] {
        // The names are `unique`'s: letters, digits and underscores.
        let sql = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .unwrap();
    }
    for (run, needle) in runs {
        run.error(&needle);
    }
    assert!(!schema_made, "the CLI created schema {typo}");
    assert!(!tables_made, "the CLI created tables in schema {schema}");
}

/// `stent progress ID` shows an execution's steps as `Stent::state_of` reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_shows_each_step_of_an_execution() {
    let t = sqlite_target("").await;
    let stent = stent::Stent::from_arc(t.store.clone());
    let compute = stent
        .durable("expensive_computation")
        .cached()
        .wrap(|h: String| async move { Ok::<_, std::convert::Infallible>(h.len()) });
    stent
        .run_execution("exec-7", async {
            compute.call("hash-1".into()).await.unwrap();
            compute.call("hash-1".into()).await.unwrap();
        })
        .await;
    let doc = t.cli(&["--json", "progress", "exec-7"]).json();
    let statuses: Vec<_> = doc["progress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["step"].as_str().unwrap(), p["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("expensive_computation", "executed"),
            ("expensive_computation", "cache_hit")
        ]
    );
    let table = t.cli(&["progress", "exec-7"]).ok().stdout;
    assert!(
        table.contains("cache_hit") && table.contains("expensive_computation"),
        "{table}"
    );
    let missing = t.cli(&["progress", "exec-unknown"]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert_eq!(missing.stderr.lines().count(), 1, "{missing:?}");
}
