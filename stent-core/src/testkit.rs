//! Tools for testing code built on stent: a store that fails on cue.
//!
//! Available with the `testkit` cargo feature. [`FaultStore`] wraps any [`ResultStore`] and,
//! by [`Fault`] rules, fails, delays or "loses the reply of" chosen calls of chosen operations,
//! while counting every call: it shows what code built on stent sees when the store breaks at
//! one exact step.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::convert::Infallible;
//! use stent_core::testkit::{FaultStore, Op};
//! use stent_core::{ErrorKind, MemoryStore, Status, Stent};
//!
//! // The first claim fails as if the connection dropped; everything else works.
//! let store = FaultStore::new(MemoryStore::new()).fail_nth(Op::Claim, 1);
//! let stent = Stent::new(store.clone());
//! let charge = stent
//!     .durable("billing::charge")
//!     .idempotent()
//!     .wrap(|order: String| async move { Ok::<_, Infallible>(format!("receipt-{order}")) });
//!
//! let err = charge.call("o-1".into()).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Unavailable);
//! assert!(err.is_retryable());
//!
//! // Retrying is safe: the function runs once and its result is recorded.
//! let t = charge.call_traced("o-1".into()).await.unwrap();
//! assert_eq!(t.outcome.status, Status::Executed);
//! assert_eq!(store.calls(Op::Claim), 2);
//! assert_eq!(store.calls(Op::Complete), 1);
//! assert_eq!(store.injected(Op::Claim), 1);
//! # }
//! ```

use std::fmt;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, ErrorKind, Result};
use crate::record::{
    Capabilities, Claim, ClaimOutcome, LeaseToken, ListQuery, Namespace, Page, Record, RecordMeta,
    Timestamp,
};
use crate::store::ResultStore;

named_enum! {
    /// One kind of [`ResultStore`] operation, as [`Fault`] rules and call counters name them.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Op {
        /// [`ResultStore::get`].
        Get = "get",
        /// [`ResultStore::claim`].
        Claim = "claim",
        /// [`ResultStore::renew`].
        Renew = "renew",
        /// [`ResultStore::complete`].
        Complete = "complete",
        /// [`ResultStore::release`].
        Release = "release",
        /// [`ResultStore::put`].
        Put = "put",
        /// [`ResultStore::delete`].
        Delete = "delete",
        /// [`ResultStore::list`].
        List = "list",
        /// [`ResultStore::clear`].
        Clear = "clear",
        /// [`ResultStore::purge_expired`].
        PurgeExpired = "purge_expired",
    }
    /// The method's name: `"get"`, `"claim"`, …, `"purge_expired"`.
    fn as_str;
}

/// What a [`Fault`] does to the calls it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Fail,
    Delay(Duration),
    LoseReply,
}

/// How a [`Fault`] makes its error: `make(op, call_number)`.
#[derive(Clone)]
struct MakeError(Arc<dyn Fn(Op, u64) -> Error + Send + Sync>);

impl fmt::Debug for MakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MakeError(..)")
    }
}

/// A rule of a [`FaultStore`]: which calls of which operation to disturb, and how.
///
/// Calls of each operation are numbered from 1 in the order they reach the store, counted
/// from the store's creation. A rule matches every call unless narrowed with
/// [`nth`](Self::nth), [`from`](Self::from) or [`calls`](Self::calls).
///
/// Failing rules return a retryable [`ErrorKind::Unavailable`] unless told otherwise with
/// [`error`](Self::error) or [`error_with`](Self::error_with).
///
/// ```
/// use std::time::Duration;
/// use stent_core::ErrorKind;
/// use stent_core::testkit::{Fault, Op};
///
/// let outage = Fault::fail(Op::Complete).calls(2..=4);
/// let slow_reads = Fault::delay(Op::Get, Duration::from_millis(50));
/// let full_disk = Fault::fail(Op::Put).from(10).error(ErrorKind::Store);
/// let lost_ack = Fault::lose_reply(Op::Complete).nth(1);
/// # let _ = (outage, slow_reads, full_disk, lost_ack);
/// ```
#[derive(Clone, Debug)]
#[must_use = "a fault does nothing until it is added to a FaultStore"]
pub struct Fault {
    op: Op,
    calls: (Bound<u64>, Bound<u64>),
    action: Action,
    error: MakeError,
}

impl Fault {
    fn new(op: Op, action: Action, what: &'static str) -> Self {
        Fault {
            op,
            calls: (Bound::Unbounded, Bound::Unbounded),
            action,
            error: injected(ErrorKind::Unavailable, what),
        }
    }

    /// Fails calls of `op` with an error, without calling the inner store.
    pub fn fail(op: Op) -> Self {
        Self::new(op, Action::Fail, "failed")
    }

    /// Delays calls of `op` by `by` before they reach the inner store. A caller that
    /// gives up during the delay (its future is dropped) leaves the store untouched.
    pub fn delay(op: Op, by: Duration) -> Self {
        Self::new(op, Action::Delay(by), "failed")
    }

    /// Lets calls of `op` take effect in the inner store, then answers with an error, as when
    /// a connection drops after the server applied a write but before its reply arrived.
    pub fn lose_reply(op: Op) -> Self {
        Self::new(op, Action::LoseReply, "took effect, but its reply was lost")
    }

    /// Only the `n`th call (counting from 1).
    pub fn nth(self, n: u64) -> Self {
        self.calls(n..=n)
    }

    /// Every call from the `n`th on (counting from 1).
    pub fn from(self, n: u64) -> Self {
        self.calls(n..)
    }

    crate::builder_setters! {
        /// The calls whose numbers (counting from 1) fall in `range`.
        calls(range: impl RangeBounds<u64>) =>
            calls = (range.start_bound().cloned(), range.end_bound().cloned());

        /// Fails with an error of `kind` (retryable when the kind usually is) instead of
        /// [`ErrorKind::Unavailable`].
        error(kind: ErrorKind) => error = injected(kind, "failed");

        /// Fails with the error `make(op, call_number)` returns.
        error_with(make: impl Fn(Op, u64) -> Error + Send + Sync + 'static) =>
            error = MakeError(Arc::new(make));
    }
}

/// An error of `kind` saying that the call of `op` numbered `n` `what` ("failed", …).
fn injected(kind: ErrorKind, what: &'static str) -> MakeError {
    MakeError(Arc::new(move |op, n| {
        Error::new(kind, format!("injected fault: {op} call #{n} {what}"))
    }))
}

#[derive(Debug, Default)]
struct Shared {
    faults: Mutex<Vec<Fault>>,
    calls: [AtomicU64; Op::ALL.len()],
    injected: [AtomicU64; Op::ALL.len()],
}

/// A [`ResultStore`] wrapper that fails, delays or loses the replies of chosen calls.
///
/// Every call of every operation is counted ([`calls`](Self::calls)); calls matched by a
/// [`Fault`] rule are disturbed and counted again ([`injected`](Self::injected)). Rules
/// are added while building ([`with`](Self::with) and the `fail_nth`-style shorthands)
/// or at any time later ([`inject`](Self::inject), [`heal`](Self::heal)), so a test can
/// take the store down and bring it back in the middle of a call.
///
/// When several rules match one call, their delays add up, then a failing rule wins over
/// a lost reply; of several failing (or reply-losing) rules, the first added makes the
/// error. [`capabilities`](ResultStore::capabilities) is passed through untouched.
///
/// Clones share the rules and counters (and the inner store, when `S` clones share their
/// data, as [`MemoryStore`](crate::MemoryStore) clones do): hand one clone to
/// [`Stent`](crate::Stent) and keep another to steer and inspect.
#[derive(Clone, Debug)]
pub struct FaultStore<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> FaultStore<S> {
    /// Wraps `inner` with no rules: every call passes through (and is counted).
    pub fn new(inner: S) -> Self {
        FaultStore {
            inner,
            shared: Arc::default(),
        }
    }

    /// Adds a rule (builder style).
    pub fn with(self, fault: Fault) -> Self {
        self.inject(fault);
        self
    }

    /// Fails the `n`th call of `op` with a retryable [`ErrorKind::Unavailable`].
    pub fn fail_nth(self, op: Op, n: u64) -> Self {
        self.with(Fault::fail(op).nth(n))
    }

    /// Fails every call of `op` from the `n`th on with a retryable [`ErrorKind::Unavailable`].
    pub fn fail_from(self, op: Op, n: u64) -> Self {
        self.with(Fault::fail(op).from(n))
    }

    /// Delays the `n`th call of `op` by `by`.
    pub fn delay_nth(self, op: Op, n: u64, by: Duration) -> Self {
        self.with(Fault::delay(op, by).nth(n))
    }

    /// Lets the `n`th call of `op` take effect, then reports its reply lost (a retryable
    /// [`ErrorKind::Unavailable`]).
    pub fn lose_reply_nth(self, op: Op, n: u64) -> Self {
        self.with(Fault::lose_reply(op).nth(n))
    }

    /// Adds a rule now; it applies to calls that arrive from now on.
    pub fn inject(&self, fault: Fault) {
        self.faults().push(fault);
    }

    /// Removes every rule: the store works again.
    pub fn heal(&self) {
        self.faults().clear();
    }

    /// How many calls of `op` have reached this store, disturbed or not.
    pub fn calls(&self, op: Op) -> u64 {
        self.shared.calls[op as usize].load(Ordering::SeqCst)
    }

    /// How many calls of `op` a rule failed, delayed or lost the reply of.
    pub fn injected(&self, op: Op) -> u64 {
        self.shared.injected[op as usize].load(Ordering::SeqCst)
    }

    /// The wrapped store (to inspect what really got written).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn faults(&self) -> MutexGuard<'_, Vec<Fault>> {
        // Rules are plain data; a panic elsewhere cannot leave them half-updated.
        self.shared.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one call of `op` through the rules that match it: their delays, then the first
    /// failing rule's error, or the call and then the first reply-losing rule's error.
    async fn run<T>(&self, op: Op, call: impl Future<Output = Result<T>>) -> Result<T> {
        let n = self.shared.calls[op as usize].fetch_add(1, Ordering::SeqCst) + 1;
        let applies = |f: &&Fault| f.op == op && f.calls.contains(&n);
        let matching: Vec<Fault> = self.faults().iter().filter(applies).cloned().collect();
        if !matching.is_empty() {
            self.shared.injected[op as usize].fetch_add(1, Ordering::SeqCst);
        }
        for fault in &matching {
            if let Action::Delay(by) = fault.action {
                tokio::time::sleep(by).await;
            }
        }
        let error = |action| {
            let fault = matching.iter().find(|f| f.action == action);
            fault.map(|f| (f.error.0)(op, n))
        };
        if let Some(e) = error(Action::Fail) {
            return Err(e);
        }
        let answer = call.await;
        error(Action::LoseReply).map_or(answer, Err)
    }
}

macro_rules! through_rules {
    ($this:ident, $op:ident, $call:expr) => {
        $this.run(Op::$op, $call).await
    };
}

crate::store::delegate_store!([S: ResultStore] FaultStore<S>, |self| self.inner, through_rules);
