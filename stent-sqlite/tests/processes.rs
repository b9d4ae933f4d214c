//! Several processes sharing one database file keep every guarantee.

use std::collections::HashSet;
use std::convert::Infallible;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stent_core::{Status, Stent};
use stent_sqlite::SqliteStore;

const CHILD_DB: &str = "STENT_SQLITE_CHILD_DB";
const CHILD_START_MS: &str = "STENT_SQLITE_CHILD_START_MS";
const PROCESSES: usize = 4;
const TASKS_PER_PROCESS: usize = 16;

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// One child: 16 concurrent callers on the shared key, released together at a common start time.
async fn child(path: String) {
    let start: u128 = std::env::var(CHILD_START_MS).unwrap().parse().unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    let pool = store.pool().clone();
    let charge = Stent::new(store)
        .durable("billing::charge_customer")
        .idempotent()
        .wrap(move |(order, amount): (String, u64)| {
            let pool = pool.clone();
            async move {
                // The ledger lives outside stent's tables: every execution leaves a row.
                sqlx::query("INSERT INTO ledger (pid, order_id) VALUES (?1, ?2)")
                    .bind(i64::from(std::process::id()))
                    .bind(&order)
                    .execute(&pool)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(1000)).await;
                Ok::<_, Infallible>(format!("{order}:{amount}:pid{}", std::process::id()))
            }
        });
    let wait = start.saturating_sub(now_ms());
    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    let tasks: Vec<_> = (0..TASKS_PER_PROCESS)
        .map(|_| {
            let charge = charge.clone();
            tokio::spawn(async move { charge.call_traced(("ord-1".into(), 500)).await })
        })
        .collect();
    for t in tasks {
        let t = t.await.unwrap().expect("call failed");
        println!(
            "RESULT {} {} {}",
            std::process::id(),
            t.outcome.status,
            t.value
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_callers_in_four_processes_execute_once() {
    if let Ok(path) = std::env::var(CHILD_DB) {
        child(path).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let store = SqliteStore::open(&path).await.unwrap();
    sqlx::query("CREATE TABLE ledger (pid INTEGER NOT NULL, order_id TEXT NOT NULL)")
        .execute(store.pool())
        .await
        .unwrap();
    // Children start together at a common instant, so they really overlap.
    let start = now_ms() + 3000;
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "sixty_four_callers_in_four_processes_execute_once",
                    "--nocapture",
                ])
                .env(CHILD_DB, &path)
                .env(CHILD_START_MS, start.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("child process starts")
        })
        .collect();
    let mut results = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        results.extend(
            stdout
                .lines()
                .filter_map(|l| l.strip_prefix("RESULT "))
                .map(str::to_owned),
        );
    }
    assert_eq!(results.len(), PROCESSES * TASKS_PER_PROCESS);
    let parsed: Vec<(&str, &str, &str)> = results
        .iter()
        .map(|r| {
            let mut parts = r.splitn(3, ' ');
            (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            )
        })
        .collect();
    let values: HashSet<_> = parsed.iter().map(|p| p.2).collect();
    assert_eq!(
        values.len(),
        1,
        "every caller gets the same value: {values:?}"
    );
    let executed: Vec<_> = parsed
        .iter()
        .filter(|p| p.1 == Status::Executed.as_str())
        .collect();
    assert_eq!(executed.len(), 1, "{results:#?}");
    let owner = executed[0].0;
    // Callers in other processes waited on the running execution: the processes overlapped.
    let joined_elsewhere: HashSet<_> = parsed
        .iter()
        .filter(|p| p.0 != owner && p.1 == Status::Joined.as_str())
        .map(|p| p.0)
        .collect();
    assert!(
        !joined_elsewhere.is_empty(),
        "no other process overlapped: {results:#?}"
    );
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM ledger")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1, "the closure ran exactly once across all processes");
}
