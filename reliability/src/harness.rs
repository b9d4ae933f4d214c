//! The parent's side: spawning workers, reading their reports, starting them together.

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::job::{REPORT_PREFIX, Report};

/// A worker process, killed if dropped while running.
#[derive(Debug)]
pub struct Worker {
    name: String,
    child: Child,
    pid: u32,
    reports: mpsc::UnboundedReceiver<Report>,
    /// Reports received but not yet asked for.
    backlog: Vec<Report>,
}

impl Worker {
    /// Starts `exe` with `job` as JSON: the `stent-reliability-worker` binary on a
    /// [`Job`](crate::Job), or another of the suite's binaries on a job of its own. Its
    /// stderr goes to this process's stderr, so a worker's panic shows in the scenario's
    /// output.
    ///
    /// # Panics
    ///
    /// If the process cannot be started.
    pub fn spawn(exe: &Path, name: impl Into<String>, job: &impl Serialize) -> Worker {
        let name = name.into();
        let mut child = Command::new(exe)
            .arg(serde_json::to_string(job).expect("jobs serialize"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", exe.display()));
        let pid = child.id().expect("a running child has a pid");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, reports) = mpsc::unbounded_channel();
        let label = name.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match line.strip_prefix(REPORT_PREFIX) {
                    Some(json) => {
                        let r: Report = serde_json::from_str(json)
                            .unwrap_or_else(|e| panic!("{label}: bad report {json:?}: {e}"));
                        let _ = tx.send(r);
                    }
                    None => eprintln!("[{label}] {line}"),
                }
            }
        });
        Worker {
            name,
            child,
            pid,
            reports,
            backlog: Vec::new(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the first report `pick` accepts (earlier ones are kept for later).
    ///
    /// # Panics
    ///
    /// When none comes within `within`, or the worker exits first.
    pub async fn expect(&mut self, within: Duration, pick: impl Fn(&Report) -> bool) -> Report {
        if let Some(i) = self.backlog.iter().position(&pick) {
            return self.backlog.remove(i);
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.reports.recv()).await {
                Ok(Some(r)) if pick(&r) => return r,
                Ok(Some(r)) => self.backlog.push(r),
                Ok(None) => {
                    let status = self.child.wait().await;
                    panic!(
                        "{} exited ({status:?}) before the expected report; got {:?}",
                        self.name, self.backlog
                    )
                }
                Err(_) => panic!(
                    "{}: no expected report within {within:?}; got {:?}",
                    self.name, self.backlog
                ),
            }
        }
    }

    /// Kills the process with `SIGKILL` and reaps it.
    ///
    /// # Panics
    ///
    /// If it had already exited, or did not die of the signal.
    pub async fn kill(&mut self) -> ExitStatus {
        self.child
            .start_kill()
            .unwrap_or_else(|e| panic!("kill {}: {e}", self.name));
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} outlived SIGKILL for 10 s", self.name))
            .expect("reap the worker");
        assert_eq!(
            status.signal(),
            Some(9),
            "{} was to die of SIGKILL: {status:?}",
            self.name
        );
        status
    }

    /// Waits for the process to exit successfully and returns every report not yet
    /// taken with [`expect`](Self::expect).
    ///
    /// # Panics
    ///
    /// If it fails, or is still running after `within` (it is killed then).
    pub async fn finish(mut self, within: Duration) -> Vec<Report> {
        let status = match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("reap the worker"),
            Err(_) => {
                let _ = self.child.start_kill();
                panic!("{} still running after {within:?}", self.name)
            }
        };
        assert!(status.success(), "{} failed: {status:?}", self.name);
        let mut out = std::mem::take(&mut self.backlog);
        while let Some(r) = self.reports.recv().await {
            out.push(r);
        }
        out
    }
}

/// Waits until every worker has reported [`Report::Ready`], then creates the `go` file
/// they wait for, so their calls start together.
///
/// # Panics
///
/// When a worker is not ready within `within`.
pub async fn start_together(workers: &mut [Worker], go: &Path, within: Duration) {
    for w in workers.iter_mut() {
        w.expect(within, |r| matches!(r, Report::Ready { .. }))
            .await;
    }
    std::fs::write(go, b"go").unwrap_or_else(|e| panic!("create {}: {e}", go.display()));
}
