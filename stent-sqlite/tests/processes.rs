//! Several processes sharing one database file keep every guarantee.

use std::convert::Infallible;
use std::process::Command;
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
                tokio::time::sleep(Duration::from_millis(200)).await;
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
        println!("RESULT {} {}", t.outcome.status, t.value);
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
    let start = now_ms() + 1500;
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
                .output()
        })
        .collect();
    let mut results = Vec::new();
    for child in children {
        let out = child.unwrap();
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
    let values: std::collections::HashSet<_> = results
        .iter()
        .map(|r| r.split_once(' ').unwrap().1)
        .collect();
    assert_eq!(
        values.len(),
        1,
        "every caller gets the same value: {values:?}"
    );
    let executed = results
        .iter()
        .filter(|r| r.starts_with(Status::Executed.as_str()))
        .count();
    assert_eq!(executed, 1, "{results:#?}");
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM ledger")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1, "the closure ran exactly once across all processes");
}
