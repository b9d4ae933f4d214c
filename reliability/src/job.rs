//! What a worker process does ([`Job`]) and what it tells its parent ([`Report`]).
//!
//! The parent passes a job as JSON in the worker's first argument; the worker prints one
//! report per line on stdout, as JSON after [`REPORT_PREFIX`], and exits 0 when the job is
//! done. Anything unexpected panics, so the parent sees a failed process.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng as _;
use rand::seq::SliceRandom as _;
use serde::{Deserialize, Serialize};
use stent_core::{Durable, Execution, InFlight, Namespace, ResultStore, Stent};

use crate::ledger::Ledger;
use crate::target::Target;

/// Marks a report line on a worker's stdout.
pub const REPORT_PREFIX: &str = "@@ ";

/// One worker process's assignment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    /// The store to open.
    pub target: Target,
    /// The ledger every execution is appended to.
    pub ledger: PathBuf,
    /// The start line: after reporting [`Report::Ready`], the worker waits until this file
    /// exists before it calls anything, so all processes start at once.
    pub go: PathBuf,
    /// The lease of the wrapped function.
    pub lease_ms: u64,
    /// What to do.
    pub task: Task,
}

/// The scenarios a worker can play.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Task {
    /// Call `key`; inside the function, report [`Report::Inside`] with the lease token,
    /// then hang until the process is killed.
    Own {
        /// The argument to call with.
        key: String,
    },
    /// Report [`Report::Calling`], call `key` waiting up to `wait_ms` for another owner;
    /// if the function runs here, it holds until the file `hold` exists. Then report
    /// [`Report::Call`].
    TakeOver {
        /// The argument to call with.
        key: String,
        /// The in-flight wait limit.
        wait_ms: u64,
        /// The function returns once this file exists.
        hold: PathBuf,
    },
    /// `callers` concurrent calls of `key`, each through a wrapper of its own (as separate
    /// processes would make them); the function takes `work_ms`. One [`Report::Call`] each.
    Long {
        /// The argument to call with.
        key: String,
        /// How many callers in this process.
        callers: usize,
        /// How long the function runs.
        work_ms: u64,
    },
    /// Concurrent tasks calling keys in shuffled order; one [`Report::Summary`]. Any
    /// error fails the worker.
    Many(Shape),
    /// Like [`Many`](Self::Many), but meant to run through a server restart: a failed call
    /// is recorded and retried (every 50 ms, for up to `give_up_ms`) until it succeeds. One
    /// line per call attempt goes to `{events}/{pid}.jsonl` ([`Event`]).
    Restart {
        /// Which keys each task calls.
        shape: Shape,
        /// Pause between one task's calls.
        pace_ms: u64,
        /// A task that cannot finish its keys within this time fails.
        give_up_ms: u64,
        /// The directory events are written to.
        events: PathBuf,
    },
}

/// Which keys the tasks of one process call, and how long the function runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Shape {
    /// This process's index among `processes`.
    pub process: usize,
    /// How many processes run the scenario.
    pub processes: usize,
    /// Concurrent tasks per process.
    pub tasks: usize,
    /// Distinct keys in the scenario: `k000`, `k001`, ….
    pub keys: usize,
    /// `None`: every task calls every key once, in an order of its own. `Some(n)`: every
    /// task calls `n` keys, dealt at random from a deck holding each key equally often, so
    /// all keys are called and every key by tasks of several processes.
    pub calls_per_task: Option<usize>,
    /// Seeds the shuffles (the same in every process of a scenario).
    pub seed: u64,
    /// How long the function runs.
    pub work_ms: u64,
}

impl Shape {
    /// The name of key `i`.
    pub fn key(i: usize) -> String {
        format!("k{i:03}")
    }

    /// The keys each task of this process calls, in calling order.
    pub fn task_keys(&self) -> Vec<Vec<String>> {
        let names = |v: &[usize]| v.iter().map(|&i| Shape::key(i)).collect::<Vec<_>>();
        match self.calls_per_task {
            None => (0..self.tasks)
                .map(|t| {
                    let task = (self.process * self.tasks + t) as u64;
                    let mut rng = rand::rngs::StdRng::seed_from_u64(
                        self.seed ^ task.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    );
                    let mut order: Vec<usize> = (0..self.keys).collect();
                    order.shuffle(&mut rng);
                    names(&order)
                })
                .collect(),
            Some(n) => {
                let total = self.processes * self.tasks * n;
                let mut deck: Vec<usize> = (0..total).map(|j| j % self.keys).collect();
                deck.shuffle(&mut rand::rngs::StdRng::seed_from_u64(self.seed));
                (0..self.tasks)
                    .map(|t| {
                        let first = (self.process * self.tasks + t) * n;
                        names(&deck[first..first + n])
                    })
                    .collect()
            }
        }
    }
}

/// What a worker tells its parent, one per stdout line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Report {
    /// Connected and waiting for the start line.
    Ready {
        /// The worker's process id.
        pid: u32,
    },
    /// Running the function while holding the claim on `key` ([`Task::Own`]).
    Inside {
        /// The key the wrapper derived.
        key: String,
        /// The attempt number.
        attempt: u32,
        /// The lease token the claim installed, read back from the store.
        token: String,
        /// When the function started.
        at_ms: i64,
    },
    /// About to call ([`Task::TakeOver`]).
    Calling {
        /// When.
        at_ms: i64,
    },
    /// One call's result.
    Call(CallReport),
    /// A [`Task::Many`] or [`Task::Restart`] worker's totals.
    Summary(Summary),
}

/// The result of one call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallReport {
    /// The worker's process id.
    pub pid: u32,
    /// The key the wrapper derived.
    pub key: String,
    /// `executed`, `replayed`, `joined` or `cache_hit`.
    pub status: String,
    /// The attempt that produced the value.
    pub attempt: u32,
    /// The value returned.
    pub value: String,
    /// How long the call took.
    pub took_ms: u64,
}

/// Totals of one worker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The worker's process id.
    pub pid: u32,
    /// Calls that returned a value.
    pub calls: u64,
    /// Successful calls by status.
    pub statuses: BTreeMap<String, u64>,
    /// Failed call attempts by `kind` (`kind!` when not retryable).
    pub errors: BTreeMap<String, u64>,
    /// A few error messages, for the parent's failure message.
    pub error_samples: Vec<String>,
    /// The value each key returned in this process.
    pub values: BTreeMap<String, String>,
    /// Keys that returned different values to this process's callers.
    pub conflicts: Vec<String>,
    /// Calls given up on (never succeeded).
    pub unfinished: u64,
    /// From the start line to the last call's end.
    pub elapsed_ms: u64,
    /// Requests sent to the server, when the store counts them (DynamoDB with a request
    /// limit, see [`Target::connections`](crate::Target::connections)).
    pub store_operations: u64,
}

impl Summary {
    fn merge(&mut self, other: Summary) {
        self.calls += other.calls;
        for (k, n) in other.statuses {
            *self.statuses.entry(k).or_default() += n;
        }
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        for s in other.error_samples {
            if self.error_samples.len() < 5 {
                self.error_samples.push(s);
            }
        }
        for (k, v) in other.values {
            self.record(k, v);
        }
        self.conflicts.extend(other.conflicts);
        self.unfinished += other.unfinished;
    }

    fn record(&mut self, key: String, value: String) {
        match self.values.get(&key) {
            Some(seen) if *seen != value => self.conflicts.push(format!("{key}: {seen} / {value}")),
            Some(_) => {}
            None => {
                self.values.insert(key, value);
            }
        }
    }

    fn error<E: std::fmt::Display>(&mut self, e: &stent_core::Error<E>) {
        let kind = if e.is_retryable() {
            e.kind().as_str().to_owned()
        } else {
            format!("{}!", e.kind().as_str())
        };
        *self.errors.entry(kind).or_default() += 1;
        if self.error_samples.len() < 5 {
            self.error_samples.push(e.to_string());
        }
    }

    /// How many failed call attempts there were.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One call attempt of a [`Task::Restart`] worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The calling process.
    pub pid: u32,
    /// The key called.
    pub key: String,
    /// When the call started.
    pub start_ms: i64,
    /// When it returned.
    pub end_ms: i64,
    /// `None` for success, else the error's kind.
    pub error: Option<String>,
    /// Whether the error was retryable.
    pub retryable: bool,
    /// The error's message.
    pub message: Option<String>,
}

/// The value the scenarios' function returns: which key, which process, which attempt.
pub fn value_of(key: &str, pid: u32, attempt: u32) -> String {
    format!("{key}:pid{pid}:attempt{attempt}")
}

/// Prints a report line for the parent.
fn report(r: &Report) {
    let line = serde_json::to_string(r).expect("reports serialize");
    let mut out = std::io::stdout().lock();
    writeln!(out, "{REPORT_PREFIX}{line}").expect("write to the parent");
    out.flush().expect("write to the parent");
}

async fn wait_for_file(path: &Path, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{what}: {} did not appear within {within:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A function that records each execution in the ledger, runs `work`, and returns
/// [`value_of`] its key.
fn ledgered(
    stent: &Stent,
    name: &str,
    lease: Duration,
    ledger: &Ledger,
    work: Duration,
) -> Durable<String, String, Infallible> {
    let ledger = ledger.clone();
    stent
        .durable(name)
        .idempotent()
        .lease(lease)
        .wrap_with_context(move |key: String, exec: Execution| {
            let ledger = ledger.clone();
            async move {
                ledger.append(&key, exec.attempt);
                tokio::time::sleep(work).await;
                Ok(value_of(&key, std::process::id(), exec.attempt))
            }
        })
}

impl Job {
    /// Runs the job in this process.
    ///
    /// # Panics
    ///
    /// On anything the scenario does not expect: the worker exits with a failure.
    pub async fn run(self) {
        let store = self
            .target
            .open()
            .await
            .unwrap_or_else(|e| panic!("worker cannot open {:?}: {e}", self.target.backend));
        let stent = Stent::from_arc(Arc::clone(&store));
        let ledger = Ledger::new(&self.ledger);
        let lease = Duration::from_millis(self.lease_ms);
        let pid = std::process::id();
        match self.task {
            Task::Own { key } => {
                let f = {
                    let (store, ledger) = (Arc::clone(&store), ledger.clone());
                    stent
                        .durable("reliability::crash")
                        .idempotent()
                        .lease(lease)
                        .wrap_with_context(move |key: String, exec: Execution| {
                            let (store, ledger) = (Arc::clone(&store), ledger.clone());
                            async move {
                                ledger.append(&key, exec.attempt);
                                inside(&*store, &exec).await;
                                std::future::pending::<Result<String, Infallible>>().await
                            }
                        })
                };
                report(&Report::Ready { pid });
                wait_for_file(&self.go, Duration::from_secs(120), "start line").await;
                let r = f.call(key).await;
                panic!("the owner's call was to hang until killed, but returned {r:?}");
            }
            Task::TakeOver { key, wait_ms, hold } => {
                let f = {
                    let ledger = ledger.clone();
                    stent
                        .durable("reliability::crash")
                        .idempotent()
                        .lease(lease)
                        .in_flight(InFlight::Wait {
                            timeout: Duration::from_millis(wait_ms),
                        })
                        .wrap_with_context(move |key: String, exec: Execution| {
                            let (ledger, hold) = (ledger.clone(), hold.clone());
                            async move {
                                ledger.append(&key, exec.attempt);
                                wait_for_file(&hold, Duration::from_secs(60), "hold").await;
                                Ok::<_, Infallible>(value_of(
                                    &key,
                                    std::process::id(),
                                    exec.attempt,
                                ))
                            }
                        })
                };
                report(&Report::Ready { pid });
                wait_for_file(&self.go, Duration::from_secs(120), "start line").await;
                report(&Report::Calling {
                    at_ms: crate::now_ms(),
                });
                let started = Instant::now();
                let t = f
                    .call_traced(key)
                    .await
                    .unwrap_or_else(|e| panic!("the taker's call failed: {e}"));
                report(&Report::Call(CallReport {
                    pid,
                    key: t.outcome.key.clone(),
                    status: t.outcome.status.to_string(),
                    attempt: t.outcome.attempt,
                    value: t.value,
                    took_ms: elapsed_ms(started),
                }));
            }
            Task::Long {
                key,
                callers,
                work_ms,
            } => {
                let work = Duration::from_millis(work_ms);
                let fs: Vec<_> = (0..callers)
                    .map(|_| ledgered(&stent, "reliability::long", lease, &ledger, work))
                    .collect();
                report(&Report::Ready { pid });
                wait_for_file(&self.go, Duration::from_secs(120), "start line").await;
                let calls: Vec<_> = fs
                    .into_iter()
                    .map(|f| {
                        let key = key.clone();
                        tokio::spawn(async move {
                            let started = Instant::now();
                            let t = f
                                .call_traced(key)
                                .await
                                .unwrap_or_else(|e| panic!("a long call failed: {e}"));
                            CallReport {
                                pid,
                                key: t.outcome.key.clone(),
                                status: t.outcome.status.to_string(),
                                attempt: t.outcome.attempt,
                                value: t.value,
                                took_ms: elapsed_ms(started),
                            }
                        })
                    })
                    .collect();
                for c in calls {
                    report(&Report::Call(c.await.expect("a caller panicked")));
                }
            }
            Task::Many(shape) => {
                let work = Duration::from_millis(shape.work_ms);
                let tasks = shape.task_keys();
                let fs: Vec<_> = tasks
                    .iter()
                    .map(|_| ledgered(&stent, "reliability::many", lease, &ledger, work))
                    .collect();
                report(&Report::Ready { pid });
                wait_for_file(&self.go, Duration::from_secs(120), "start line").await;
                let started = Instant::now();
                let handles: Vec<_> = fs
                    .into_iter()
                    .zip(tasks)
                    .map(|(f, keys)| tokio::spawn(call_all(f, keys)))
                    .collect();
                let mut summary = Summary {
                    pid,
                    ..Summary::default()
                };
                for h in handles {
                    summary.merge(h.await.expect("a task panicked"));
                }
                summary.elapsed_ms = elapsed_ms(started);
                summary.store_operations = crate::target::limited_operations();
                report(&Report::Summary(summary));
            }
            Task::Restart {
                shape,
                pace_ms,
                give_up_ms,
                events,
            } => {
                let work = Duration::from_millis(shape.work_ms);
                let tasks = shape.task_keys();
                let fs: Vec<_> = tasks
                    .iter()
                    .map(|_| ledgered(&stent, "reliability::restart", lease, &ledger, work))
                    .collect();
                report(&Report::Ready { pid });
                wait_for_file(&self.go, Duration::from_secs(120), "start line").await;
                let started = Instant::now();
                let give_up = started + Duration::from_millis(give_up_ms);
                let pace = Duration::from_millis(pace_ms);
                let handles: Vec<_> = fs
                    .into_iter()
                    .zip(tasks)
                    .map(|(f, keys)| tokio::spawn(call_through_outage(f, keys, pace, give_up)))
                    .collect();
                let mut summary = Summary {
                    pid,
                    ..Summary::default()
                };
                let mut lines = String::new();
                for h in handles {
                    let (s, evs) = h.await.expect("a task panicked");
                    summary.merge(s);
                    for e in evs {
                        lines.push_str(&serde_json::to_string(&e).expect("events serialize"));
                        lines.push('\n');
                    }
                }
                summary.elapsed_ms = elapsed_ms(started);
                std::fs::write(events.join(format!("{pid}.jsonl")), lines)
                    .expect("write the events file");
                report(&Report::Summary(summary));
            }
        }
    }
}

/// Inside the owner's function: reads the claim's token back from the store and reports it.
async fn inside(store: &dyn ResultStore, exec: &Execution) {
    let record = store
        .get(Namespace::Idempotency, &exec.key)
        .await
        .unwrap_or_else(|e| panic!("read the claimed record: {e}"))
        .expect("the claimed record exists");
    let token = record
        .lease_token
        .expect("an in-progress record has a lease token");
    report(&Report::Inside {
        key: exec.key.to_string(),
        attempt: exec.attempt,
        token: token.as_str().to_owned(),
        at_ms: crate::now_ms(),
    });
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One task of [`Task::Many`]: every key once, failures counted (the parent fails on any).
async fn call_all(f: Durable<String, String, Infallible>, keys: Vec<String>) -> Summary {
    let mut s = Summary::default();
    for key in keys {
        match f.call_traced(key.clone()).await {
            Ok(t) => {
                s.calls += 1;
                *s.statuses.entry(t.outcome.status.to_string()).or_default() += 1;
                s.record(key, t.value);
            }
            Err(e) => {
                s.error(&e);
                s.unfinished += 1;
            }
        }
    }
    s
}

/// One task of [`Task::Restart`]: every key until it succeeds, each attempt an [`Event`].
async fn call_through_outage(
    f: Durable<String, String, Infallible>,
    keys: Vec<String>,
    pace: Duration,
    give_up: Instant,
) -> (Summary, Vec<Event>) {
    let mut s = Summary::default();
    let mut events = Vec::new();
    for key in keys {
        loop {
            let start_ms = crate::now_ms();
            let result = f.call_traced(key.clone()).await;
            let end_ms = crate::now_ms();
            match result {
                Ok(t) => {
                    events.push(Event {
                        pid: std::process::id(),
                        key: key.clone(),
                        start_ms,
                        end_ms,
                        error: None,
                        retryable: false,
                        message: None,
                    });
                    s.calls += 1;
                    *s.statuses.entry(t.outcome.status.to_string()).or_default() += 1;
                    s.record(key, t.value);
                    break;
                }
                Err(e) => {
                    events.push(Event {
                        pid: std::process::id(),
                        key: key.clone(),
                        start_ms,
                        end_ms,
                        error: Some(e.kind().as_str().to_owned()),
                        retryable: e.is_retryable(),
                        message: Some(e.to_string()),
                    });
                    s.error(&e);
                    if Instant::now() >= give_up {
                        s.unfinished += 1;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        tokio::time::sleep(pace).await;
    }
    (s, events)
}
