//! A delegating store for tests of the wrapper's behaviour around store operations.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use stent_core::{
    Capabilities, Claim, ClaimOutcome, Error, ErrorKind, LeaseToken, ListQuery, MemoryStore,
    Namespace, Page, Record, RecordMeta, Result, ResultStore, Timestamp,
};

/// Delegates to a MemoryStore, counting claims and failing on demand.
#[derive(Debug, Default)]
pub struct CountingStore {
    pub inner: MemoryStore,
    pub claims: AtomicU32,
    /// How many `complete` calls apply their write and then report a lost connection.
    pub lose_complete_replies: AtomicU32,
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
        let applied = self.inner.complete(ns, key, t, v, ttl).await;
        let lose = self
            .lose_complete_replies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if lose {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "connection reset before the reply",
            ));
        }
        applied
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
