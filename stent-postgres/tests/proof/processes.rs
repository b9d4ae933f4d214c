//! 64 callers on one key, spread over 4 processes sharing the database: the wrapped
//! closure runs exactly once, counted in a side table by the closure itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::AssertSqlSafe;
use stent_core::{Status, Stent};
use stent_postgres::PostgresStore;

use crate::support;

const PROCESSES: usize = 4;
const CALLERS_PER_PROCESS: usize = 16;
/// Set in a child process: the schema the parent prepared.
const CHILD_SCHEMA: &str = "STENT_PG_PROOF_CHILD_SCHEMA";
const TEST: &str = "sixty_four_callers_over_four_processes_run_the_closure_once";

/// This test's name as the test harness knows it (`processes::…`), for the children.
fn test_path() -> String {
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    format!("{module}::{TEST}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_callers_over_four_processes_run_the_closure_once() {
    if let Ok(schema) = std::env::var(CHILD_SCHEMA) {
        return child(&schema).await;
    }
    let Some(url) = support::url_or_skip(TEST) else {
        return;
    };
    support::sweep_old_schemas(&url).await;
    let schema = support::schema_for(&format!("procs{}", std::process::id()));
    let store = PostgresStore::builder()
        .url(url.as_str())
        .schema(schema.as_str())
        .unwrap()
        .build()
        .await
        .unwrap();
    let pool = store.pool();
    for ddl in [
        format!(
            "CREATE TABLE \"{schema}\".ledger (pid INTEGER NOT NULL, attempt INTEGER NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())"
        ),
        format!("CREATE TABLE \"{schema}\".ready (pid INTEGER NOT NULL)"),
        format!("CREATE TABLE \"{schema}\".go (at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())"),
    ] {
        sqlx::query(AssertSqlSafe(ddl)).execute(pool).await.unwrap();
    }

    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            tokio::process::Command::new(&exe)
                .args([
                    "--exact",
                    &test_path(),
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(CHILD_SCHEMA, &schema)
                .env(stent_postgres::ENV_URL, &url)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn a child process")
        })
        .collect();

    // Start every process's callers at the same moment, once all are connected.
    let started = Instant::now();
    loop {
        let ready: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM \"{schema}\".ready"
        )))
        .fetch_one(pool)
        .await
        .unwrap();
        if ready as usize == PROCESSES {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "children not ready: {ready}/{PROCESSES}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{schema}\".go DEFAULT VALUES"
    )))
    .execute(pool)
    .await
    .unwrap();

    let mut values = Vec::new();
    let mut executed = 0;
    for child in children {
        let out = child.wait_with_output().await.expect("child process ran");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("STENT-CHILD ").map(|(_, r)| r))
            .unwrap_or_else(|| panic!("child printed no result:\n{stdout}"));
        let (n, value) = line.split_once(' ').expect("`executed value`");
        executed += n.parse::<usize>().unwrap();
        values.push(value.to_owned());
    }
    let runs: Vec<(i32, i32)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT pid, attempt FROM \"{schema}\".ledger"
    )))
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        runs.len(),
        1,
        "the closure must run exactly once across processes: {runs:?}"
    );
    assert_eq!(runs[0].1, 1, "no takeover should have happened");
    assert_eq!(executed, 1, "exactly one caller reports having executed");
    values.dedup();
    assert_eq!(
        values.len(),
        1,
        "every process got the same result: {values:?}"
    );
    assert_eq!(values[0], format!("ord-1:charged-by-{}", runs[0].0));
}

/// One of the processes: 16 concurrent callers of the same idempotent function.
async fn child(schema: &str) {
    let url = support::url().unwrap();
    let store = PostgresStore::builder()
        .url(url)
        .schema(schema)
        .unwrap()
        .build()
        .await
        .unwrap();
    let pool = store.pool().clone();
    let pid = std::process::id() as i32;
    let ledger = format!("INSERT INTO \"{schema}\".ledger (pid, attempt) VALUES ($1, $2)");
    // One wrapper per caller: identical calls through one wrapper would share a single
    // trip to the store, and every one of the 64 callers must race at the store.
    let stent = Stent::new(store);
    let charge = || {
        let (pool, ledger) = (pool.clone(), ledger.clone());
        stent
            .durable("proof::charge")
            .idempotent()
            .wrap_with_context(move |order: String, exec| {
                let (pool, ledger) = (pool.clone(), ledger.clone());
                async move {
                    sqlx::query(AssertSqlSafe(ledger))
                        .bind(pid)
                        .bind(exec.attempt as i32)
                        .execute(&pool)
                        .await
                        .map_err(|e| e.to_string())?;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, String>(format!("{order}:charged-by-{pid}"))
                }
            })
    };
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&support::url().unwrap())
        .await
        .unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{schema}\".ready VALUES ($1)"
    )))
    .bind(pid)
    .execute(&mut conn)
    .await
    .unwrap();
    let started = Instant::now();
    loop {
        let go: bool = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM \"{schema}\".go)"
        )))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if go {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "never told to go"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(CALLERS_PER_PROCESS));
    let callers: Vec<_> = (0..CALLERS_PER_PROCESS)
        .map(|_| {
            let charge = charge();
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                charge.call_traced("ord-1".to_string()).await
            })
        })
        .collect();
    let mut executed = 0;
    let mut values = Vec::new();
    for c in callers {
        let t = c
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("caller failed: {e}"));
        if t.outcome.status == Status::Executed {
            executed += 1;
        }
        values.push(t.value);
    }
    values.dedup();
    assert_eq!(
        values.len(),
        1,
        "callers in one process disagree: {values:?}"
    );
    println!("STENT-CHILD {executed} {}", values[0]);
}
