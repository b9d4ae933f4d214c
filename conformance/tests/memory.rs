//! The conformance suite against the in-memory reference store.

use std::sync::Arc;

use stent_core::{MemoryStore, ResultStore};

async fn memory(_case: String) -> Result<Arc<dyn ResultStore>, String> {
    Ok(Arc::new(MemoryStore::new()))
}

stent_conformance::conformance_tests!(memory);

/// The same suite with a value size limit, as stores like DynamoDB have.
mod limited {
    use super::*;

    async fn limited(_case: String) -> Result<Arc<dyn ResultStore>, String> {
        Ok(Arc::new(MemoryStore::new().with_max_value_len(64 * 1024)))
    }

    stent_conformance::conformance_tests!(limited);
}
