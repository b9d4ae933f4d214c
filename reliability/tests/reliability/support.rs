//! What every scenario needs: a target of its own on each backend, a scratch directory
//! for the ledger and start files, and figures printed for RELIABILITY.md.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stent_conformance::servers::local::MotoServer;
use stent_reliability::job::Event;
use stent_reliability::{Backend, Job, Ledger, Report, Target, Task, backends_required};
use tempfile::TempDir;

/// The worker binary.
pub(crate) const WORKER: &str = env!("CARGO_BIN_EXE_stent-reliability-worker");

/// Time for a worker to start and connect, or for a job to finish, on a loaded machine.
pub(crate) const PATIENCE: Duration = Duration::from_secs(120);

/// The loopback port whose listener is the suite's turn (see [`turn`]).
const TURN_PORT: u16 = 5597;

/// Holding the turn means no other scenario of this suite runs meanwhile, in this process
/// or another (nextest runs each test in its own).
///
/// Scenarios start up to eight processes and time leases of a few hundred milliseconds:
/// on a two-core machine, two of them at once would measure each other. The turn is a
/// listener on a fixed loopback port, which the system releases when its holder exits,
/// however it exits.
pub(crate) struct Turn(#[allow(dead_code)] TcpListener);

/// Waits for the turn.
pub(crate) async fn turn() -> Turn {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        match TcpListener::bind(("127.0.0.1", TURN_PORT)) {
            Ok(listener) => return Turn(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                assert!(
                    Instant::now() < deadline,
                    "127.0.0.1:{TURN_PORT} stayed taken for 10 minutes: is another program using it?"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot take the suite's turn on 127.0.0.1:{TURN_PORT}: {e}"),
        }
    }
}

/// A scenario's store and scratch directory (and its own DynamoDB-API server), held with
/// the suite's turn.
pub(crate) struct Fixture {
    pub(crate) target: Target,
    pub(crate) dir: TempDir,
    _moto: Option<MotoServer>,
    _turn: Turn,
}

impl Fixture {
    /// A target on the server the scenario started itself.
    pub(crate) fn own(target: Target, turn: Turn) -> Fixture {
        Fixture {
            target,
            dir: scratch(),
            _moto: None,
            _turn: turn,
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn ledger(&self) -> Ledger {
        Ledger::new(self.path("ledger"))
    }

    pub(crate) fn go(&self) -> PathBuf {
        self.path("go")
    }

    pub(crate) fn job(&self, lease: Duration, task: Task) -> Job {
        Job {
            target: self.target.clone(),
            ledger: self.ledger().path().to_owned(),
            go: self.go(),
            lease_ms: u64::try_from(lease.as_millis()).unwrap(),
            task,
        }
    }

    /// Removes what the scenario left in a shared server.
    pub(crate) async fn cleanup(&self) {
        self.target
            .cleanup()
            .await
            .unwrap_or_else(|e| panic!("cleanup of {:?}: {e}", self.target.backend));
    }
}

fn scratch() -> TempDir {
    tempfile::Builder::new()
        .prefix("stent-reliability-")
        .tempdir()
        .expect("a scratch directory")
}

/// A name no other run of any scenario uses: `{scenario}{pid}x{nanos}`.
pub(crate) fn unique(scenario: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000_000;
    format!("{scenario}{}x{nanos}", std::process::id())
}

/// Gives up on a scenario whose backend is not configured: a failure under
/// `STENT_REQUIRE_BACKENDS=1`, a loud skip otherwise.
pub(crate) fn unavailable<T>(test: &str, reason: &str) -> Option<T> {
    assert!(
        !backends_required(),
        "{test}: STENT_REQUIRE_BACKENDS=1 but {reason}"
    );
    eprintln!("SKIPPED {test}: {reason} (set STENT_REQUIRE_BACKENDS=1 to fail instead)");
    None
}

fn env(test: &str, var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => unavailable(test, &format!("{var} is not set (scripts/test sets it)")),
    }
}

/// A fresh target on `backend` for the scenario `scenario`, prepared: a SQLite file in the
/// scratch directory, a schema of its own on the shared PostgreSQL, a key prefix of its
/// own on the shared Redis and Redis Cluster, a moto server of its own for DynamoDB (the
/// shared one answers one request at a time, and these scenarios would hold it for
/// seconds).
pub(crate) async fn fixture(backend: Backend, scenario: &str, test: &str) -> Option<Fixture> {
    let turn = turn().await;
    let id = unique(scenario);
    let dir = scratch();
    let mut moto = None;
    let target = match backend {
        Backend::Sqlite => {
            let path = dir.path().join("stent.db");
            Target::new(backend, path.display().to_string(), "")
        }
        Backend::Postgres => {
            // `stent_test_{unix secs}_…`: the shared server's test sweep drops it if a
            // failed run leaves it behind.
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let url = env(test, "STENT_POSTGRES_URL")?;
            Target::new(backend, url, format!("stent_test_{secs}_{id}"))
        }
        Backend::Redis => Target::new(backend, env(test, "STENT_REDIS_URL")?, id),
        Backend::RedisCluster => Target::new(backend, env(test, "STENT_REDIS_CLUSTER_URL")?, id),
        Backend::DynamoDb => {
            env(test, "STENT_MOTO_SERVER")?;
            let server =
                MotoServer::start().unwrap_or_else(|e| panic!("{test}: cannot start moto: {e}"));
            let target = Target::new(backend, server.url(), id);
            moto = Some(server);
            target
        }
    };
    target
        .prepare()
        .await
        .unwrap_or_else(|e| panic!("{test}: {} is unreachable: {e}", backend.name()));
    Some(Fixture {
        target,
        dir,
        _moto: moto,
        _turn: turn,
    })
}

/// Prints one measured figure line: `FIGURE <scenario> <backend> key=value …`.
pub(crate) fn figure(scenario: &str, backend: Backend, pairs: &[(&str, String)]) {
    let pairs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    eprintln!("FIGURE {scenario} {} {}", backend.name(), pairs.join(" "));
}

/// Every event the workers appended to the files in `dir` ([`Task::Restart`],
/// [`Task::Transactional`]).
pub(crate) fn read_events(dir: &Path) -> Vec<Event> {
    let mut events = Vec::new();
    for file in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
        events.extend(
            text.lines()
                .map(|l| serde_json::from_str::<Event>(l).unwrap()),
        );
    }
    events
}

/// The [`Report::Call`]s among `reports`.
pub(crate) fn calls(reports: &[Report]) -> Vec<stent_reliability::job::CallReport> {
    reports
        .iter()
        .filter_map(|r| match r {
            Report::Call(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

/// The one [`Report::Summary`] among `reports`.
pub(crate) fn summary(reports: &[Report]) -> stent_reliability::job::Summary {
    let mut it = reports.iter().filter_map(|r| match r {
        Report::Summary(s) => Some(s.clone()),
        _ => None,
    });
    let s = it.next().expect("a worker's summary");
    assert!(it.next().is_none(), "one summary per worker");
    s
}
