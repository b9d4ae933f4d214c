//! [`LocalTier`]: completed records kept in the process, in front of any store (feature `local`).
//!
//! A completed idempotency record never changes until its retention ends or an operator
//! deletes it, so a process that has read it once can replay it itself in about a microsecond
//! instead of a round trip. Cached values can be kept too, for at most a local TTL.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use stent_core::{LocalTier, MemoryStore, Status, Stent};
//!
//! // At most 100,000 records and 64 MiB; cached values kept locally for at most 5 s.
//! let store = LocalTier::new(MemoryStore::new(), 100_000, 64 << 20)
//!     .local_ttl(Duration::from_secs(5));
//! let stent = Stent::new(store);
//! let charge = stent
//!     .durable("billing::charge")
//!     .idempotent()
//!     .wrap(|order: String| async move { Ok::<_, std::convert::Infallible>(format!("receipt {order}")) });
//! charge.call("ord-1".into()).await?; // executed, recorded in the store
//! charge.call("ord-1".into()).await?; // replayed from the store, then kept in the tier
//! let again = charge.call_traced("ord-1".into()).await?; // replayed from the tier
//! assert_eq!(again.outcome.status, Status::Replayed);
//! # Ok(()) }
//! ```

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use quick_cache::sync::Cache;
use tokio::sync::oneshot;

use crate::broadcast::{Invalidation, Invalidations};
use crate::error::Result;
use crate::observe;
use crate::record::{
    Capabilities, Claim, ClaimOutcome, LeaseToken, ListQuery, Namespace, Page, Record, RecordMeta,
    RecordState, Timestamp,
};
use crate::store::ResultStore;

/// A store with an in-process tier of completed records in front of it.
///
/// What it keeps, and for how long:
///
/// | records | kept |
/// |---|---|
/// | completed idempotency records | until their own expiry (the retention), or for the [`local_ttl`](Self::local_ttl) when one is set |
/// | completed cached values | only with a [`local_ttl`](Self::local_ttl): until their TTL ends or the local TTL, whichever is first |
/// | records in progress, the progress log | never |
///
/// [`get`](ResultStore::get) and [`claim`](ResultStore::claim) answer from the tier when it
/// holds the key (a claim of a completed record is [`ClaimOutcome::Completed`], as the store
/// would answer); otherwise they ask the store and keep a completed record it returns. Every
/// write through the tier (`complete`, `release`, `put`, `delete`, `clear`) drops the key
/// (or, for `clear`, every record of its namespace) from it.
///
/// Writes by other processes, and the CLI's `rm`, reach the tier in one of two ways:
///
/// | store | a record deleted or replaced elsewhere leaves this tier |
/// |---|---|
/// | Redis, PostgreSQL (they implement [`Broadcast`](crate::broadcast::Broadcast)), with [`broadcast`](Self::broadcast) | when the store's announcement arrives: about 0.1–0.2 ms after the delete's own reply on one machine; while the subscription is down (noticed at once when its connection closes, within 2 s when it stops answering) the tier answers nothing and every read goes to the store |
/// | Redis, PostgreSQL, without `broadcast` | when the local TTL ends; without a local TTL, an idempotency record deleted elsewhere stays until its retention ends |
/// | SQLite across processes, DynamoDB, [`MemoryStore`](crate::MemoryStore) | the same: these stores cannot announce, so the local TTL is the bound |
///
/// Bounded by entries and by bytes: each record weighs its key, value and descriptive fields
/// plus a fixed overhead, and at least `max_bytes / max_entries`, and records are evicted (by
/// the `quick_cache` crate's CLOCK-Pro policy, which keeps the frequently read) once the total
/// weight passes `max_bytes`. `quick_cache` was chosen over `moka` for the read this tier
/// exists for: a hit costs about 35 ns against moka's 210 ns on this project's machines.
pub struct LocalTier<S> {
    inner: S,
    state: Arc<State>,
    local_ttl: Option<Duration>,
    /// Dropped with the tier, which stops the task applying the store's broadcast.
    listener: Option<oneshot::Sender<()>>,
}

/// What the tier and its broadcast listener share.
struct State {
    entries: Cache<Name, Arc<Kept>, Weight, quick_cache::DefaultHashBuilder, Evictions>,
    /// Bumped by every invalidation of a key of the stripe: a record read from the store is
    /// kept only if no invalidation of its stripe came while it was being read, so a read
    /// that races a delete never keeps what the delete removed.
    epochs: [AtomicU64; STRIPES],
    /// Whether the tier may answer: always without a broadcast; with one, only while its
    /// subscription is live.
    serving: AtomicBool,
}

const STRIPES: usize = 64;

/// A kept record's namespace and key.
type Name = (Namespace, String);

/// A [`Name`] to look one up by, without building one: hashes as the `Name` does.
#[derive(Hash)]
struct NameRef<'a>(Namespace, &'a str);

impl quick_cache::Equivalent<Name> for NameRef<'_> {
    fn equivalent(&self, name: &Name) -> bool {
        self.0 == name.0 && self.1 == name.1
    }
}

/// What a kept record weighs: its strings and a fixed overhead, and at least the floor that
/// bounds the number of records.
#[derive(Clone)]
struct Weight(u64);

impl quick_cache::Weighter<Name, Arc<Kept>> for Weight {
    fn weight(&self, _: &Name, kept: &Arc<Kept>) -> u64 {
        let r = &kept.record;
        let len = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let text = len(&r.fingerprint) + len(&r.function) + len(&r.version);
        let bytes = 2 * r.key.len() + r.value.as_ref().map_or(0, Vec::len) + text;
        let weight = u64::try_from(bytes + OVERHEAD).unwrap_or(u64::MAX);
        weight.max(self.0)
    }
}

/// Counts the records evicted for room.
#[derive(Clone)]
struct Evictions;

impl quick_cache::Lifecycle<Name, Arc<Kept>> for Evictions {
    type RequestState = ();

    fn on_evict(&self, (): &mut (), _: Name, _: Arc<Kept>) {
        observe::local("eviction");
    }
}

/// A record in the tier and when it leaves it.
struct Kept {
    record: Record,
    until: Option<Timestamp>,
}

/// What each kept record costs beyond its strings: the record, the entry and the cache's own
/// bookkeeping, rounded up.
const OVERHEAD: usize = 256;

impl<S: ResultStore> LocalTier<S> {
    /// A tier of at most `max_entries` records and `max_bytes` bytes in front of `inner`,
    /// keeping completed idempotency records (add [`local_ttl`](Self::local_ttl) to keep
    /// cached values too).
    pub fn new(inner: S, max_entries: u64, max_bytes: u64) -> Self {
        let weight = Weight(max_bytes.div_ceil(max_entries.max(1)));
        let estimated = usize::try_from(max_entries.min(1 << 20)).unwrap_or(1 << 20);
        LocalTier {
            inner,
            state: Arc::new(State {
                entries: Cache::with(estimated, max_bytes, weight, Default::default(), Evictions),
                epochs: [const { AtomicU64::new(0) }; STRIPES],
                serving: AtomicBool::new(true),
            }),
            local_ttl: None,
            listener: None,
        }
    }

    /// Applies a store's broadcast (its [`invalidations`](crate::broadcast::Broadcast::invalidations)):
    /// a record deleted or replaced by any process leaves this tier when the announcement
    /// arrives. Until the subscription is live, and whenever it is lost, the tier is emptied
    /// and answers nothing (every read goes to the store); it is emptied again when the
    /// subscription is back. A task on the current Tokio runtime applies the announcements
    /// and stops when the tier is dropped.
    ///
    /// ```no_run
    /// # use stent_core::{LocalTier, ResultStore, Stent, broadcast::Broadcast};
    /// # fn example(store: impl ResultStore + Broadcast) {
    /// // `store`: a RedisStore or a PostgresStore
    /// let invalidations = store.invalidations();
    /// let stent = Stent::new(LocalTier::new(store, 100_000, 64 << 20).broadcast(invalidations));
    /// # let _ = stent; }
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn broadcast(mut self, invalidations: Invalidations) -> Self {
        let state = Arc::clone(&self.state);
        state.lose();
        let (stop, stopped) = oneshot::channel();
        let mut events = invalidations.take_until(stopped);
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                state.apply(event);
            }
            // A stream that ends announces nothing more: answer nothing from now on. One
            // stopped by the tier (dropped, or given another stream) leaves the state alone.
            if events.take_result().is_none() {
                state.lose();
            }
        });
        self.listener = Some(stop);
        self
    }

    /// Keep cached values too, and keep every record at most `ttl`: the bound on how stale a
    /// value written or deleted by another process may be here.
    pub fn local_ttl(mut self, ttl: Duration) -> Self {
        self.local_ttl = Some(ttl);
        self
    }

    /// The store behind the tier.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// How many records the tier holds and their total weight in bytes.
    pub fn usage(&self) -> (u64, u64) {
        let entries = &self.state.entries;
        (entries.len() as u64, entries.weight())
    }

    /// Whether the tier would answer a read of `key` in `ns` now, without asking the store.
    pub fn contains(&self, ns: Namespace, key: &str) -> bool {
        let (state, name) = (&self.state, NameRef(ns, key));
        let serving = self.kept(ns) && state.serving.load(Ordering::SeqCst);
        serving && state.entries.peek(&name).is_some_and(|kept| fresh(&kept))
    }

    fn kept(&self, ns: Namespace) -> bool {
        ns == Namespace::Idempotency || ns == Namespace::Cache && self.local_ttl.is_some()
    }

    /// The record of `key` the tier holds, if it is still to be kept.
    fn local(&self, ns: Namespace, key: &str) -> Option<Record> {
        if !self.kept(ns) {
            return None;
        }
        if !self.state.serving.load(Ordering::SeqCst) {
            observe::local("bypass");
            return None;
        }
        let name = NameRef(ns, key);
        match self.state.entries.get(&name) {
            Some(kept) if fresh(&kept) => {
                observe::local("hit");
                return Some(kept.record.clone());
            }
            Some(_) => _ = self.state.entries.remove(&name),
            None => {}
        }
        observe::local("miss");
        None
    }

    /// Keeps `record`, read from the store, when it is a completed record the tier keeps and
    /// nothing invalidated its key since `epoch` (read before the store was asked).
    fn keep(&self, ns: Namespace, record: &Record, epoch: u64) {
        let now = Timestamp::now();
        if record.state != RecordState::Completed || record.is_expired(now) || !self.kept(ns) {
            return;
        }
        let state = &self.state;
        if !state.serving.load(Ordering::SeqCst) || state.epoch(ns, &record.key) != epoch {
            return;
        }
        let local_until = self.local_ttl.map(|ttl| now + ttl);
        let until = [record.expires_at, local_until].into_iter().flatten().min();
        let (key, record) = (&record.key, record.clone());
        let kept = Arc::new(Kept { record, until });
        state.entries.insert((ns, key.clone()), kept);
        // An invalidation that came while it was being inserted may have missed it.
        if state.epoch(ns, key) != epoch {
            state.entries.remove(&NameRef(ns, key));
        }
    }

    /// Drops `key` from the tier after a write through it, and passes on the write's result.
    fn forget<T>(&self, ns: Namespace, key: &str, written: Result<T>) -> Result<T> {
        if self.state.forget(ns, key) {
            observe::local("invalidation");
        }
        written
    }
}

/// Whether a kept record is still to be answered from the tier.
fn fresh(kept: &Kept) -> bool {
    kept.until.is_none_or(|until| Timestamp::now() < until)
}

impl State {
    fn epoch(&self, ns: Namespace, key: &str) -> u64 {
        self.epochs[stripe(ns, key)].load(Ordering::SeqCst)
    }

    /// Drops `key`, after bumping its stripe's epoch; whether the tier held it.
    fn forget(&self, ns: Namespace, key: &str) -> bool {
        self.epochs[stripe(ns, key)].fetch_add(1, Ordering::SeqCst);
        self.entries.remove(&NameRef(ns, key)).is_some()
    }

    /// Drops every record of `ns`, or every record, after bumping every epoch (a stripe
    /// holds keys of every namespace).
    fn forget_all(&self, ns: Option<Namespace>) {
        for epoch in &self.epochs {
            epoch.fetch_add(1, Ordering::SeqCst);
        }
        match ns {
            Some(ns) => self.entries.retain(|name, _| name.0 != ns),
            None => self.entries.clear(),
        }
    }

    /// Stops answering and drops every record: the broadcast may miss writes from now on.
    fn lose(&self) {
        self.serving.store(false, Ordering::SeqCst);
        self.forget_all(None);
    }

    /// Applies one event of the store's broadcast.
    fn apply(&self, event: Invalidation) {
        observe::local(match &event {
            Invalidation::Key(..) | Invalidation::Namespace(_) => "broadcast",
            Invalidation::Lost => "subscription_lost",
            Invalidation::Subscribed => "subscribed",
        });
        match event {
            Invalidation::Key(ns, key) => _ = self.forget(ns, &key),
            Invalidation::Namespace(ns) => self.forget_all(Some(ns)),
            Invalidation::Lost => self.lose(),
            Invalidation::Subscribed => {
                self.forget_all(None);
                self.serving.store(true, Ordering::SeqCst);
            }
        }
    }
}

fn stripe(ns: Namespace, key: &str) -> usize {
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one((ns, key));
    usize::try_from(hash % STRIPES as u64).unwrap_or(0)
}

impl<S: std::fmt::Debug> std::fmt::Debug for LocalTier<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTier")
            .field("inner", &self.inner)
            .field("entries", &self.state.entries.len())
            .field("local_ttl", &self.local_ttl)
            .field("broadcast", &self.listener.is_some())
            .finish()
    }
}

#[async_trait]
impl<S: ResultStore> ResultStore for LocalTier<S> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Record>> {
        if let Some(record) = self.local(ns, key) {
            return Ok(Some(record));
        }
        let epoch = self.state.epoch(ns, key);
        let found = self.inner.get(ns, key).await?;
        Ok(found.inspect(|record| self.keep(ns, record, epoch)))
    }

    async fn claim(&self, ns: Namespace, key: &str, claim: &Claim<'_>) -> Result<ClaimOutcome> {
        if let Some(record) = self.local(ns, key) {
            return Ok(ClaimOutcome::Completed(record));
        }
        let epoch = self.state.epoch(ns, key);
        let outcome = self.inner.claim(ns, key, claim).await?;
        if let ClaimOutcome::Completed(record) = &outcome {
            self.keep(ns, record, epoch);
        }
        Ok(outcome)
    }

    async fn renew(
        &self,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        lease: Duration,
    ) -> Result<Timestamp> {
        self.inner.renew(ns, key, token, lease).await
    }

    async fn complete(
        &self,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()> {
        let done = self.inner.complete(ns, key, token, value, ttl).await;
        self.forget(ns, key, done)
    }

    async fn release(&self, ns: Namespace, key: &str, token: &LeaseToken) -> Result<bool> {
        self.forget(ns, key, self.inner.release(ns, key, token).await)
    }

    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        meta: RecordMeta<'_>,
    ) -> Result<()> {
        self.forget(ns, key, self.inner.put(ns, key, value, ttl, meta).await)
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool> {
        self.forget(ns, key, self.inner.delete(ns, key).await)
    }

    async fn list(&self, ns: Namespace, query: &ListQuery) -> Result<Page> {
        self.inner.list(ns, query).await
    }

    async fn clear(&self, ns: Namespace) -> Result<u64> {
        let done = self.inner.clear(ns).await;
        self.state.forget_all(Some(ns));
        done
    }

    async fn purge_expired(&self, ns: Namespace, limit: usize) -> Result<u64> {
        // Kept records leave the tier by their expiry already.
        self.inner.purge_expired(ns, limit).await
    }
}
