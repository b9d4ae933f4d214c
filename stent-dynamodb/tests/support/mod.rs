//! Shared by the integration tests: the moto endpoint, stores on it, and turns on it.
#![allow(dead_code)] // each test binary uses its own part

use stent_dynamodb::{DynamoDbStore, DynamoDbStoreBuilder};

/// The table every test on the shared server uses (each under its own key prefix).
pub(crate) const TABLE: &str = "stent_conformance";

/// The shared server's endpoint, or why there is none.
pub(crate) fn moto_url() -> std::result::Result<String, String> {
    std::env::var("STENT_DYNAMODB_URL").map_err(|_| {
        "STENT_DYNAMODB_URL is not set (scripts/test starts moto and sets it)".to_owned()
    })
}

/// Whether a missing server fails the run (`STENT_REQUIRE_BACKENDS=1`) instead of skipping.
pub(crate) fn required() -> bool {
    stent_conformance::backends_required()
}

/// A builder for `endpoint` with moto's credentials and region set explicitly, so nothing
/// depends on AWS variables in the environment.
pub(crate) fn builder(endpoint: &str, table: &str, prefix: &str) -> DynamoDbStoreBuilder {
    DynamoDbStore::builder()
        .endpoint_url(endpoint)
        .and_then(|b| b.table(table))
        .and_then(|b| b.key_prefix(prefix))
        .unwrap_or_else(|e| panic!("test configuration: {e}"))
        .region("us-east-1")
        .credentials("test", "test")
}

#[allow(unused_imports)] // each test binary uses its own part
pub(crate) use stent_conformance::servers::turn::{WithTurn, turn};
