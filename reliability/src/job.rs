//! What a worker process does ([`Job`]) and what it tells its parent ([`Report`]).
//!
//! The parent passes a job as JSON in the worker's first argument; the worker prints one
//! report per line on stdout, as JSON after [`REPORT_PREFIX`], and exits 0 when the job is
//! done. Anything unexpected panics, so the parent sees a failed process.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Display;
use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rand::SeedableRng as _;
use rand::seq::SliceRandom as _;
use serde::{Deserialize, Serialize};
use stent_core::{
    Durable, Execution, InFlight, Namespace, ResultStore, SqlStore, Stent, Traced, TxDurable,
};
use stent_postgres::PostgresStore;
use stent_sqlite::SqliteStore;

use crate::effects::EffectsStore;
use crate::journal::Journaled;
use crate::ledger::Ledger;
use crate::target::{Backend, Target};

/// Marks a report line on a worker's stdout.
pub const REPORT_PREFIX: &str = "@@ ";

/// The name of [`Task::Transactional`]'s function.
pub const TX_FUNCTION: &str = "reliability::transactional";

/// The name of [`Task::Network`]'s function.
pub const NETWORK_FUNCTION: &str = "reliability::network";

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
    /// line per call attempt goes to `{events}/{pid}.jsonl` ([`Event`]) as the attempt ends.
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
    /// Transactional calls ([`wrap_tx`](stent_core::DurableBuilder::wrap_tx)) on a SQL
    /// target, meant to run while the parent kills workers and restarts the server: like
    /// [`Restart`](Self::Restart), but with keys dealt by [`Shape::windowed_task_keys`],
    /// and call `j` of every task made no earlier than `j × step_ms` after the start line
    /// appeared (the `go` file's modification time), so a replacement for a killed worker
    /// catches up at once, then keeps step with the others.
    ///
    /// The function appends an execution to the ledger (note `run{n}`, counted in this
    /// process), sleeps a random 0–`pause_ms` ms, inserts `(key, value)` into the target's
    /// [effects table](Target::effects_table), appends `run{n} inserted` to the `steps`
    /// ledger, sleeps a random 0–`pause_ms` ms again, appends `run{n} returned` and returns
    /// [`tx_value_of`]; then the wrapper records the result and commits. On SQLite, the
    /// `COMMIT` then appends `run{n} committing` and sleeps a random 0–`commit_pause_ms` ms
    /// before its commit is written ([`EffectsStore::on_commit`]).
    Transactional {
        /// Which keys each task calls: `calls_per_task` is the number of steps (`work_ms`
        /// is not used).
        shape: Shape,
        /// Time between two steps.
        step_ms: u64,
        /// The longest of each of the function's two sleeps.
        pause_ms: u64,
        /// SQLite: the longest sleep of the commit hook (PostgreSQL's `COMMIT` sleeps in
        /// the effects table's trigger, set when the table is created).
        commit_pause_ms: u64,
        /// A task that cannot finish its keys within this time fails.
        give_up_ms: u64,
        /// The directory events are written to.
        events: PathBuf,
        /// The ledger of the function's steps.
        steps: PathBuf,
    },
    /// Calls meant to run through network faults (latency, packet loss, a partition): keys
    /// dealt and paced as in [`Transactional`](Self::Transactional), each call of a leased
    /// function (`shape.work_ms` of work, [`value_of`]) retried every 50 ms until it
    /// succeeds, as in [`Restart`](Self::Restart). Every lease operation of the process
    /// goes to `{journal}/{pid}.jsonl` ([`Journaled`]).
    Network {
        /// Which keys each task calls: `calls_per_task` is the number of steps.
        shape: Shape,
        /// Time between two steps.
        step_ms: u64,
        /// A task that cannot finish its keys within this time fails.
        give_up_ms: u64,
        /// The directory events are written to.
        events: PathBuf,
        /// The directory of the lease journals.
        journal: PathBuf,
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

    /// The keys of each task of this process, for `calls_per_task: Some(n)`, dealt in
    /// windows: the keys are cut into `n` runs of consecutive keys, and call `j` of every
    /// task is dealt from the `j`-th, from a deck holding each of its keys equally often.
    /// Every caller of a key calls it at the same step of its task, so with tasks that keep
    /// step, keys first run a few at a time over the whole scenario, each with callers from
    /// several processes at once.
    ///
    /// # Panics
    ///
    /// When `calls_per_task` is `None` or exceeds `keys`.
    pub fn windowed_task_keys(&self) -> Vec<Vec<String>> {
        let n = self.calls_per_task.expect("windows need calls_per_task");
        assert!(0 < n && n <= self.keys, "{n} windows of {} keys", self.keys);
        let callers = self.processes * self.tasks;
        let mut tasks = vec![Vec::with_capacity(n); self.tasks];
        for w in 0..n {
            let (first, end) = (w * self.keys / n, (w + 1) * self.keys / n);
            let mut deck: Vec<usize> = (0..callers).map(|j| first + j % (end - first)).collect();
            let seed = self.seed ^ (w as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            deck.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
            for (t, calls) in tasks.iter_mut().enumerate() {
                calls.push(Shape::key(deck[self.process * self.tasks + t]));
            }
        }
        tasks
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
    /// The value returned, on success.
    #[serde(default)]
    pub value: Option<String>,
}

/// The value the scenarios' function returns: which key, which process, which attempt.
pub fn value_of(key: &str, pid: u32, attempt: u32) -> String {
    format!("{key}:pid{pid}:attempt{attempt}")
}

/// The value [`Task::Transactional`]'s function returns: which key, which process, which of
/// that process's executions (`run{n}`; a rolled-back claim leaves no trace, so a retry is
/// attempt 1 again and only the run tells two executions of one process apart).
pub fn tx_value_of(key: &str, pid: u32, run: &str) -> String {
    format!("{key}:pid{pid}:{run}")
}

/// Appends `line` and a newline to `path` with one `write` (`O_APPEND`), as the ledger does.
fn append_line(path: &Path, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.write_all(format!("{line}\n").as_bytes())
        .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
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
        if let Task::Transactional { .. } = self.task {
            return match self.target.backend {
                Backend::Postgres => self.transactional::<PostgresStore>().await,
                Backend::Sqlite => self.transactional::<SqliteStore>().await,
                other => panic!("no transactional calls on {other:?}"),
            };
        }
        let mut store = self
            .target
            .open()
            .await
            .unwrap_or_else(|e| panic!("worker cannot open {:?}: {e}", self.target.backend));
        if let Task::Network { journal, .. } = &self.task {
            let file = journal.join(format!("{}.jsonl", std::process::id()));
            store = Arc::new(Journaled::new(store, file));
        }
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
                report_totals(pid, started, handles).await;
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
                let pace = Pace::After(Duration::from_millis(pace_ms));
                let events = events.join(format!("{pid}.jsonl"));
                let handles: Vec<_> = fs
                    .into_iter()
                    .zip(tasks)
                    .map(|(f, keys)| {
                        let run = call_through_outage(f, keys, pace, give_up, events.clone());
                        tokio::spawn(run)
                    })
                    .collect();
                report_totals(pid, started, handles).await;
            }
            Task::Network {
                shape,
                step_ms,
                give_up_ms,
                events,
                journal: _,
            } => {
                let work = Duration::from_millis(shape.work_ms);
                let tasks = shape.windowed_task_keys();
                let fs: Vec<_> = tasks
                    .iter()
                    .map(|_| ledgered(&stent, NETWORK_FUNCTION, lease, &ledger, work))
                    .collect();
                report(&Report::Ready { pid });
                wait_for_file(&self.go, Duration::from_secs(120), "start line").await;
                let epoch = std::fs::metadata(&self.go)
                    .and_then(|m| m.modified())
                    .expect("the start line's time");
                let started = Instant::now();
                let give_up = started + Duration::from_millis(give_up_ms);
                let pace = Pace::Steps {
                    epoch,
                    step: Duration::from_millis(step_ms),
                };
                let events = events.join(format!("{pid}.jsonl"));
                let handles: Vec<_> = fs
                    .into_iter()
                    .zip(tasks)
                    .map(|(f, keys)| {
                        tokio::spawn(call_through_outage(f, keys, pace, give_up, events.clone()))
                    })
                    .collect();
                report_totals(pid, started, handles).await;
            }
            Task::Transactional { .. } => unreachable!("run by Job::transactional"),
        }
    }

    /// Runs a [`Task::Transactional`] on the target's store, as an `S`.
    async fn transactional<S: EffectsStore>(self) {
        let store = S::open(&self.target)
            .await
            .unwrap_or_else(|e| panic!("worker cannot open {:?}: {e}", self.target.backend));
        let Task::Transactional {
            shape,
            step_ms,
            pause_ms,
            commit_pause_ms,
            give_up_ms,
            events,
            steps,
        } = self.task
        else {
            unreachable!("a transactional task")
        };
        let stent = Stent::new(store.clone());
        let (ledger, steps) = (Ledger::new(&self.ledger), Ledger::new(steps));
        let table = self.target.effects_table();
        let runs = Arc::new(AtomicU64::new(0));
        let pid = std::process::id();
        let tasks = shape.windowed_task_keys();
        let fs: Vec<_> = tasks
            .iter()
            .map(|_| {
                let (ledger, steps) = (ledger.clone(), steps.clone());
                let (table, runs) = (table.clone(), Arc::clone(&runs));
                let builder = stent.durable(TX_FUNCTION);
                builder.wrap_tx(&store, move |tx, key: String| {
                    let (ledger, steps) = (ledger.clone(), steps.clone());
                    let (table, runs) = (table.clone(), Arc::clone(&runs));
                    Box::pin(async move {
                        let attempt = Execution::current().map_or(0, |e| e.attempt);
                        let run = format!("run{}", runs.fetch_add(1, Ordering::Relaxed) + 1);
                        ledger.append_noted(&key, attempt, &run);
                        pause(pause_ms).await;
                        let value = tx_value_of(&key, pid, &run);
                        let inserted = S::insert_effect(tx, &table, &key, &value).await;
                        inserted.map_err(|e| format!("insert the effect: {e}"))?;
                        steps.append_noted(&key, attempt, &format!("{run} inserted"));
                        let committing = {
                            let (steps, key, run) = (steps.clone(), key.clone(), run.clone());
                            let mut first = true;
                            move || {
                                // Once: the hook stays on the connection.
                                if std::mem::take(&mut first) {
                                    steps.append_noted(&key, attempt, &format!("{run} committing"));
                                    let ms = rand::random_range(0..=commit_pause_ms);
                                    std::thread::sleep(Duration::from_millis(ms));
                                }
                            }
                        };
                        let hooked = S::on_commit(tx, Box::new(committing)).await;
                        hooked.map_err(|e| format!("set the commit hook: {e}"))?;
                        pause(pause_ms).await;
                        steps.append_noted(&key, attempt, &format!("{run} returned"));
                        Ok::<_, String>(value)
                    })
                })
            })
            .collect();
        report(&Report::Ready { pid });
        wait_for_file(&self.go, Duration::from_secs(120), "start line").await;
        let epoch = std::fs::metadata(&self.go)
            .and_then(|m| m.modified())
            .expect("the start line's time");
        let started = Instant::now();
        let give_up = started + Duration::from_millis(give_up_ms);
        let pace = Pace::Steps {
            epoch,
            step: Duration::from_millis(step_ms),
        };
        let events = events.join(format!("{pid}.jsonl"));
        let handles: Vec<_> = fs
            .into_iter()
            .zip(tasks)
            .map(|(f, keys)| {
                tokio::spawn(call_through_outage(f, keys, pace, give_up, events.clone()))
            })
            .collect();
        report_totals(pid, started, handles).await;
    }
}

/// Sleeps a random 0–`max_ms` ms.
async fn pause(max_ms: u64) {
    tokio::time::sleep(Duration::from_millis(rand::random_range(0..=max_ms))).await;
}

/// Merges the tasks' summaries and reports the process's [`Report::Summary`].
async fn report_totals(pid: u32, started: Instant, tasks: Vec<tokio::task::JoinHandle<Summary>>) {
    let mut summary = Summary {
        pid,
        ..Summary::default()
    };
    for t in tasks {
        summary.merge(t.await.expect("a task panicked"));
    }
    summary.elapsed_ms = elapsed_ms(started);
    summary.store_operations = crate::target::limited_operations();
    report(&Report::Summary(summary));
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

/// A wrapped function of the scenarios, called with a key.
trait Call: Send + 'static {
    /// The function's error.
    type Error: Display + Send;

    fn call(
        &self,
        key: String,
    ) -> impl Future<Output = Result<Traced<String>, stent_core::Error<Self::Error>>> + Send;
}

impl Call for Durable<String, String, Infallible> {
    type Error = Infallible;

    fn call(
        &self,
        key: String,
    ) -> impl Future<Output = Result<Traced<String>, stent_core::Error<Infallible>>> + Send {
        self.call_traced(key)
    }
}

impl<S: SqlStore> Call for TxDurable<S, String, String, String> {
    type Error = String;

    fn call(
        &self,
        key: String,
    ) -> impl Future<Output = Result<Traced<String>, stent_core::Error<String>>> + Send {
        self.call_traced(key)
    }
}

/// When a task of [`Task::Restart`] or [`Task::Transactional`] makes its calls.
#[derive(Clone, Copy, Debug)]
enum Pace {
    /// A pause after each call.
    After(Duration),
    /// Call `j` no earlier than `epoch + j × step`.
    Steps { epoch: SystemTime, step: Duration },
}

/// One task of [`Task::Restart`] or [`Task::Transactional`]: every key until it succeeds,
/// each attempt an [`Event`] appended to `events`.
async fn call_through_outage(
    f: impl Call,
    keys: Vec<String>,
    pace: Pace,
    give_up: Instant,
    events: PathBuf,
) -> Summary {
    let mut s = Summary::default();
    for (j, key) in keys.into_iter().enumerate() {
        if let Pace::Steps { epoch, step } = pace {
            let due = epoch + step * u32::try_from(j).expect("a few steps");
            if let Ok(wait) = due.duration_since(SystemTime::now()) {
                tokio::time::sleep(wait).await;
            }
        }
        loop {
            let start_ms = crate::now_ms();
            let result = f.call(key.clone()).await;
            let mut event = Event {
                pid: std::process::id(),
                key: key.clone(),
                start_ms,
                end_ms: crate::now_ms(),
                error: None,
                retryable: false,
                message: None,
                value: None,
            };
            match result {
                Ok(t) => {
                    event.value = Some(t.value.clone());
                    append_line(&events, &serde_json::to_string(&event).expect("serialize"));
                    s.calls += 1;
                    *s.statuses.entry(t.outcome.status.to_string()).or_default() += 1;
                    s.record(key, t.value);
                    break;
                }
                Err(e) => {
                    event.error = Some(e.kind().as_str().to_owned());
                    event.retryable = e.is_retryable();
                    event.message = Some(e.to_string());
                    append_line(&events, &serde_json::to_string(&event).expect("serialize"));
                    s.error(&e);
                    if Instant::now() >= give_up {
                        s.unfinished += 1;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        if let Pace::After(pause) = pace {
            tokio::time::sleep(pause).await;
        }
    }
    s
}
