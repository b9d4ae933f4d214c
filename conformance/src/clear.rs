//! `clear`: empties one namespace of this store (admin).

use std::sync::Arc;

use stent_core::{ListQuery, ResultStore};

use crate::support::{CACHE, IDEM, meta};

/// Deletes every record of the namespace and returns how many; the other namespace is untouched.
pub async fn clear_empties_only_its_namespace(store: Arc<dyn ResultStore>) {
    for k in ["x1", "x2", "x3"] {
        store.put(CACHE, k, b"v", None, meta()).await.unwrap();
    }
    store.put(IDEM, "kept", b"v", None, meta()).await.unwrap();
    assert_eq!(store.clear(CACHE).await.unwrap(), 3);
    assert!(
        store
            .list(CACHE, &ListQuery::new())
            .await
            .unwrap()
            .records
            .is_empty()
    );
    assert!(store.get(IDEM, "kept").await.unwrap().is_some());
    assert_eq!(store.clear(CACHE).await.unwrap(), 0);
}
