//! The in-memory reference store.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::record::{
    Capabilities, Claim, ClaimOutcome, LeaseToken, ListQuery, Namespace, Page, Record, RecordMeta,
    RecordState, Timestamp,
};
use crate::store::{ResultStore, check_value_len};

/// A [`ResultStore`] in process memory: the reference implementation of the contract.
///
/// Fast and exact, but not shared between processes and gone when the process exits.
/// Clones share the same data. Time comes from a [`Clock`], so tests can move it with a
/// [`ManualClock`](crate::ManualClock).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> stent_core::Result<()> {
/// use stent_core::{MemoryStore, Namespace, RecordMeta, ResultStore};
///
/// let store = MemoryStore::new();
/// store.put(Namespace::Cache, "k", b"\x01\"v\"", None, RecordMeta::default()).await?;
/// assert!(store.get(Namespace::Cache, "k").await?.is_some());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    caps: Capabilities,
    clock: Arc<dyn Clock>,
    /// One map per namespace, in [`Namespace::ALL`] order.
    maps: Arc<[Mutex<Map>; Namespace::ALL.len()]>,
}

type Map = BTreeMap<String, Record>;

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("MemoryStore");
        s.field("clock", &self.clock);
        for ns in Namespace::ALL {
            s.field(ns.as_str(), &self.map(ns).len());
        }
        s.finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(SystemClock)
    }

    /// An empty store on `clock`.
    pub fn with_clock(clock: impl Clock) -> Self {
        MemoryStore {
            caps: Capabilities::new(),
            clock: Arc::new(clock),
            maps: Arc::default(),
        }
    }

    /// Refuses values over `max` bytes with [`ErrorKind::ValueTooLarge`](crate::ErrorKind::ValueTooLarge),
    /// in this handle and clones made from it (clones made earlier keep their limit).
    pub fn with_max_value_len(mut self, max: usize) -> Self {
        self.caps = self.caps.max_value_len(Some(max));
        self
    }

    fn map(&self, ns: Namespace) -> MutexGuard<'_, Map> {
        // A panic while holding the lock cannot leave a record half-written (every
        // update is a single assignment), so a poisoned map is still consistent.
        let map = &self.maps[ns as usize];
        map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The in-progress record of `key` that `token` owns.
    fn owned<'m>(map: &'m mut Map, key: &str, token: &LeaseToken) -> Option<&'m mut Record> {
        map.get_mut(key)
            .filter(|r| r.state == RecordState::InProgress && r.lease_token.as_ref() == Some(token))
    }
}

fn apply_meta(record: &mut Record, meta: &RecordMeta<'_>) {
    record.function = meta.function.map(str::to_owned);
    record.version = meta.version.map(str::to_owned);
    record.fingerprint = meta.fingerprint.map(str::to_owned);
}

#[async_trait]
impl ResultStore for MemoryStore {
    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Record>> {
        let now = self.clock.now();
        let map = self.map(ns);
        Ok(map.get(key).filter(|r| !r.is_expired(now)).cloned())
    }

    async fn claim(&self, ns: Namespace, key: &str, claim: &Claim<'_>) -> Result<ClaimOutcome> {
        let now = self.clock.now();
        let lease_expires_at = now.add(claim.lease);
        let mut map = self.map(ns);
        let attempt = match map.get(key).filter(|r| !r.is_expired(now)) {
            None => 1,
            Some(r) if r.state == RecordState::Completed => {
                return Ok(ClaimOutcome::Completed(r.clone()));
            }
            Some(r) if !r.lease_lapsed(now) => return Ok(ClaimOutcome::InFlight(r.clone())),
            Some(r) => r.attempt.saturating_add(1),
        };
        let mut record = Record::new(key, RecordState::InProgress, now);
        record.lease_token = Some(claim.token.clone());
        record.lease_expires_at = Some(lease_expires_at);
        record.attempt = attempt;
        apply_meta(&mut record, &claim.meta);
        map.insert(key.to_owned(), record);
        Ok(ClaimOutcome::Acquired {
            attempt,
            lease_expires_at,
        })
    }

    async fn renew(
        &self,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        lease: Duration,
    ) -> Result<Timestamp> {
        let until = self.clock.now().add(lease);
        let mut map = self.map(ns);
        let record = Self::owned(&mut map, key, token).ok_or_else(|| Error::lease_lost(key))?;
        record.lease_expires_at = Some(until);
        Ok(until)
    }

    async fn complete(
        &self,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()> {
        check_value_len(&self.caps, key, value)?;
        let now = self.clock.now();
        let mut map = self.map(ns);
        let record = Self::owned(&mut map, key, token).ok_or_else(|| Error::lease_lost(key))?;
        record.state = RecordState::Completed;
        record.value = Some(value.to_vec());
        record.lease_token = None;
        record.lease_expires_at = None;
        record.completed_at = Some(now);
        record.expires_at = ttl.map(|t| now.add(t));
        Ok(())
    }

    async fn release(&self, ns: Namespace, key: &str, token: &LeaseToken) -> Result<bool> {
        let mut map = self.map(ns);
        let owned = Self::owned(&mut map, key, token).is_some();
        Ok(owned && map.remove(key).is_some())
    }

    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        meta: RecordMeta<'_>,
    ) -> Result<()> {
        check_value_len(&self.caps, key, value)?;
        let now = self.clock.now();
        let mut record = Record::new(key, RecordState::Completed, now);
        record.value = Some(value.to_vec());
        record.completed_at = Some(now);
        record.expires_at = ttl.map(|t| now.add(t));
        apply_meta(&mut record, &meta);
        self.map(ns).insert(key.to_owned(), record);
        Ok(())
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool> {
        Ok(self.map(ns).remove(key).is_some())
    }

    async fn list(&self, ns: Namespace, query: &ListQuery) -> Result<Page> {
        let now = self.clock.now();
        let start = match &query.cursor {
            Some(c) if *c >= query.prefix => Bound::Excluded(c.as_str()),
            _ => Bound::Included(query.prefix.as_str()),
        };
        let records = self
            .map(ns)
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(query.prefix.as_str()))
            .filter(|(_, r)| query.include_expired || !r.is_expired(now))
            .take(query.limit.max(1) + 1)
            .map(|(_, r)| r.clone())
            .collect();
        Ok(Page::from_fetched(records, query.limit))
    }

    async fn clear(&self, ns: Namespace) -> Result<u64> {
        Ok(std::mem::take(&mut *self.map(ns)).len() as u64)
    }

    async fn purge_expired(&self, ns: Namespace, limit: usize) -> Result<u64> {
        let now = self.clock.now();
        let mut purged = 0;
        self.map(ns).retain(|_, r| {
            let purge = purged < limit && r.is_expired(now);
            purged += usize::from(purge);
            !purge
        });
        Ok(purged as u64)
    }
}
