//! The expiry storm: processes whose tasks call one hot cached key with a short TTL, over
//! and over, so that its value expires every few hundred milliseconds under load; with or
//! without the protections of a cached function ([`Protection`]).
//!
//! The parent calls the function once before the start line (the key is hot when the
//! storm begins, as a deployed one would be), then starts the workers, each running a
//! [`StormJob`] in the `stent-reliability-storm` binary. Each execution appends a line to
//! the [`Ledger`] (note `run{n}`, or `run{n} failed` during an outage); each worker writes a
//! [`StormReport`] to `{out}/{pid}.json` when the parent creates the `stop` file.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use stent_core::{Durable, Execution, Stent};

use crate::job::{REPORT_PREFIX, Report};
use crate::ledger::Ledger;
use crate::target::Target;

/// The name of the storm's function.
pub const FUNCTION: &str = "reliability::storm";

/// The argument every caller passes: one hot key.
pub const HOT_KEY: &str = "hot";

/// Which protection the cached function has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protection {
    /// `.cached().ttl(…)` alone: identical calls in one process share one execution, and
    /// every process whose caller finds the value expired runs the function.
    Plain,
    /// `.single_flight()`: one execution per expiry across every process.
    SingleFlight,
    /// `.stale_while_revalidate(window)`: callers get the expired value at once while one
    /// refresh runs in the background.
    StaleWhileRevalidate,
    /// `.stale_if_error(window)`: a caller whose execution fails gets the expired value.
    StaleIfError,
}

impl Protection {
    /// A short name, as used in test names and figures.
    pub const fn name(self) -> &'static str {
        match self {
            Protection::Plain => "plain",
            Protection::SingleFlight => "single_flight",
            Protection::StaleWhileRevalidate => "stale_while_revalidate",
            Protection::StaleIfError => "stale_if_error",
        }
    }
}

/// The storm's function: its protection, TTL and window, what it does, and the files it
/// reads and writes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Origin {
    /// The protection.
    pub protection: Protection,
    /// The TTL of a value.
    pub ttl_ms: u64,
    /// The stale window ([`Protection::StaleWhileRevalidate`], [`Protection::StaleIfError`]).
    pub window_ms: u64,
    /// How long one execution takes.
    pub work_ms: u64,
    /// Every execution is appended here.
    pub ledger: PathBuf,
    /// While this file exists, an execution fails (after its work): the origin is down.
    pub outage: PathBuf,
}

impl Origin {
    /// The wrapped function over `stent`: it appends `run{n}` to the ledger (`run{n} failed`
    /// when the outage file exists as it starts), works `work_ms`, and returns [`value`] of
    /// its run, or fails.
    pub fn wrap(&self, stent: &Stent) -> Durable<String, String, String> {
        let window = Duration::from_millis(self.window_ms);
        let builder = stent
            .durable(FUNCTION)
            .cached()
            .ttl(Duration::from_millis(self.ttl_ms));
        let builder = match self.protection {
            Protection::Plain => builder,
            Protection::SingleFlight => builder.single_flight(),
            Protection::StaleWhileRevalidate => builder.stale_while_revalidate(window),
            Protection::StaleIfError => builder.stale_if_error(window),
        };
        let (ledger, outage) = (Ledger::new(&self.ledger), self.outage.clone());
        let work = Duration::from_millis(self.work_ms);
        let runs = Arc::new(AtomicU64::new(0));
        builder.wrap_with_context(move |key: String, exec: Execution| {
            let (ledger, down) = (ledger.clone(), outage.exists());
            let run = runs.fetch_add(1, Ordering::Relaxed) + 1;
            async move {
                let note = if down {
                    format!("run{run} failed")
                } else {
                    format!("run{run}")
                };
                ledger.append_noted(&key, exec.attempt, &note);
                tokio::time::sleep(work).await;
                if down {
                    Err("the origin is down".to_owned())
                } else {
                    Ok(value(&key, std::process::id(), run))
                }
            }
        })
    }
}

/// The value run `run` of process `pid` returns for `key`.
pub fn value(key: &str, pid: u32, run: u64) -> String {
    format!("{key}:pid{pid}:run{run}")
}

/// One worker process of the storm.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StormJob {
    /// The store to open.
    pub target: Target,
    /// The function.
    pub origin: Origin,
    /// The start line: the worker calls nothing before this file exists.
    pub go: PathBuf,
    /// The worker's tasks stop calling once this file exists.
    pub stop: PathBuf,
    /// Where the worker writes its [`StormReport`], as `{pid}.json`.
    pub out: PathBuf,
    /// Concurrent callers in this process, sharing one wrapped function (as an
    /// application's tasks share it).
    pub tasks: usize,
    /// Each task's pause between two calls.
    pub pace_ms: u64,
}

/// What one worker saw.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StormReport {
    /// The worker's process id.
    pub pid: u32,
    /// Calls that returned a value, by status.
    pub statuses: BTreeMap<String, u64>,
    /// Calls that failed, by error kind (`kind!` when not retryable).
    pub errors: BTreeMap<String, u64>,
    /// A few error messages.
    pub error_samples: Vec<String>,
    /// Every distinct value a call returned.
    pub values: BTreeSet<String>,
    /// How long each call took, in microseconds, by status (`error` for failed calls).
    pub latencies_us: BTreeMap<String, Vec<u32>>,
    /// When the first call started (milliseconds since the Unix epoch).
    pub first_ms: i64,
    /// When the last call ended.
    pub last_ms: i64,
}

impl StormReport {
    /// Adds `other`'s calls to these.
    pub fn merge(&mut self, other: StormReport) {
        for (k, n) in other.statuses {
            *self.statuses.entry(k).or_default() += n;
        }
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        let room = 5usize.saturating_sub(self.error_samples.len());
        self.error_samples
            .extend(other.error_samples.into_iter().take(room));
        self.values.extend(other.values);
        for (k, v) in other.latencies_us {
            self.latencies_us.entry(k).or_default().extend(v);
        }
        self.first_ms = match self.first_ms {
            0 => other.first_ms,
            ms => ms.min(other.first_ms),
        };
        self.last_ms = self.last_ms.max(other.last_ms);
    }

    /// Calls that returned a value.
    pub fn calls(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// Calls that failed.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Reads what the worker `pid` wrote to `out`.
    ///
    /// # Panics
    ///
    /// When it wrote none, or not a report.
    pub fn read(out: &Path, pid: u32) -> StormReport {
        let path = out.join(format!("{pid}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}

impl StormJob {
    /// Runs the job in this process.
    ///
    /// # Panics
    ///
    /// When the store cannot be opened or the files cannot be used: the worker exits with
    /// a failure. Failed calls are counted, not panics.
    pub async fn run(self) {
        let store = self
            .target
            .open()
            .await
            .unwrap_or_else(|e| panic!("worker cannot open {:?}: {e}", self.target.backend));
        let f = self.origin.wrap(&Stent::from_arc(store));
        let pid = std::process::id();
        let ready = serde_json::to_string(&Report::Ready { pid }).expect("reports serialize");
        println!("{REPORT_PREFIX}{ready}");
        std::io::stdout().flush().expect("write to the parent");
        wait_for(&self.go).await;
        let stopped = Arc::new(AtomicBool::new(false));
        let pace = Duration::from_millis(self.pace_ms);
        let tasks: Vec<_> = (0..self.tasks)
            .map(|_| tokio::spawn(call_until(f.clone(), pace, Arc::clone(&stopped))))
            .collect();
        wait_for(&self.stop).await;
        stopped.store(true, Ordering::Relaxed);
        let mut report = StormReport {
            pid,
            ..StormReport::default()
        };
        for t in tasks {
            report.merge(t.await.expect("a caller panicked"));
        }
        let path = self.out.join(format!("{pid}.json"));
        let json = serde_json::to_vec(&report).expect("reports serialize");
        std::fs::write(&path, json).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// Waits until `path` exists (for up to ten minutes: the parent decides when).
async fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One caller: calls the hot key until `stopped`, pausing `pace` between calls.
async fn call_until(
    f: Durable<String, String, String>,
    pace: Duration,
    stopped: Arc<AtomicBool>,
) -> StormReport {
    let mut r = StormReport::default();
    while !stopped.load(Ordering::Relaxed) {
        let (start_ms, started) = (crate::now_ms(), Instant::now());
        let result = f.call_traced(HOT_KEY.to_owned()).await;
        let took = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        if r.first_ms == 0 {
            r.first_ms = start_ms;
        }
        r.last_ms = crate::now_ms();
        let status = match result {
            Ok(t) => {
                r.values.insert(t.value);
                t.outcome.status.as_str().to_owned()
            }
            Err(e) => {
                let kind = if e.is_retryable() {
                    e.kind().as_str().to_owned()
                } else {
                    format!("{}!", e.kind().as_str())
                };
                *r.errors.entry(kind).or_default() += 1;
                if r.error_samples.len() < 5 {
                    r.error_samples.push(e.to_string());
                }
                "error".to_owned()
            }
        };
        if status != "error" {
            *r.statuses.entry(status.clone()).or_default() += 1;
        }
        r.latencies_us.entry(status).or_default().push(took);
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
    }
    r
}
