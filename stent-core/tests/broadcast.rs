//! `LocalTier::broadcast`: how the tier applies a store's announcements, with the events
//! made by hand (the backends' own tests run it against real servers).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use stent_core::broadcast::{Invalidation, Invalidations, Subscriber};
use stent_core::{
    Capabilities, Claim, ClaimOutcome, LeaseToken, ListQuery, LocalTier, MemoryStore, Namespace,
    Page, Record, RecordMeta, Result, ResultStore, Timestamp, async_trait,
};
use tokio::sync::{Notify, mpsc};

const IDEM: Namespace = Namespace::Idempotency;
const CACHE: Namespace = Namespace::Cache;

/// A tier over `store` applying the events sent on the returned channel.
fn tier<S: ResultStore>(store: S) -> (LocalTier<S>, mpsc::UnboundedSender<Invalidation>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let events = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let tier = LocalTier::new(store, 1000, 1 << 20)
        .local_ttl(Duration::from_secs(600))
        .broadcast(Invalidations::new(events));
    (tier, tx)
}

async fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < Duration::from_secs(10), "{what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn put(store: &impl ResultStore, ns: Namespace, key: &str, value: &[u8]) {
    let meta = RecordMeta::default();
    store.put(ns, key, value, None, meta).await.unwrap();
}

async fn value(tier: &impl ResultStore, ns: Namespace, key: &str) -> Option<Vec<u8>> {
    tier.get(ns, key).await.unwrap().and_then(|r| r.value)
}

/// Reads `key` through the tier until the tier keeps it.
async fn kept<S: ResultStore>(tier: &LocalTier<S>, ns: Namespace, key: &str) {
    let start = Instant::now();
    while !tier.contains(ns, key) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{key} never kept"
        );
        tier.get(ns, key).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn the_tier_answers_nothing_until_subscribed() {
    let store = MemoryStore::new();
    let (tier, tx) = tier(store.clone());
    put(&store, IDEM, "k", b"v1").await;
    for _ in 0..3 {
        assert_eq!(value(&tier, IDEM, "k").await.as_deref(), Some(&b"v1"[..]));
        assert!(!tier.contains(IDEM, "k"));
    }
    tx.send(Invalidation::Subscribed).unwrap();
    kept(&tier, IDEM, "k").await;
}

#[tokio::test]
async fn an_announced_key_leaves_the_tier() {
    let store = MemoryStore::new();
    let (tier, tx) = tier(store.clone());
    tx.send(Invalidation::Subscribed).unwrap();
    put(&store, IDEM, "k", b"v1").await;
    put(&store, IDEM, "other", b"v1").await;
    kept(&tier, IDEM, "k").await;
    kept(&tier, IDEM, "other").await;
    put(&store, IDEM, "k", b"v2").await; // behind the tier's back, as another process
    assert_eq!(value(&tier, IDEM, "k").await.as_deref(), Some(&b"v1"[..]));
    tx.send(Invalidation::Key(IDEM, "k".into())).unwrap();
    until("the announced key left", || !tier.contains(IDEM, "k")).await;
    assert_eq!(value(&tier, IDEM, "k").await.as_deref(), Some(&b"v2"[..]));
    assert!(tier.contains(IDEM, "other"));
}

#[tokio::test]
async fn an_announced_namespace_leaves_the_tier() {
    let store = MemoryStore::new();
    let (tier, tx) = tier(store.clone());
    tx.send(Invalidation::Subscribed).unwrap();
    put(&store, IDEM, "k", b"v").await;
    put(&store, CACHE, "k", b"v").await;
    kept(&tier, IDEM, "k").await;
    kept(&tier, CACHE, "k").await;
    tx.send(Invalidation::Namespace(CACHE)).unwrap();
    until("the namespace left", || !tier.contains(CACHE, "k")).await;
    assert!(tier.contains(IDEM, "k"));
}

#[tokio::test]
async fn a_lost_subscription_empties_the_tier_and_bypasses_it_until_resubscribed() {
    let store = MemoryStore::new();
    let (tier, tx) = tier(store.clone());
    tx.send(Invalidation::Subscribed).unwrap();
    put(&store, IDEM, "k", b"v1").await;
    kept(&tier, IDEM, "k").await;
    tx.send(Invalidation::Lost).unwrap();
    until("the tier emptied", || !tier.contains(IDEM, "k")).await;
    // Every read reaches the store, and nothing is kept.
    put(&store, IDEM, "k", b"v2").await;
    for _ in 0..3 {
        assert_eq!(value(&tier, IDEM, "k").await.as_deref(), Some(&b"v2"[..]));
        assert!(!tier.contains(IDEM, "k"));
    }
    tx.send(Invalidation::Subscribed).unwrap();
    kept(&tier, IDEM, "k").await;
}

#[tokio::test]
async fn a_stream_that_ends_leaves_the_tier_bypassed() {
    let store = MemoryStore::new();
    let (tier, tx) = tier(store.clone());
    tx.send(Invalidation::Subscribed).unwrap();
    put(&store, IDEM, "k", b"v1").await;
    kept(&tier, IDEM, "k").await;
    drop(tx);
    until("the tier emptied", || !tier.contains(IDEM, "k")).await;
    tier.get(IDEM, "k").await.unwrap();
    assert!(!tier.contains(IDEM, "k"));
}

#[tokio::test]
async fn a_second_broadcast_replaces_the_first_and_its_end_bypasses_nothing() {
    let store = MemoryStore::new();
    let (tier, first) = tier(store.clone());
    put(&store, IDEM, "k", b"v1").await;
    // The first stream's task runs until it waits for an event, and is stopped there.
    tokio::task::yield_now().await;
    // The second stream's subscription is there before the first stream is stopped.
    let (tx, mut rx) = mpsc::unbounded_channel();
    tx.send(Invalidation::Subscribed).unwrap();
    let events = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let tier = tier.broadcast(Invalidations::new(events));
    // With the first task emptying the tier as it ends, the key is never kept here.
    kept(&tier, IDEM, "k").await;
    // The first stream is dropped, so its task has ended: it left the tier as it was.
    first.closed().await;
    assert!(
        tier.contains(IDEM, "k"),
        "the first stream's end emptied the tier"
    );
}

#[tokio::test]
async fn dropping_the_tier_stops_its_listener() {
    let (tier, tx) = tier(MemoryStore::new());
    tx.send(Invalidation::Subscribed).unwrap();
    drop(tier);
    tokio::time::timeout(Duration::from_secs(10), tx.closed())
        .await
        .expect("the listener still holds the stream");
}

/// A store whose first read of [`PAUSED`] stops after reading: it says so on `read`, then
/// waits for `go`, so that an announcement can arrive between the read and the tier keeping
/// what it read.
#[derive(Debug)]
struct PauseAfterRead {
    inner: MemoryStore,
    armed: AtomicBool,
    read: Arc<Notify>,
    go: Arc<Notify>,
}

const PAUSED: &str = "k";

#[async_trait]
impl ResultStore for PauseAfterRead {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Record>> {
        let read = self.inner.get(ns, key).await;
        if key == PAUSED && self.armed.swap(false, Ordering::SeqCst) {
            self.read.notify_one();
            self.go.notified().await;
        }
        read
    }
    async fn claim(&self, ns: Namespace, key: &str, claim: &Claim<'_>) -> Result<ClaimOutcome> {
        self.inner.claim(ns, key, claim).await
    }
    async fn renew(
        &self,
        ns: Namespace,
        key: &str,
        t: &LeaseToken,
        d: Duration,
    ) -> Result<Timestamp> {
        self.inner.renew(ns, key, t, d).await
    }
    async fn complete(
        &self,
        ns: Namespace,
        key: &str,
        t: &LeaseToken,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()> {
        self.inner.complete(ns, key, t, value, ttl).await
    }
    async fn release(&self, ns: Namespace, key: &str, t: &LeaseToken) -> Result<bool> {
        self.inner.release(ns, key, t).await
    }
    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        meta: RecordMeta<'_>,
    ) -> Result<()> {
        self.inner.put(ns, key, value, ttl, meta).await
    }
    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool> {
        self.inner.delete(ns, key).await
    }
    async fn list(&self, ns: Namespace, query: &ListQuery) -> Result<Page> {
        self.inner.list(ns, query).await
    }
    async fn clear(&self, ns: Namespace) -> Result<u64> {
        self.inner.clear(ns).await
    }
    async fn purge_expired(&self, ns: Namespace, limit: usize) -> Result<u64> {
        self.inner.purge_expired(ns, limit).await
    }
}

#[tokio::test]
async fn a_read_overtaken_by_an_announcement_of_its_key_is_not_kept() {
    let store = MemoryStore::new();
    let (read, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let slow = PauseAfterRead {
        inner: store.clone(),
        armed: AtomicBool::new(true),
        read: Arc::clone(&read),
        go: Arc::clone(&go),
    };
    let (tier, tx) = tier(slow);
    tx.send(Invalidation::Subscribed).unwrap();
    put(&store, IDEM, "warm", b"v").await;
    kept(&tier, IDEM, "warm").await;
    put(&store, IDEM, "k", b"v1").await;
    let another_process = async {
        read.notified().await; // the tier's read of "k" has its answer, not yet kept
        put(&store, IDEM, "k", b"v2").await;
        tx.send(Invalidation::Key(IDEM, "k".into())).unwrap();
        // Announcements apply in order: once "warm" is gone, so is the one of "k".
        tx.send(Invalidation::Key(IDEM, "warm".into())).unwrap();
        until("the announcements applied", || !tier.contains(IDEM, "warm")).await;
        go.notify_one();
    };
    let (read, ()) = tokio::join!(value(&tier, IDEM, "k"), another_process);
    assert_eq!(
        read.as_deref(),
        Some(&b"v1"[..]),
        "read before the overwrite"
    );
    assert!(
        !tier.contains(IDEM, "k"),
        "kept a value the announcement outdated"
    );
    assert_eq!(value(&tier, IDEM, "k").await.as_deref(), Some(&b"v2"[..]));
}

/// A subscriber whose first two subscriptions fail, whose sessions each tell one key and are
/// then lost, and which counts its attempts.
struct Flaky {
    attempts: u32,
}

impl Subscriber for Flaky {
    type Session = Option<String>;

    async fn subscribe(&mut self) -> Option<Self::Session> {
        self.attempts += 1;
        (self.attempts > 2).then(|| Some(format!("k{}", self.attempts)))
    }

    async fn receive(&mut self, session: &mut Self::Session) -> Option<Invalidation> {
        let key = session.take()?;
        Some(Invalidation::Key(Namespace::Cache, key))
    }
}

#[tokio::test]
async fn a_reconnecting_stream_tells_each_subscription_and_each_loss_and_backs_off() {
    use futures_util::StreamExt as _;
    let started = Instant::now();
    let events: Vec<_> = Invalidations::reconnecting(Flaky { attempts: 0 })
        .take(6)
        .collect()
        .await;
    let key = |k: &str| Invalidation::Key(Namespace::Cache, k.to_owned());
    assert_eq!(
        events,
        [
            Invalidation::Subscribed,
            key("k3"),
            Invalidation::Lost,
            Invalidation::Subscribed,
            key("k4"),
            Invalidation::Lost,
        ]
    );
    // Two failed attempts before the first subscription: waits of 20 ms, then 40 ms.
    assert!(started.elapsed() >= Duration::from_millis(60));
}
