//! [`Broadcast`]: a record deleted or replaced in one process leaves every other process's
//! [`LocalTier`] within a bounded time.
//!
//! Each case takes two stores built separately on the same server and prefix (two
//! connections, as two processes would have): process A keeps records in a tier that
//! applies its store's broadcast, process B writes through its own store.

use std::any::Any;
use std::fmt;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use stent_core::broadcast::Broadcast;
use stent_core::testkit::{FaultStore, Op};
use stent_core::{LocalTier, Namespace, ResultStore};

use crate::support::{CACHE, IDEM, PATIENCE, meta};

/// How long an announcement may take to reach another process's tier in these cases: far
/// above what it takes (a millisecond or less), for a loaded 2-core machine.
pub const BOUND: Duration = Duration::from_secs(3);

/// An action on the server of two [`Processes`].
pub type Action = Box<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// Two stores built separately on one server and prefix, as two processes hold them, and
/// what a case does to process A's subscription.
pub struct Processes<S> {
    /// Process A's store: its tier applies its broadcast.
    pub a: S,
    /// Process B's store.
    pub b: S,
    /// Closes the connection of A's subscription (from the server's side).
    pub kill: Action,
    /// Stops the server side of A's subscription without closing it (a partition).
    pub freeze: Action,
    /// Undoes `freeze`.
    pub thaw: Action,
    /// How long a frozen subscription may go unnoticed: the store's heartbeat and a margin.
    pub heartbeat_bound: Duration,
    /// Whatever must live as long as the case (a server of the case's own).
    pub keep: Box<dyn Any + Send>,
}

impl<S> fmt::Debug for Processes<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Processes")
            .field("heartbeat_bound", &self.heartbeat_bound)
            .finish_non_exhaustive()
    }
}

/// Process A's tier: its store counted, so that a case can tell a read the tier answered.
type Tier<S> = LocalTier<FaultStore<S>>;

fn tier<S: ResultStore + Broadcast + Clone>(a: &S) -> Tier<S> {
    LocalTier::new(FaultStore::new(a.clone()), 10_000, 16 << 20)
        .local_ttl(Duration::from_secs(600))
        .broadcast(a.invalidations())
}

/// Round trips that reached A's store.
fn trips<S: ResultStore>(tier: &Tier<S>) -> u64 {
    Op::ALL.iter().map(|&op| tier.inner().calls(op)).sum()
}

/// Waits until `ready` holds, at most `within`; how long it took.
async fn until(within: Duration, what: &str, mut ready: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    // Yields rather than sleeps: a timer would round each wait up to a millisecond.
    while !ready() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::task::yield_now().await;
    }
    start.elapsed()
}

/// Writes `key` through B, then reads it through A's tier until the tier keeps it (once its
/// subscription is live) and answers it without a round trip.
async fn kept_in_a<S: ResultStore>(a: &Tier<S>, b: &S, ns: Namespace, key: &str, value: &[u8]) {
    b.put(ns, key, value, None, meta()).await.unwrap();
    let start = Instant::now();
    while !a.contains(ns, key) {
        assert!(start.elapsed() < PATIENCE, "A's tier never kept {key:?}");
        let read = a.get(ns, key).await.unwrap();
        assert_eq!(read.and_then(|r| r.value).as_deref(), Some(value));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = trips(a);
    let read = a.get(ns, key).await.unwrap();
    assert_eq!(read.and_then(|r| r.value).as_deref(), Some(value));
    assert_eq!(trips(a), before, "the tier's read reached the store");
}

/// p50, p99 and max of `delays`, for the report a case prints.
fn summary(delays: &mut [Duration]) -> String {
    delays.sort_unstable();
    let at = |q: f64| {
        let i = ((delays.len() as f64 - 1.0) * q).round();
        delays[usize::try_from(i as u64).unwrap_or(0).min(delays.len() - 1)]
    };
    format!(
        "p50 {:?}, p99 {:?}, max {:?} over {}",
        at(0.5),
        at(0.99),
        at(1.0),
        delays.len()
    )
}

/// A record that B deletes, or whose namespace B clears, or that B replaces, leaves A's tier
/// within the bound; the next read through A gets what the store holds. Prints the delay
/// from B's delete being sent to A's tier dropping the record, over 300 deletes.
pub async fn broadcast_delete_and_overwrite_reach_another_process<S>(p: Processes<S>)
where
    S: ResultStore + Broadcast + Clone,
{
    let (a, b) = (&p.a, &p.b);
    let tier = tier(a);
    // A delete: the CLI's `rm` and `invalidate` are this call.
    let (mut delays, mut deletes) = (Vec::new(), Vec::new());
    for i in 0..300 {
        let key = format!("receipt-{i}");
        kept_in_a(&tier, b, IDEM, &key, b"paid").await;
        let sent = Instant::now();
        assert!(b.delete(IDEM, &key).await.unwrap());
        deletes.push(sent.elapsed());
        until(BOUND, "a delete by B", || !tier.contains(IDEM, &key)).await;
        delays.push(sent.elapsed());
        assert!(tier.get(IDEM, &key).await.unwrap().is_none());
    }
    eprintln!(
        "broadcast delay, from B's delete sent to A's tier dropping the record: {}; \
         B's delete itself: {}",
        summary(&mut delays),
        summary(&mut deletes)
    );

    // An overwrite of a cached value.
    kept_in_a(&tier, b, CACHE, "rates", b"v1").await;
    b.put(CACHE, "rates", b"v2", None, meta()).await.unwrap();
    until(BOUND, "an overwrite by B", || {
        !tier.contains(CACHE, "rates")
    })
    .await;
    let read = tier.get(CACHE, "rates").await.unwrap();
    assert_eq!(read.and_then(|r| r.value).as_deref(), Some(&b"v2"[..]));

    // A clear.
    kept_in_a(&tier, b, IDEM, "one", b"1").await;
    kept_in_a(&tier, b, IDEM, "two", b"2").await;
    assert_eq!(b.clear(IDEM).await.unwrap(), 2);
    until(BOUND, "a clear by B", || {
        !tier.contains(IDEM, "one") && !tier.contains(IDEM, "two")
    })
    .await;
    assert!(tier.get(IDEM, "one").await.unwrap().is_none());
    // The cached value was not cleared, and is kept again.
    kept_in_a(&tier, b, CACHE, "rates", b"v2").await;
}

/// While A's subscription is down, A's tier answers nothing (every read reaches the store),
/// so a delete that A cannot hear of is never served stale; A subscribes again by itself,
/// then keeps records and hears deletes again. `kill` cuts A's subscription's connection.
pub async fn broadcast_lost_subscription_never_serves_stale<S>(p: Processes<S>)
where
    S: ResultStore + Broadcast + Clone,
{
    let (a, b, kill) = (&p.a, &p.b, &p.kill);
    let tier = tier(a);
    kept_in_a(&tier, b, IDEM, "receipt", b"paid").await;
    kept_in_a(&tier, b, IDEM, "other", b"kept").await;
    kill().await;
    assert!(b.delete(IDEM, "receipt").await.unwrap());
    // The tier answers neither the deleted record nor the other: it cannot know which changed.
    until(BOUND, "the tier emptied after the loss", || {
        !tier.contains(IDEM, "receipt") && !tier.contains(IDEM, "other")
    })
    .await;
    assert!(tier.get(IDEM, "receipt").await.unwrap().is_none());
    // Resubscribed by itself: it keeps records again, and hears B's deletes again.
    kept_in_a(&tier, b, IDEM, "other", b"kept").await;
    assert!(b.delete(IDEM, "other").await.unwrap());
    until(BOUND, "a delete after resubscribing", || {
        !tier.contains(IDEM, "other")
    })
    .await;

    // A loss right after a record was kept, many times over: the tier never answers a
    // record B deleted once the bound has passed.
    for i in 0..5 {
        let key = format!("again-{i}");
        kept_in_a(&tier, b, IDEM, &key, b"paid").await;
        kill().await;
        assert!(b.delete(IDEM, &key).await.unwrap());
        until(BOUND, "the tier emptied after a loss", || {
            !tier.contains(IDEM, &key)
        })
        .await;
        assert!(tier.get(IDEM, &key).await.unwrap().is_none());
    }
}

/// A subscription whose server stops answering (a partition, a frozen server: the connection
/// stays open) is taken as lost within the store's heartbeat, and A's tier then answers
/// nothing; once the server answers again, A subscribes again and keeps records again.
/// `freeze` stops the server without closing connections, `thaw` resumes it.
pub async fn broadcast_unanswered_subscription_is_taken_as_lost<S>(p: Processes<S>)
where
    S: ResultStore + Broadcast + Clone,
{
    let (a, b) = (&p.a, &p.b);
    let tier = tier(a);
    kept_in_a(&tier, b, IDEM, "receipt", b"paid").await;
    (p.freeze)().await;
    let frozen = until(p.heartbeat_bound, "the tier emptied while frozen", || {
        !tier.contains(IDEM, "receipt")
    });
    // Thawed whatever happened, so that a failure leaves nothing stopped.
    let took = std::panic::AssertUnwindSafe(frozen).catch_unwind().await;
    (p.thaw)().await;
    let took = took.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    eprintln!("an unanswered subscription was taken as lost after {took:?}");
    kept_in_a(&tier, b, IDEM, "receipt", b"paid").await;
}
