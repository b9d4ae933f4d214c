//! The server restarted under concurrent calls from three processes: every call either
//! returns the value or fails with a retryable error, the processes recover by themselves
//! (same stores, never rebuilt), and the ledger holds one execution per key.
//!
//! Each scenario starts a server of its own on a free loopback port: PostgreSQL (stopped
//! as by a crash, `pg_ctl stop -m immediate`, then recovered from its write-ahead log),
//! Redis (killed with `SIGKILL`; every write is in its append-only file before Redis
//! acknowledges it) and moto (killed with `SIGKILL`). moto keeps nothing on disk: the
//! restarted server has neither table nor records, the table is recreated with
//! `migrate` as an operator would, and keys called after the restart run once more.
//! For moto the ledger is checked per server lifetime; real DynamoDB keeps its data.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use stent_conformance::servers::local::{MotoServer, PostgresServer, RedisServer};
use stent_reliability::harness::start_together;
use stent_reliability::job::{Shape, Summary, value_of};
use stent_reliability::{Backend, Entry, Target, Task, Worker, now_ms};

use crate::support::{self, Fixture, PATIENCE, WORKER, figure};

const PROCESSES: usize = 3;
const TASKS: usize = 8;
/// Far longer than the outage: a result whose recording waits out the outage is still
/// its owner's to record.
const LEASE: Duration = Duration::from_secs(10);
/// How long the server stays down before it is started again.
const DOWN: Duration = Duration::from_millis(500);
const WORK_MS: u64 = 20;
const PACE_MS: u64 = 10;
/// How long a store operation may wait for the server: calls fail promptly while it is down.
const STORE_TIMEOUT: Duration = Duration::from_secs(1);

/// A server of the scenario's own.
enum Server {
    Postgres(PostgresServer),
    Redis(RedisServer),
    Moto(MotoServer),
}

impl Server {
    fn start(backend: Backend) -> Result<Server, String> {
        match backend {
            Backend::Postgres => PostgresServer::start().map(Server::Postgres),
            // Every write is in the append-only file before Redis acknowledges it.
            Backend::Redis => RedisServer::start(&[
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .map(Server::Redis),
            Backend::DynamoDb => MotoServer::start().map(Server::Moto),
            other => Err(format!("no restart scenario for {other:?}")),
        }
    }

    fn url(&self) -> String {
        match self {
            Server::Postgres(s) => s.url(),
            Server::Redis(s) => s.url(),
            Server::Moto(s) => s.url(),
        }
    }

    fn stop(&mut self) {
        match self {
            Server::Postgres(s) => s.crash().expect("stop PostgreSQL"),
            Server::Redis(s) => s.kill(),
            Server::Moto(s) => s.kill(),
        }
    }

    fn start_again(&mut self) {
        match self {
            Server::Postgres(s) => s.start_again(),
            Server::Redis(s) => s.start_again(),
            Server::Moto(s) => s.start_again(),
        }
        .expect("start the server again");
    }
}

async fn restart_under_concurrent_calls_loses_nothing(backend: Backend) {
    let test = format!(
        "{}_restart_under_concurrent_calls_loses_nothing",
        backend.name()
    );
    let turn = support::turn().await;
    let mut server = match Server::start(backend) {
        Ok(s) => s,
        Err(reason) => {
            support::unavailable::<()>(&test, &format!("cannot start a server: {reason}"));
            return;
        }
    };
    let target = Target::new(backend, server.url(), "reliability")
        .timeout(STORE_TIMEOUT)
        .connections(4);
    let fx = Fixture::own(target, turn);
    fx.target.prepare().await.unwrap();
    let keys = if backend == Backend::DynamoDb {
        60
    } else {
        120
    };
    let events_dir = fx.path("events");
    std::fs::create_dir(&events_dir).unwrap();
    let mut workers: Vec<Worker> = (0..PROCESSES)
        .map(|process| {
            let task = Task::Restart {
                shape: Shape {
                    process,
                    processes: PROCESSES,
                    tasks: TASKS,
                    keys,
                    calls_per_task: None,
                    seed: 0x5eed_0019,
                    work_ms: WORK_MS,
                },
                pace_ms: PACE_MS,
                give_up_ms: 90_000,
                events: events_dir.clone(),
            };
            Worker::spawn(
                WORKER.as_ref(),
                format!("process-{process}"),
                &fx.job(LEASE, task),
            )
        })
        .collect();
    start_together(&mut workers, &fx.go(), PATIENCE).await;

    // Half the keys have run when the server goes down.
    let ledger = fx.ledger();
    ledger.wait_len(keys / 2, PATIENCE).await;
    let killed_at = now_ms();
    tokio::task::block_in_place(|| server.stop());
    tokio::time::sleep(DOWN).await;
    let restart_at = now_ms();
    tokio::task::block_in_place(|| server.start_again());
    let back_at = now_ms();
    let mut table_at = back_at;
    if backend == Backend::DynamoDb {
        fx.target.prepare().await.expect("recreate the table");
        table_at = now_ms();
    }

    let mut summaries: Vec<Summary> = Vec::new();
    for w in workers {
        summaries.push(support::summary(&w.finish(PATIENCE).await));
    }
    let events = support::read_events(&events_dir);

    // Every call got the value in the end, in the process that made it.
    for s in &summaries {
        assert_eq!(
            s.unfinished, 0,
            "process {} gave up: {:?}",
            s.pid, s.error_samples
        );
        assert_eq!(s.values.len(), keys, "process {}", s.pid);
    }
    assert_eq!(
        events.iter().filter(|e| e.error.is_none()).count(),
        PROCESSES * TASKS * keys
    );

    // Every failure was retryable, except what moto's lost data explains.
    let mut failures = BTreeMap::<String, usize>::new();
    for e in events.iter().filter(|e| e.error.is_some()) {
        let kind = e.error.as_deref().unwrap();
        let explained = e.retryable
            || (backend == Backend::DynamoDb
                && ((kind == "config" && e.start_ms < table_at)
                    || (kind == "lease_lost" && e.start_ms < killed_at)));
        assert!(explained, "a call failed unexpectedly: {e:?}");
        *failures
            .entry(if e.retryable {
                kind.to_owned()
            } else {
                format!("{kind}!")
            })
            .or_default() += 1;
    }
    let failed: usize = failures.values().sum();
    assert!(failed > 0, "no call noticed the restart");
    // Each process recovered by itself: it made successful calls after the restart.
    for s in &summaries {
        let pid_calls_after = events
            .iter()
            .filter(|e| e.pid == s.pid && e.error.is_none() && e.start_ms >= back_at)
            .count();
        assert!(pid_calls_after > 0, "process {} never recovered", s.pid);
    }

    // The ledger: one execution per key (moto: per server lifetime).
    let by_key = ledger.by_key();
    assert_eq!(by_key.len(), keys, "every key executed");
    let lifetime = |e: &Entry| usize::from(e.at_ms >= restart_at);
    let mut reruns = 0;
    for (key, runs) in &by_key {
        if backend == Backend::DynamoDb {
            let lives: Vec<usize> = runs.iter().map(lifetime).collect();
            let distinct: BTreeSet<usize> = lives.iter().copied().collect();
            assert_eq!(
                lives.len(),
                distinct.len(),
                "{key} ran twice in one server lifetime: {runs:?}"
            );
            reruns += runs.len() - 1;
        } else {
            assert_eq!(runs.len(), 1, "{key} ran {} times: {runs:?}", runs.len());
        }
        let produced: BTreeSet<String> = runs
            .iter()
            .map(|r| value_of(key, r.pid, r.attempt))
            .collect();
        for s in &summaries {
            let got = &s.values[key];
            assert!(
                produced.contains(got),
                "process {} got {got} for {key}, not a value any execution returned: {runs:?}",
                s.pid
            );
        }
    }
    if backend != Backend::DynamoDb {
        for s in &summaries {
            assert!(s.conflicts.is_empty(), "{:?}", s.conflicts);
        }
    }

    // Keys executed before the kill and called after the restart: replayed from what the
    // server kept (PostgreSQL, Redis), or run again on the empty one (moto).
    let before_kill: BTreeSet<&str> = by_key
        .iter()
        .filter(|(_, runs)| runs[0].at_ms < killed_at)
        .map(|(k, _)| k.as_str())
        .collect();
    let carried: BTreeSet<&str> = events
        .iter()
        .filter(|e| e.error.is_none() && e.start_ms >= back_at)
        .map(|e| e.key.as_str())
        .filter(|k| before_kill.contains(k))
        .collect();
    assert!(
        !carried.is_empty(),
        "no key executed before the restart was called after it"
    );
    if backend == Backend::DynamoDb {
        assert!(reruns > 0, "moto forgot nothing?");
    }

    let first_ok = events
        .iter()
        .filter(|e| e.error.is_none() && e.start_ms >= back_at)
        .map(|e| e.end_ms - back_at)
        .min()
        .unwrap_or_default();
    let last_failure = events
        .iter()
        .filter(|e| e.error.is_some())
        .map(|e| e.end_ms - back_at)
        .max()
        .unwrap_or_default()
        .max(0);
    let executions: usize = by_key.values().map(Vec::len).sum();
    // Executions that started within one function run before the kill: their results were
    // recorded across the outage (or, on moto, lost with it).
    let in_flight_at_kill = by_key
        .values()
        .flatten()
        .filter(|e| (killed_at - i64::try_from(WORK_MS).unwrap()..killed_at).contains(&e.at_ms))
        .count();
    figure(
        "server_restart",
        backend,
        &[
            ("processes", PROCESSES.to_string()),
            ("tasks", (PROCESSES * TASKS).to_string()),
            ("keys", keys.to_string()),
            ("executions", executions.to_string()),
            ("keys_done_before_called_after", carried.len().to_string()),
            ("reruns_after_data_loss", reruns.to_string()),
            ("running_at_kill", in_flight_at_kill.to_string()),
            ("down_ms", (back_at - killed_at).to_string()),
            ("first_success_after_back_ms", first_ok.to_string()),
            ("last_failure_after_back_ms", last_failure.to_string()),
            (
                "failed_calls",
                failures
                    .iter()
                    .map(|(k, n)| format!("{k}:{n}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "calls",
                events
                    .iter()
                    .filter(|e| e.error.is_none())
                    .count()
                    .to_string(),
            ),
        ],
    );
    // The server goes before the fixture gives up the suite's turn.
    drop(server);
    drop(fx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_under_concurrent_calls_loses_nothing() {
    restart_under_concurrent_calls_loses_nothing(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_under_concurrent_calls_loses_nothing() {
    restart_under_concurrent_calls_loses_nothing(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_restart_under_concurrent_calls_loses_nothing() {
    restart_under_concurrent_calls_loses_nothing(Backend::DynamoDb).await;
}
