//! A `FaultStore` with no rules is invisible: the whole conformance suite passes through it.

use std::sync::Arc;

use stent_core::testkit::FaultStore;
use stent_core::{MemoryStore, ResultStore};

async fn pass_through(_case: String) -> Result<Arc<dyn ResultStore>, String> {
    Ok(Arc::new(FaultStore::new(MemoryStore::new())))
}

stent_conformance::conformance_tests!(pass_through);
