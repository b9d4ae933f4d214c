//! 8 processes × 64 tasks, every task a caller of its own, over 200 keys: each key is
//! executed exactly once, and every caller of a key gets that execution's value.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use stent_reliability::harness::start_together;
use stent_reliability::job::{Shape, value_of};
use stent_reliability::{Backend, Task, Worker};

use crate::support::{self, PATIENCE, WORKER, figure};

const PROCESSES: usize = 8;
const TASKS: usize = 64;
const KEYS: usize = 200;
/// The default: no process dies here, and a busy server must not look like a dead owner.
const LEASE: Duration = stent_core::DEFAULT_LEASE;
/// How long one execution takes: long enough for other callers to find it in flight.
const WORK_MS: u64 = 5;

/// `calls_per_task`: `None` for every task calling every key (102,400 calls); `Some(n)`
/// for `n` keys per task dealt from a deck holding every key equally often.
async fn every_key_runs_once(backend: Backend, calls_per_task: Option<usize>) {
    let test = format!("{}_8_processes_run_each_of_200_keys_once", backend.name());
    let Some(mut fx) = support::fixture(backend, "many", &test).await else {
        return;
    };
    // 8 processes share the server with the rest of the test run: 4 connections each
    // (for DynamoDB, 4 requests in flight per process: moto serves one connection at a
    // time and queues at most 128, which 512 callers connecting at once would overflow).
    fx.target = fx.target.clone().connections(4);
    let mut workers: Vec<Worker> = (0..PROCESSES)
        .map(|process| {
            let shape = Shape {
                process,
                processes: PROCESSES,
                tasks: TASKS,
                keys: KEYS,
                calls_per_task,
                seed: 0x5eed_0009,
                work_ms: WORK_MS,
            };
            Worker::spawn(
                WORKER.as_ref(),
                format!("process-{process}"),
                &fx.job(LEASE, Task::Many(shape)),
            )
        })
        .collect();
    start_together(&mut workers, &fx.go(), PATIENCE).await;
    let started = Instant::now();
    let mut summaries = Vec::new();
    for w in workers {
        summaries.push(support::summary(&w.finish(PATIENCE).await));
    }
    let wall = started.elapsed();

    for s in &summaries {
        assert!(
            s.errors.is_empty() && s.unfinished == 0,
            "process {} had failed calls: {:?} {:?}",
            s.pid,
            s.errors,
            s.error_samples
        );
        assert!(s.conflicts.is_empty(), "{:?}", s.conflicts);
    }
    let calls: u64 = summaries.iter().map(|s| s.calls).sum();
    let per_task = calls_per_task.unwrap_or(KEYS);
    assert_eq!(calls, (PROCESSES * TASKS * per_task) as u64);
    let mut statuses = BTreeMap::<String, u64>::new();
    for s in &summaries {
        for (k, n) in &s.statuses {
            *statuses.entry(k.clone()).or_default() += n;
        }
    }

    // The ledger: each key once, as attempt 1; the callers' values all name that execution.
    let by_key = fx.ledger().by_key();
    assert_eq!(by_key.len(), KEYS, "every key executed");
    for (key, runs) in &by_key {
        assert_eq!(
            runs.len(),
            1,
            "{key} executed {} times: {runs:?}",
            runs.len()
        );
        let run = &runs[0];
        assert_eq!(run.attempt, 1, "{key}: {run:?}");
        let expected = value_of(key, run.pid, run.attempt);
        for s in &summaries {
            if let Some(v) = s.values.get(key) {
                assert_eq!(
                    v, &expected,
                    "process {} got another value for {key}",
                    s.pid
                );
            }
        }
    }
    let executions: usize = by_key.values().map(Vec::len).sum();
    let requests: u64 = summaries.iter().map(|s| s.store_operations).sum();
    assert_eq!(
        statuses.get("executed"),
        Some(&(KEYS as u64)),
        "{statuses:?}"
    );
    let callers_per_key: BTreeSet<usize> = (0..KEYS)
        .map(|i| {
            let key = stent_reliability::job::Shape::key(i);
            summaries
                .iter()
                .filter(|s| s.values.contains_key(&key))
                .count()
        })
        .collect();
    assert!(
        callers_per_key.iter().all(|&n| n >= 2),
        "every key is called from several processes: {callers_per_key:?}"
    );

    figure(
        "many_processes",
        backend,
        &[
            ("processes", PROCESSES.to_string()),
            ("tasks", (PROCESSES * TASKS).to_string()),
            ("keys", KEYS.to_string()),
            ("calls", calls.to_string()),
            ("executions", executions.to_string()),
            (
                "statuses",
                statuses
                    .iter()
                    .map(|(k, n)| format!("{k}:{n}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("wall_ms", wall.as_millis().to_string()),
            (
                "requests",
                if requests == 0 {
                    "n/a".to_owned()
                } else {
                    requests.to_string()
                },
            ),
            (
                "calls_per_s",
                format!("{:.0}", calls as f64 / wall.as_secs_f64()),
            ),
        ],
    );
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_8_processes_run_each_of_200_keys_once() {
    every_key_runs_once(Backend::Sqlite, None).await;
}

/// A debug build on two shared cores makes about 1,000 calls per second against
/// PostgreSQL (all 102,400 took 90 s): every task calls 40 keys (20,480 calls, each key
/// about 100 times from every process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_8_processes_run_each_of_200_keys_once() {
    every_key_runs_once(Backend::Postgres, Some(40)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_8_processes_run_each_of_200_keys_once() {
    every_key_runs_once(Backend::Redis, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_8_processes_run_each_of_200_keys_once() {
    every_key_runs_once(Backend::RedisCluster, None).await;
}

/// moto answers one request at a time (~600 per second): every task still calls, all at
/// once, but 4 keys each (2,048 calls, each key about 10 times from several processes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_8_processes_run_each_of_200_keys_once() {
    every_key_runs_once(Backend::DynamoDb, Some(4)).await;
}
