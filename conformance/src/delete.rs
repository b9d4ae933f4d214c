//! `delete`: removes one record, whatever its state (admin).

use std::sync::Arc;

use stent_core::ResultStore;

use crate::support::{CACHE, IDEM, LIVE, acquire, meta};

/// Returns whether a record was there, and removes it.
pub async fn delete_reports_whether_a_record_was_there(store: Arc<dyn ResultStore>) {
    store.put(CACHE, "d", b"v", None, meta()).await.unwrap();
    assert!(store.delete(CACHE, "d").await.unwrap());
    assert_eq!(store.get(CACHE, "d").await.unwrap(), None);
    assert!(!store.delete(CACHE, "d").await.unwrap());
}

/// An in-progress record is deleted too: the key can be claimed at once.
pub async fn delete_removes_an_in_progress_record(store: Arc<dyn ResultStore>) {
    acquire(&*store, IDEM, "k", LIVE).await;
    assert!(store.delete(IDEM, "k").await.unwrap());
    assert_eq!(store.get(IDEM, "k").await.unwrap(), None);
    let (_, attempt) = acquire(&*store, IDEM, "k", LIVE).await;
    assert_eq!(attempt, 1);
}
