//! 8 processes × 32 tasks call one cached key whose TTL is 200 ms, for a few seconds (the
//! function takes 50 ms): with `.single_flight()` or `.stale_while_revalidate(…)` the
//! function runs once per expiry across all processes; with `.stale_if_error(…)` every
//! caller gets a value while the origin fails for 2 s; plain caching, for comparison, runs
//! it about once per process per expiry.
//!
//! `STENT_STORM_SECONDS` sets how long the storm lasts (default 3; RELIABILITY.md reports
//! runs of 10).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use stent_core::Stent;
use stent_reliability::harness::start_together;
use stent_reliability::storm::{HOT_KEY, Origin, Protection, StormJob, StormReport, value};
use stent_reliability::{Backend, Entry, Worker};

use crate::support::{self, PATIENCE, figure};

const PROCESSES: usize = 8;
const TASKS: usize = 32;
const TTL: Duration = Duration::from_millis(200);
const WORK_MS: u64 = 50;
/// Each task's pause between calls: 256 callers, each calling 100 times a second.
const PACE_MS: u64 = 10;
/// Long enough to hold a value through the outage, and through a refresh however slow the
/// machine is: the tests assert what callers got, never how fast.
const WINDOW: Duration = Duration::from_secs(10);
/// How long the origin fails in the `stale_if_error` storm.
const OUTAGE: Duration = Duration::from_secs(2);

/// The storm's binary.
const STORM: &str = env!("CARGO_BIN_EXE_stent-reliability-storm");

/// How long the storm lasts: at least 3 s, the outage's 2 s and time on either side.
fn storm_length() -> Duration {
    let secs = std::env::var("STENT_STORM_SECONDS")
        .ok()
        .map(|s| {
            s.parse::<u64>()
                .expect("STENT_STORM_SECONDS is whole seconds")
        })
        .unwrap_or(3);
    Duration::from_secs(secs.max(3))
}

/// What one storm left: the workers' merged report, the ledger, and the run's span.
struct Storm {
    backend: Backend,
    protection: Protection,
    report: StormReport,
    /// Every execution, the parent's warm-up first.
    ledger: Vec<Entry>,
    /// From the warm-up execution to the last call's end (or the last execution's start,
    /// if later): every execution started within it.
    span_ms: i64,
}

impl Storm {
    fn executions(&self) -> usize {
        self.ledger.len()
    }

    fn failed(&self) -> usize {
        self.ledger
            .iter()
            .filter(|e| e.note.ends_with("failed"))
            .count()
    }

    /// How many times the value can have expired within the span. An execution stores a
    /// value that stays fresh for a TTL after it ends, and a process runs the function
    /// again only once that value has expired; with single flight or the refresh lock, only
    /// one process does. So the executions of one process (of all of them, when protected)
    /// start more than a TTL apart, and number at most this + 1.
    fn expiries(&self) -> u64 {
        u64::try_from(self.span_ms).unwrap().div_ceil(ttl_ms())
    }

    /// How many times the value was refreshed, from the ledger: the successful executions
    /// that answer one expiry all start while the value is missing or stale, within about
    /// an execution's time of the first; the next expiry comes a TTL after a value is stored
    /// again. So a successful execution starting more than half a TTL after the first of the
    /// current refresh starts the next one. A figure, not asserted.
    fn refreshes(&self) -> usize {
        let mut starts: Vec<i64> = self.ledger[1..]
            .iter()
            .filter(|e| !e.note.ends_with("failed"))
            .map(|e| e.at_ms)
            .collect();
        starts.sort_unstable();
        let half_ttl = i64::try_from(ttl_ms() / 2).unwrap();
        let mut first = None;
        let mut n = 0;
        for at in starts {
            if first.is_none_or(|f| at - f > half_ttl) {
                n += 1;
                first = Some(at);
            }
        }
        n
    }

    fn status(&self, s: &str) -> u64 {
        self.report.statuses.get(s).copied().unwrap_or(0)
    }

    /// Executions per process (the parent's warm-up counted apart).
    fn per_process(&self) -> BTreeMap<u32, usize> {
        let mut n = BTreeMap::new();
        for e in &self.ledger[1..] {
            *n.entry(e.pid).or_default() += 1;
        }
        n
    }

    /// Checks what holds in every storm: no caller got an error, and every value a caller
    /// got is one a successful execution in the ledger returned.
    fn check_values(&self) {
        let r = &self.report;
        assert_eq!(
            r.error_count(),
            0,
            "{} {}: failed calls {:?} {:?}",
            self.backend.name(),
            self.protection.name(),
            r.errors,
            r.error_samples
        );
        assert!(r.calls() > 0, "no calls");
        let produced: BTreeSet<String> = self
            .ledger
            .iter()
            .filter(|e| !e.note.ends_with("failed"))
            .map(|e| {
                let run = e.note.strip_prefix("run").expect("a run note");
                value(&e.key, e.pid, run.parse().expect("a run number"))
            })
            .collect();
        for v in &r.values {
            assert!(produced.contains(v), "{v} names no execution: {produced:?}");
        }
    }

    fn figure(&self) {
        let mut all: Vec<u32> = self
            .report
            .latencies_us
            .values()
            .flatten()
            .copied()
            .collect();
        all.sort_unstable();
        let ms = |q: f64| {
            let i = ((all.len() as f64 * q).ceil() as usize).clamp(1, all.len()) - 1;
            format!("{:.1}", f64::from(all[i]) / 1000.0)
        };
        let statuses = self.report.statuses.iter();
        let statuses: Vec<String> = statuses.map(|(k, n)| format!("{k}:{n}")).collect();
        let per_process: Vec<String> = self.per_process().values().map(usize::to_string).collect();
        figure(
            "expiry_storm",
            self.backend,
            &[
                ("protection", self.protection.name().to_owned()),
                ("callers", (PROCESSES * TASKS).to_string()),
                ("span_ms", self.span_ms.to_string()),
                ("expiries", self.expiries().to_string()),
                ("executions", self.executions().to_string()),
                ("failed", self.failed().to_string()),
                ("refreshes", self.refreshes().to_string()),
                (
                    "per_refresh",
                    format!(
                        "{:.2}",
                        (self.executions() - 1 - self.failed()) as f64
                            / self.refreshes().max(1) as f64
                    ),
                ),
                ("per_process", per_process.join(",")),
                ("calls", self.report.calls().to_string()),
                ("errors", self.report.error_count().to_string()),
                ("statuses", statuses.join(",")),
                ("p50_ms", ms(0.50)),
                ("p99_ms", ms(0.99)),
                ("max_ms", ms(1.0)),
            ],
        );
    }
}

fn ttl_ms() -> u64 {
    u64::try_from(TTL.as_millis()).unwrap()
}

/// Runs one storm on `backend`; `None` when the backend is not configured (and not
/// required).
async fn storm(backend: Backend, protection: Protection, test: &str) -> Option<Storm> {
    let mut fx = support::fixture(backend, "storm", test).await?;
    // As in `many_processes`: 8 processes share the server with the rest of the test run.
    fx.target = fx.target.clone().connections(4);
    let (out, stop, outage) = (fx.path("reports"), fx.path("stop"), fx.path("outage"));
    std::fs::create_dir(&out).unwrap();
    let origin = Origin {
        protection,
        ttl_ms: ttl_ms(),
        window_ms: u64::try_from(WINDOW.as_millis()).unwrap(),
        work_ms: WORK_MS,
        ledger: fx.ledger().path().to_owned(),
        outage: outage.clone(),
    };
    // The key is hot before the storm, as a deployed one would be: one execution here.
    let store = fx.target.open().await.expect("the parent's store");
    let warm = origin.wrap(&Stent::from_arc(store));
    let first = warm.call_traced(HOT_KEY.to_owned()).await.expect("warm-up");
    assert_eq!(first.outcome.status.as_str(), "executed");

    let mut workers: Vec<Worker> = (0..PROCESSES)
        .map(|process| {
            let job = StormJob {
                target: fx.target.clone(),
                origin: origin.clone(),
                go: fx.go(),
                stop: stop.clone(),
                out: out.clone(),
                tasks: TASKS,
                pace_ms: PACE_MS,
            };
            Worker::spawn(STORM.as_ref(), format!("process-{process}"), &job)
        })
        .collect();
    start_together(&mut workers, &fx.go(), PATIENCE).await;
    let started = Instant::now();
    let length = storm_length();
    let ledger = fx.ledger();
    if protection == Protection::StaleIfError {
        // The origin fails for 2 s in the middle of the storm.
        tokio::time::sleep((length - OUTAGE) / 2).await;
        std::fs::write(&outage, b"down").unwrap();
        let down = Instant::now();
        ledger
            .wait_for(PATIENCE, |e| e.note.ends_with("failed"))
            .await;
        tokio::time::sleep(OUTAGE.saturating_sub(down.elapsed())).await;
        std::fs::remove_file(&outage).unwrap();
        let up_ms = stent_reliability::now_ms();
        // The storm goes on until the origin has served again.
        ledger
            .wait_for(PATIENCE, |e| {
                e.at_ms >= up_ms && !e.note.ends_with("failed")
            })
            .await;
    }
    tokio::time::sleep(length.saturating_sub(started.elapsed())).await;
    std::fs::write(&stop, b"stop").unwrap();

    let mut report = StormReport::default();
    for w in workers {
        let pid = w.pid();
        w.finish(PATIENCE).await;
        report.merge(StormReport::read(&out, pid));
    }
    let entries = ledger.entries();
    assert!(entries.iter().all(|e| e.key == HOT_KEY && e.attempt == 1));
    assert_eq!(entries[0].pid, std::process::id(), "the warm-up runs first");
    let last = entries.iter().map(|e| e.at_ms).max().unwrap();
    let span_ms = report.last_ms.max(last) - entries[0].at_ms;
    fx.cleanup().await;
    Some(Storm {
        backend,
        protection,
        report,
        ledger: entries,
        span_ms,
    })
}

/// Without protection, for comparison: each process runs the function when its callers
/// find the value expired (identical calls in one process share one execution), so each
/// process runs it at most once per expiry.
async fn without_protection(backend: Backend) {
    let test = format!(
        "{}_without_protection_runs_once_per_process_per_expiry",
        backend.name()
    );
    let Some(s) = storm(backend, Protection::Plain, &test).await else {
        return;
    };
    s.figure();
    s.check_values();
    for (pid, n) in s.per_process() {
        assert!(
            n as u64 <= s.expiries() + 1,
            "process {pid} ran {n} times in {} expiries",
            s.expiries()
        );
    }
}

/// With single flight: one execution per expiry across all processes.
async fn single_flight(backend: Backend) {
    let test = format!("{}_single_flight_runs_once_per_expiry", backend.name());
    let Some(s) = storm(backend, Protection::SingleFlight, &test).await else {
        return;
    };
    s.figure();
    s.check_values();
    assert!(
        s.executions() as u64 <= s.expiries() + 1,
        "{} executions in {} expiries: {:?}",
        s.executions(),
        s.expiries(),
        s.ledger
    );
    let unexpected: Vec<_> = (s.report.statuses.keys())
        .filter(|k| !["executed", "joined", "cache_hit"].contains(&k.as_str()))
        .collect();
    assert!(unexpected.is_empty(), "{:?}", s.report.statuses);
    assert!(
        s.executions() > 1,
        "the value was refreshed during the storm"
    );
}

/// With stale-while-revalidate: callers get the value at once, stale or fresh, and one
/// refresh per expiry runs in the background, across all processes.
async fn stale_while_revalidate(backend: Backend) {
    let test = format!(
        "{}_stale_while_revalidate_callers_never_run_the_origin",
        backend.name()
    );
    let Some(s) = storm(backend, Protection::StaleWhileRevalidate, &test).await else {
        return;
    };
    s.figure();
    s.check_values();
    let unexpected: Vec<_> = (s.report.statuses.keys())
        .filter(|k| !["stale", "joined", "cache_hit"].contains(&k.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "a caller ran the function: {:?}",
        s.report.statuses
    );
    assert!(s.status("stale") > 0, "{:?}", s.report.statuses);
    assert!(
        s.executions() as u64 <= s.expiries() + 1,
        "{} executions in {} expiries: {:?}",
        s.executions(),
        s.expiries(),
        s.ledger
    );
    let refreshed = s.report.values.iter().any(|v| *v != first_value(&s));
    assert!(
        refreshed,
        "callers got refreshed values: {:?}",
        s.report.values
    );
}

/// With stale-if-error: the origin fails for 2 s, and every caller still gets a value.
async fn stale_if_error(backend: Backend) {
    let test = format!(
        "{}_stale_if_error_callers_get_values_through_an_outage",
        backend.name()
    );
    let Some(s) = storm(backend, Protection::StaleIfError, &test).await else {
        return;
    };
    s.figure();
    s.check_values();
    assert!(s.failed() > 0, "the origin failed during the storm");
    assert!(s.status("stale") > 0, "{:?}", s.report.statuses);
    let last_failure = s.ledger.iter().rposition(|e| e.note.ends_with("failed"));
    assert!(
        s.ledger[last_failure.unwrap()..]
            .iter()
            .any(|e| !e.note.ends_with("failed")),
        "the origin served again after the outage: {:?}",
        s.ledger
    );
}

/// The value the parent's warm-up stored.
fn first_value(s: &Storm) -> String {
    let e = &s.ledger[0];
    value(&e.key, e.pid, 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_without_protection_runs_once_per_process_per_expiry() {
    without_protection(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_single_flight_runs_once_per_expiry() {
    single_flight(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_stale_while_revalidate_callers_never_run_the_origin() {
    stale_while_revalidate(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_stale_if_error_callers_get_values_through_an_outage() {
    stale_if_error(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_without_protection_runs_once_per_process_per_expiry() {
    without_protection(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_single_flight_runs_once_per_expiry() {
    single_flight(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stale_while_revalidate_callers_never_run_the_origin() {
    stale_while_revalidate(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stale_if_error_callers_get_values_through_an_outage() {
    stale_if_error(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_without_protection_runs_once_per_process_per_expiry() {
    without_protection(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_single_flight_runs_once_per_expiry() {
    single_flight(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stale_while_revalidate_callers_never_run_the_origin() {
    stale_while_revalidate(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stale_if_error_callers_get_values_through_an_outage() {
    stale_if_error(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_without_protection_runs_once_per_process_per_expiry() {
    without_protection(Backend::RedisCluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_single_flight_runs_once_per_expiry() {
    single_flight(Backend::RedisCluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_stale_while_revalidate_callers_never_run_the_origin() {
    stale_while_revalidate(Backend::RedisCluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_stale_if_error_callers_get_values_through_an_outage() {
    stale_if_error(Backend::RedisCluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_without_protection_runs_once_per_process_per_expiry() {
    without_protection(Backend::DynamoDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_single_flight_runs_once_per_expiry() {
    single_flight(Backend::DynamoDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_stale_while_revalidate_callers_never_run_the_origin() {
    stale_while_revalidate(Backend::DynamoDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_stale_if_error_callers_get_values_through_an_outage() {
    stale_if_error(Backend::DynamoDb).await;
}
