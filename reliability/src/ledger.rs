//! The external ledger: one line per execution of a wrapped function, in a file outside
//! every store and server under test.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One execution (or one step of it): which key, in which process, as which attempt, when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The argument the function was called with (the scenario's key).
    pub key: String,
    /// The process that ran it.
    pub pid: u32,
    /// The attempt number the wrapper gave it.
    pub attempt: u32,
    /// When it started, or the step was taken (milliseconds since the Unix epoch).
    pub at_ms: i64,
    /// What the scenario added ([`Ledger::append_noted`]); empty for [`Ledger::append`].
    pub note: String,
}

/// A ledger file shared by every process of a scenario.
///
/// Each execution appends one short line with a single `write` to the file opened with
/// `O_APPEND`, so lines from concurrent processes never interleave and none is lost when
/// a process is killed right after writing it.
#[derive(Clone, Debug)]
pub struct Ledger {
    path: PathBuf,
}

impl Ledger {
    /// The ledger at `path` (created on the first append).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Ledger { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records an execution of `key` by this process.
    ///
    /// # Panics
    ///
    /// If the file cannot be written: an execution that cannot be counted must not go
    /// unnoticed.
    pub fn append(&self, key: &str, attempt: u32) {
        self.append_noted(key, attempt, "");
    }

    /// Records an execution of `key` by this process, or a step of one, with a note that
    /// tells it apart (`run7`, `run7 inserted`).
    ///
    /// # Panics
    ///
    /// As [`append`](Self::append), or when the key or note holds a tab or a newline.
    pub fn append_noted(&self, key: &str, attempt: u32, note: &str) {
        assert!(
            !key.contains(['\t', '\n']) && !note.contains(['\t', '\n']),
            "ledger keys and notes are plain: {key:?} {note:?}"
        );
        let (pid, at) = (std::process::id(), crate::now_ms());
        let line = if note.is_empty() {
            format!("{key}\t{pid}\t{attempt}\t{at}\n")
        } else {
            format!("{key}\t{pid}\t{attempt}\t{at}\t{note}\n")
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .unwrap_or_else(|e| panic!("open the ledger {}: {e}", self.path.display()));
        file.write_all(line.as_bytes())
            .unwrap_or_else(|e| panic!("append to the ledger {}: {e}", self.path.display()));
    }

    /// Every execution recorded so far, in the order they were appended.
    ///
    /// # Panics
    ///
    /// On a malformed line.
    pub fn entries(&self) -> Vec<Entry> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!("read the ledger {}: {e}", self.path.display()),
        };
        text.lines()
            .map(|line| {
                let f: Vec<&str> = line.split('\t').collect();
                let parse = || -> Option<Entry> {
                    Some(Entry {
                        key: (*f.first()?).to_owned(),
                        pid: f.get(1)?.parse().ok()?,
                        attempt: f.get(2)?.parse().ok()?,
                        at_ms: f.get(3)?.parse().ok()?,
                        note: f.get(4).copied().unwrap_or_default().to_owned(),
                    })
                };
                match (f.len(), parse()) {
                    (4 | 5, Some(entry)) => entry,
                    _ => panic!("malformed ledger line {line:?}"),
                }
            })
            .collect()
    }

    /// Executions per key.
    pub fn by_key(&self) -> BTreeMap<String, Vec<Entry>> {
        let mut map = BTreeMap::<String, Vec<Entry>>::new();
        for e in self.entries() {
            map.entry(e.key.clone()).or_default().push(e);
        }
        map
    }

    /// Waits until an entry matches `pred` and returns it.
    ///
    /// # Panics
    ///
    /// When none does within `within`.
    pub async fn wait_for(&self, within: Duration, pred: impl Fn(&Entry) -> bool) -> Entry {
        let deadline = Instant::now() + within;
        loop {
            if let Some(e) = self.entries().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no matching execution in the ledger after {within:?}: {:?}",
                self.entries()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the ledger holds at least `n` entries.
    ///
    /// # Panics
    ///
    /// When it does not within `within`.
    pub async fn wait_len(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.entries().len() < n {
            assert!(
                Instant::now() < deadline,
                "the ledger never reached {n} executions in {within:?} (has {})",
                self.entries().len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
