//! Identical concurrent calls in one process share one trip to the store.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use stent_core::{
    Capabilities, Claim, ClaimOutcome, LeaseToken, ListQuery, MemoryStore, Namespace, Page, Record,
    RecordMeta, Result, ResultStore, Status, Stent, Timestamp,
};

/// Counts claims, delegating everything to a MemoryStore.
#[derive(Debug, Default)]
struct CountingStore {
    inner: MemoryStore,
    claims: AtomicU32,
}

#[async_trait]
impl ResultStore for CountingStore {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Record>> {
        self.inner.get(ns, key).await
    }
    async fn claim(&self, ns: Namespace, key: &str, claim: &Claim<'_>) -> Result<ClaimOutcome> {
        self.claims.fetch_add(1, Ordering::SeqCst);
        self.inner.claim(ns, key, claim).await
    }
    async fn renew(
        &self,
        ns: Namespace,
        key: &str,
        t: &LeaseToken,
        l: Duration,
    ) -> Result<Timestamp> {
        self.inner.renew(ns, key, t, l).await
    }
    async fn complete(
        &self,
        ns: Namespace,
        key: &str,
        t: &LeaseToken,
        v: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()> {
        self.inner.complete(ns, key, t, v, ttl).await
    }
    async fn release(&self, ns: Namespace, key: &str, t: &LeaseToken) -> Result<bool> {
        self.inner.release(ns, key, t).await
    }
    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        v: &[u8],
        ttl: Option<Duration>,
        m: RecordMeta<'_>,
    ) -> Result<()> {
        self.inner.put(ns, key, v, ttl, m).await
    }
    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool> {
        self.inner.delete(ns, key).await
    }
    async fn list(&self, ns: Namespace, q: &ListQuery) -> Result<Page> {
        self.inner.list(ns, q).await
    }
    async fn clear(&self, ns: Namespace) -> Result<u64> {
        self.inner.clear(ns).await
    }
    async fn purge_expired(&self, ns: Namespace, limit: usize) -> Result<u64> {
        self.inner.purge_expired(ns, limit).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_calls_share_one_claim() {
    let store = Arc::new(CountingStore::default());
    let runs = Arc::new(AtomicU32::new(0));
    let f = Stent::from_arc(store.clone())
        .durable("slow")
        .idempotent()
        .wrap({
            let runs = Arc::clone(&runs);
            move |x: u32| {
                let runs = Arc::clone(&runs);
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, Infallible>(x + 1)
                }
            }
        });
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move { f.call_traced(1).await.unwrap() })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        let t = t.await.unwrap();
        assert_eq!(t.value, 2);
        statuses.push(t.outcome.status);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        statuses.iter().filter(|s| **s == Status::Executed).count(),
        1
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == Status::Joined).count(),
        49
    );
    assert_eq!(
        store.claims.load(Ordering::SeqCst),
        1,
        "followers never touch the store"
    );
    // Different arguments are different flights.
    assert_eq!(f.call(2).await.unwrap(), 3);
    assert_eq!(store.claims.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_of_a_failed_leader_try_for_themselves() {
    let runs = Arc::new(AtomicU32::new(0));
    let f = Stent::new(MemoryStore::new())
        .durable("flaky")
        .idempotent()
        .wrap({
            let runs = Arc::clone(&runs);
            move |_: ()| {
                let runs = Arc::clone(&runs);
                async move {
                    let n = runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if n == 0 {
                        Err("first try fails")
                    } else {
                        Ok(n)
                    }
                }
            }
        });
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move { f.call(()).await })
        })
        .collect();
    let results: Vec<_> = join_all(tasks).await;
    assert_eq!(
        results.iter().filter(|r| r.is_err()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .all(|v| *v == 1),
        "{results:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

async fn join_all<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}
