//! The lease journal: every claim that acquired a key (or failed), and every renewal,
//! completion and release, as the store answered it, one JSON line per operation.
//!
//! The ledger says when each execution started; the journal says how long its lease was
//! held as far as the store confirmed it (the expiry of the acquiring claim and of each
//! renewal that returned) and whether its result was recorded. Together they tell a
//! takeover after a lapsed lease from a duplicate execution under a live one.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use stent_core::{
    Capabilities, Claim, ClaimOutcome, LeaseToken, ListQuery, Namespace, Page, Record, RecordMeta,
    Result, ResultStore, Timestamp,
};

/// One lease operation, as the store answered it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseOp {
    /// The process that sent it.
    pub pid: u32,
    /// The store key (the wrapper's derived key, not the function's argument).
    pub key: String,
    /// The lease token of the claim it concerns.
    pub token: String,
    /// `claim`, `renew`, `complete` or `release`.
    pub op: String,
    /// When it was sent (milliseconds since the Unix epoch).
    pub start_ms: i64,
    /// When its answer came back.
    pub end_ms: i64,
    /// `acquired` (a claim that won the key), `ok`, `released`, `not_held` (a release
    /// that found another owner or none), or the error's kind.
    pub outcome: String,
    /// The attempt a claim acquired.
    pub attempt: Option<u32>,
    /// The lease expiry the store confirmed (an acquiring claim, a renewal that returned).
    pub lease_expires_ms: Option<i64>,
}

/// A store that journals the lease operations of this process to a file (claims only when
/// they acquire the key or fail: the polls of waiting callers would drown the rest).
#[derive(Debug)]
pub struct Journaled {
    store: Arc<dyn ResultStore>,
    file: PathBuf,
}

impl Journaled {
    /// Wraps `store`, appending to `file`.
    pub fn new(store: Arc<dyn ResultStore>, file: impl Into<PathBuf>) -> Self {
        Journaled {
            store,
            file: file.into(),
        }
    }

    fn log(&self, op: LeaseOp) {
        append_line(
            &self.file,
            &serde_json::to_string(&op).expect("journal lines serialize"),
        );
    }

    fn op(&self, op: &str, key: &str, token: &LeaseToken, start_ms: i64) -> LeaseOp {
        LeaseOp {
            pid: std::process::id(),
            key: key.to_owned(),
            token: token.as_str().to_owned(),
            op: op.to_owned(),
            start_ms,
            end_ms: crate::now_ms(),
            outcome: String::new(),
            attempt: None,
            lease_expires_ms: None,
        }
    }
}

/// Every operation in the journal files of `dir` (one per process).
///
/// # Panics
///
/// On an unreadable file or a malformed line.
pub fn read_journal(dir: &Path) -> Vec<LeaseOp> {
    let mut ops = Vec::new();
    for file in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = file.expect("a journal file").path();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        ops.extend(text.lines().map(|l| {
            serde_json::from_str::<LeaseOp>(l)
                .unwrap_or_else(|e| panic!("bad journal line {l:?}: {e}"))
        }));
    }
    ops
}

/// Appends `line` and a newline with one `write` (`O_APPEND`), as the ledger does.
fn append_line(path: &Path, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.write_all(format!("{line}\n").as_bytes())
        .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
}

fn kind<T>(r: &Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.kind().as_str().to_owned(),
    }
}

#[async_trait]
impl ResultStore for Journaled {
    fn capabilities(&self) -> Capabilities {
        self.store.capabilities()
    }
    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Record>> {
        self.store.get(ns, key).await
    }
    async fn claim(&self, ns: Namespace, key: &str, claim: &Claim<'_>) -> Result<ClaimOutcome> {
        let start = crate::now_ms();
        let r = self.store.claim(ns, key, claim).await;
        let mut op = self.op("claim", key, claim.token, start);
        match &r {
            Ok(ClaimOutcome::Acquired {
                attempt,
                lease_expires_at,
            }) => {
                op.outcome = "acquired".to_owned();
                op.attempt = Some(*attempt);
                op.lease_expires_ms = Some(lease_expires_at.as_millis());
            }
            Ok(_) => return r,
            Err(e) => op.outcome = e.kind().as_str().to_owned(),
        }
        self.log(op);
        r
    }
    async fn renew(
        &self,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        lease: Duration,
    ) -> Result<Timestamp> {
        let start = crate::now_ms();
        let r = self.store.renew(ns, key, token, lease).await;
        let mut op = self.op("renew", key, token, start);
        op.outcome = kind(&r);
        op.lease_expires_ms = r.as_ref().ok().map(|t| t.as_millis());
        self.log(op);
        r
    }
    async fn complete(
        &self,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()> {
        let start = crate::now_ms();
        let r = self.store.complete(ns, key, token, value, ttl).await;
        let mut op = self.op("complete", key, token, start);
        op.outcome = kind(&r);
        self.log(op);
        r
    }
    async fn release(&self, ns: Namespace, key: &str, token: &LeaseToken) -> Result<bool> {
        let start = crate::now_ms();
        let r = self.store.release(ns, key, token).await;
        let mut op = self.op("release", key, token, start);
        op.outcome = match &r {
            Ok(true) => "released".to_owned(),
            Ok(false) => "not_held".to_owned(),
            Err(e) => e.kind().as_str().to_owned(),
        };
        self.log(op);
        r
    }
    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        meta: RecordMeta<'_>,
    ) -> Result<()> {
        self.store.put(ns, key, value, ttl, meta).await
    }
    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool> {
        self.store.delete(ns, key).await
    }
    async fn list(&self, ns: Namespace, query: &ListQuery) -> Result<Page> {
        self.store.list(ns, query).await
    }
    async fn clear(&self, ns: Namespace) -> Result<u64> {
        self.store.clear(ns).await
    }
    async fn purge_expired(&self, ns: Namespace, limit: usize) -> Result<u64> {
        self.store.purge_expired(ns, limit).await
    }
}
