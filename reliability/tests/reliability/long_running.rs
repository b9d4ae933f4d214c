//! A function that runs five times longer than its lease, called by 16 callers over two
//! processes at once: the owner's renewals keep its claim, so it runs exactly once and
//! every caller gets its value.

use std::time::Duration;

use stent_core::{Namespace, RecordState, Status};
use stent_reliability::harness::start_together;
use stent_reliability::{Backend, Task, Worker};

use crate::support::{self, PATIENCE, WORKER, figure};

/// The lease, and a function five times as long.
const LEASE: Duration = Duration::from_millis(400);
/// moto answers one request at a time: while 16 callers claim and poll, a renewal waits
/// behind them. With four busy loops competing for the two cores, a renewal's round trip
/// exceeded what a 400 ms lease leaves (267 ms), and even a 1 s lease (667 ms) lapsed in
/// two runs of three. A longer lease, the same ratio.
const MOTO_LEASE: Duration = Duration::from_secs(2);
const WORK_PER_LEASE: u32 = 5;
const PROCESSES: usize = 2;
const CALLERS_PER_PROCESS: usize = 8;
const KEY: &str = "report-1";

async fn work_longer_than_the_lease_runs_once(backend: Backend) {
    let test = format!("{}_work_longer_than_the_lease_runs_once", backend.name());
    let Some(fx) = support::fixture(backend, "long", &test).await else {
        return;
    };
    let lease = if backend == Backend::DynamoDb {
        MOTO_LEASE
    } else {
        LEASE
    };
    let work = lease * WORK_PER_LEASE;
    let job = fx.job(
        lease,
        Task::Long {
            key: KEY.into(),
            callers: CALLERS_PER_PROCESS,
            work_ms: u64::try_from(work.as_millis()).unwrap(),
        },
    );
    let mut workers: Vec<Worker> = (0..PROCESSES)
        .map(|i| Worker::spawn(WORKER.as_ref(), format!("caller-process-{i}"), &job))
        .collect();
    start_together(&mut workers, &fx.go(), PATIENCE).await;
    let mut calls = Vec::new();
    for w in workers {
        calls.extend(support::calls(&w.finish(PATIENCE).await));
    }

    assert_eq!(calls.len(), PROCESSES * CALLERS_PER_PROCESS, "{calls:#?}");
    let executed: Vec<_> = calls
        .iter()
        .filter(|c| c.status == Status::Executed.as_str())
        .collect();
    assert_eq!(executed.len(), 1, "exactly one caller executes: {calls:#?}");
    let value = &executed[0].value;
    assert!(
        calls.iter().all(|c| &c.value == value && c.attempt == 1),
        "every caller gets the first attempt's value: {calls:#?}"
    );
    let entries = fx.ledger().entries();
    assert_eq!(
        entries
            .iter()
            .map(|e| (e.key.as_str(), e.attempt))
            .collect::<Vec<_>>(),
        [(KEY, 1)],
        "one execution in the ledger"
    );
    let store = fx.target.open().await.unwrap();
    let key = &calls[0].key;
    assert!(calls.iter().all(|c| &c.key == key));
    let record = store
        .get(Namespace::Idempotency, key)
        .await
        .unwrap()
        .expect("the record");
    assert_eq!((record.state, record.attempt), (RecordState::Completed, 1));

    let slowest = calls.iter().map(|c| c.took_ms).max().unwrap_or_default();
    let joined = calls
        .iter()
        .filter(|c| c.status == Status::Joined.as_str())
        .count();
    figure(
        "long_running",
        backend,
        &[
            ("lease_ms", lease.as_millis().to_string()),
            ("work_ms", work.as_millis().to_string()),
            ("callers", calls.len().to_string()),
            ("executions", entries.len().to_string()),
            ("joined", joined.to_string()),
            ("slowest_call_ms", slowest.to_string()),
        ],
    );
    fx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_work_longer_than_the_lease_runs_once() {
    work_longer_than_the_lease_runs_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_work_longer_than_the_lease_runs_once() {
    work_longer_than_the_lease_runs_once(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_work_longer_than_the_lease_runs_once() {
    work_longer_than_the_lease_runs_once(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_work_longer_than_the_lease_runs_once() {
    work_longer_than_the_lease_runs_once(Backend::RedisCluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_work_longer_than_the_lease_runs_once() {
    work_longer_than_the_lease_runs_once(Backend::DynamoDb).await;
}
