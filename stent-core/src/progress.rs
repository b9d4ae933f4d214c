//! The per-execution progress log: which steps an execution ran, and which were cache hits.
//!
//! Calls made inside [`Stent::run_execution`](crate::Stent::run_execution) are recorded, one
//! entry per call, and read back with [`Stent::state_of`](crate::Stent::state_of):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> stent_core::Result<()> {
//! use std::convert::Infallible;
//! use stent_core::{MemoryStore, Stent};
//!
//! let stent = Stent::new(MemoryStore::new());
//! let expensive_computation = stent
//!     .durable("expensive_computation")
//!     .cached()
//!     .wrap(|h: String| async move { Ok::<_, Infallible>(h.len()) });
//!
//! stent
//!     .run_execution("exec-1", async {
//!         expensive_computation.call("hash-1".into()).await?; // computes
//!         expensive_computation.call("hash-1".into()).await?; // cache hit
//!         Ok::<_, stent_core::Error<Infallible>>(())
//!     })
//!     .await
//!     .unwrap();
//!
//! let state = stent.state_of("exec-1").await?;
//! assert_eq!(state.progress[0].status, "executed");
//! assert_eq!(state.progress[1].status, "cache_hit");
//! # Ok(()) }
//! ```
//!
//! # Where it lives
//!
//! Each entry is a JSON record in the store's [`Namespace::Progress`] (a `progress` table in
//! SQL stores), under the key `stent:progress|{execution id}|{8-digit sequence}.{run token}`,
//! expiring after [`PROGRESS_RETENTION`] (7 days). A run numbers its entries after the last
//! one logged; its random token keeps apart the entries of concurrent runs of one id, which
//! share sequence numbers. Nothing after the id holds a `|`, so the id ends at the key's last
//! `|`: the log of `order-1` holds none of `order-1|retry`'s entries.
//!
//! The log is debugging history, not a cache: clearing the cache (`stent cache clear`) leaves
//! it. Recording costs one write per call made inside an execution, and never fails the call:
//! a failed write is logged.
//!
//! The scope is a task-local: calls made in tasks spawned from inside the execution are
//! not recorded unless those tasks run their own `run_execution` with the same id.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::codec::{self, Stored};
use crate::error::{Error, Result};
use crate::outcome::{Status, Traced};
use crate::record::{ListQuery, Namespace, RecordMeta, Timestamp};
use crate::store::ResultStore;

/// Key prefix of progress entries in the progress namespace.
pub const PROGRESS_PREFIX: &str = "stent:progress|";
/// How long progress entries are kept.
pub const PROGRESS_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// One call made inside an execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProgressEntry {
    /// The durable function's name.
    pub step: String,
    /// `executed`, `cache_hit` (served from the cache or replayed from the idempotency
    /// namespace, as the guide names it), `joined` (got another caller's result) or `failed`.
    pub status: String,
    /// The precise outcome: `executed`, `cache_hit`, `replayed`, `joined`, or the error kind.
    pub detail: String,
    /// The attempt that produced the result (0 when the call failed before one).
    pub attempt: u32,
    /// The call's key (empty when the arguments gave no key).
    pub key: String,
    /// When the call started.
    pub started_at: Timestamp,
    /// When it finished.
    pub finished_at: Timestamp,
}

/// What an execution did, step by step.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecutionState {
    /// The execution id.
    pub id: String,
    /// One entry per call, in call order (concurrent runs of the id side by side).
    pub progress: Vec<ProgressEntry>,
}

pub(crate) struct Scope {
    id: Arc<str>,
    /// Ends every entry key of this run.
    token: String,
    store: Arc<dyn ResultStore>,
    next: AtomicU32,
}

tokio::task_local! {
    static SCOPE: Arc<Scope>;
}

fn entry_prefix(id: &str) -> String {
    format!("{PROGRESS_PREFIX}{id}|")
}

/// Whether the current task runs inside an execution.
pub(crate) fn in_scope() -> bool {
    SCOPE.try_with(|_| ()).is_ok()
}

/// Appends an entry for a finished call to the current execution's log, if there is one.
pub(crate) async fn record<R, E>(
    step: &str,
    key: &str,
    result: &Result<Traced<R>, Error<E>>,
    started_at: Timestamp,
) {
    let Ok(scope) = SCOPE.try_with(Arc::clone) else {
        return;
    };
    let (status, detail, attempt) = match result {
        Ok(Traced { outcome, .. }) => {
            let status = match outcome.status {
                Status::Executed => "executed",
                Status::CacheHit | Status::Replayed | Status::Stale => "cache_hit",
                Status::Joined => "joined",
            };
            (status, outcome.status.as_str(), outcome.attempt)
        }
        Err(e) => ("failed", e.kind().as_str(), 0),
    };
    let entry = ProgressEntry {
        step: step.to_owned(),
        status: status.to_owned(),
        detail: detail.to_owned(),
        attempt,
        key: key.to_owned(),
        started_at,
        finished_at: Timestamp::now(),
    };
    let seq = scope.next.fetch_add(1, Ordering::SeqCst);
    let entry_key = format!("{}{seq:08}.{}", entry_prefix(&scope.id), scope.token);
    let meta = RecordMeta {
        function: Some(step),
        ..RecordMeta::default()
    };
    let written = async {
        let bytes = codec::encode_value(&entry)?;
        let (ns, ttl) = (Namespace::Progress, Some(PROGRESS_RETENTION));
        scope.store.put(ns, &entry_key, &bytes, ttl, meta).await
    };
    if let Err(e) = written.await {
        tracing::warn!(error = %e, execution = %scope.id, "recording progress failed");
    }
}

/// Runs `fut` as execution `id` of the log in `store` (see [`Stent::run_execution`](crate::Stent::run_execution)).
pub(crate) async fn run<F: Future>(
    store: &Arc<dyn ResultStore>,
    id: Arc<str>,
    fut: F,
) -> F::Output {
    // Continue numbering after the last entry logged (its digits before `.{token}`, or all of
    // an entry logged before runs had tokens).
    let logged = entries(&**store, &id).await.unwrap_or_default();
    let last = logged
        .last()
        .and_then(|(key, _)| key.rsplit('|').next()?.get(..8)?.parse().ok());
    let next = AtomicU32::new(last.map_or(0, |seq: u32| seq.saturating_add(1)));
    let (token, store) = (format!("{:016x}", rand::random::<u64>()), Arc::clone(store));
    let scope = Scope {
        id,
        token,
        store,
        next,
    };
    SCOPE.scope(Arc::new(scope), fut).await
}

/// The progress log of execution `id` in `store` (see [`Stent::state_of`](crate::Stent::state_of)).
pub(crate) async fn read(store: &dyn ResultStore, id: &str) -> Result<ExecutionState> {
    let entries = entries(store, id).await?;
    let progress = entries.into_iter().map(|(_, entry)| entry).collect();
    let id = id.to_owned();
    Ok(ExecutionState { id, progress })
}

/// The entries of execution `id` in `store` with their keys, in key order.
async fn entries(store: &dyn ResultStore, id: &str) -> Result<Vec<(String, ProgressEntry)>> {
    let mut query = ListQuery::new().prefix(entry_prefix(id)).limit(500);
    let mut progress = Vec::new();
    loop {
        let page = store.list(Namespace::Progress, &query).await?;
        for record in page.records {
            // Ids that extend this one (`{id}|…`) share the prefix; their keys have a `|` after it.
            if record.key.rfind('|') != Some(query.prefix.len() - 1) {
                continue;
            }
            let bytes = record.value.unwrap_or_default();
            let Stored::Value(entry) = codec::decode::<_, IgnoredAny>(&record.key, &bytes)? else {
                return Err(Error::decode(&record.key, "progress entry holds an error"));
            };
            progress.push((record.key, entry));
        }
        let Some(next) = page.next_cursor else { break };
        query.cursor = Some(next);
    }
    Ok(progress)
}
