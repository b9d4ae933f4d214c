//! `LocalTier`'s bounds: under a million distinct keys it stays within its entries and bytes.

use std::time::Duration;

use stent_core::{
    Capabilities, Claim, ClaimOutcome, Error, ErrorKind, LeaseToken, ListQuery, LocalTier,
    Namespace, Page, Record, RecordMeta, RecordState, Result, ResultStore, Timestamp, async_trait,
};

/// Holds nothing and answers every read with a completed record of the key carrying
/// `value_len` bytes: what a tier in front of a store of a million records sees.
#[derive(Debug)]
struct Endless {
    value_len: usize,
}

fn unsupported<T>() -> Result<T> {
    Err(Error::new(ErrorKind::Unsupported, "reads only"))
}

#[async_trait]
impl ResultStore for Endless {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
    }
    async fn get(&self, _: Namespace, key: &str) -> Result<Option<Record>> {
        let mut record = Record::new(key, RecordState::Completed, Timestamp::now());
        record.value = Some(vec![b'x'; self.value_len]);
        Ok(Some(record))
    }
    async fn claim(&self, _: Namespace, _: &str, _: &Claim<'_>) -> Result<ClaimOutcome> {
        unsupported()
    }
    async fn renew(&self, _: Namespace, _: &str, _: &LeaseToken, _: Duration) -> Result<Timestamp> {
        unsupported()
    }
    async fn complete(
        &self,
        _: Namespace,
        _: &str,
        _: &LeaseToken,
        _: &[u8],
        _: Option<Duration>,
    ) -> Result<()> {
        unsupported()
    }
    async fn release(&self, _: Namespace, _: &str, _: &LeaseToken) -> Result<bool> {
        unsupported()
    }
    async fn put(
        &self,
        _: Namespace,
        _: &str,
        _: &[u8],
        _: Option<Duration>,
        _: RecordMeta<'_>,
    ) -> Result<()> {
        unsupported()
    }
    async fn delete(&self, _: Namespace, _: &str) -> Result<bool> {
        unsupported()
    }
    async fn list(&self, _: Namespace, _: &ListQuery) -> Result<Page> {
        unsupported()
    }
    async fn clear(&self, _: Namespace) -> Result<u64> {
        unsupported()
    }
    async fn purge_expired(&self, _: Namespace, _: usize) -> Result<u64> {
        unsupported()
    }
}

#[tokio::test]
async fn a_million_distinct_keys_stay_within_the_entries_and_bytes_bounds() {
    const MAX_ENTRIES: u64 = 10_000;
    const MAX_BYTES: u64 = 4 << 20;
    // 1 KiB values fill the bytes first; 8-byte values fill the entries first.
    for (value_len, keys) in [(1024, 200_000), (8, 1_000_000)] {
        let tier = LocalTier::new(Endless { value_len }, MAX_ENTRIES, MAX_BYTES);
        for i in 0..keys {
            let key = format!("f|v1|order-{i}");
            let record = tier
                .get(Namespace::Idempotency, &key)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(record.key, key);
        }
        let (entries, bytes) = tier.usage();
        assert!(
            entries <= MAX_ENTRIES,
            "{entries} entries ({value_len}-byte values)"
        );
        assert!(
            bytes <= MAX_BYTES,
            "{bytes} bytes ({value_len}-byte values)"
        );
        // Full, not empty: it keeps what fits.
        assert!(
            bytes > MAX_BYTES / 2,
            "{bytes} bytes ({value_len}-byte values)"
        );
        let per_record = (value_len + 256) as u64;
        assert!(
            entries >= (MAX_BYTES / per_record).min(MAX_ENTRIES) / 2,
            "{entries}"
        );
    }
}
