//! The conformance suite against the in-memory reference store.

use std::sync::Arc;

use stent_core::{MemoryStore, ResultStore};

async fn memory(_case: String) -> Result<Arc<dyn ResultStore>, String> {
    Ok(Arc::new(MemoryStore::new()))
}

stent_conformance::conformance_tests!(memory);
