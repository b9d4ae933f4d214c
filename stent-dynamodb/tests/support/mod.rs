//! Shared by the integration tests: the moto endpoint, stores on it, and turns on it.
#![allow(dead_code)] // each test binary uses its own part

use std::net::TcpListener;
use std::time::Duration;

use async_trait::async_trait;
use stent_core::{
    Capabilities, Claim, ClaimOutcome, LeaseToken, ListQuery, Namespace, Page, Record, RecordMeta,
    Result, ResultStore, Timestamp,
};
use stent_dynamodb::{DynamoDbStore, DynamoDbStoreBuilder};

/// The table every test on the shared server uses (each under its own key prefix).
pub(crate) const TABLE: &str = "stent_conformance";

/// The loopback port whose listener is the turn (see [`turn`]).
const TURN_PORT: u16 = 5598;

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

/// Holding a turn means no other test of this crate that takes one talks to the shared
/// server meanwhile, in this process or another (nextest runs each test in its own).
///
/// moto answers one request at a time, a few milliseconds each: a 64-caller race queues
/// everyone else's requests for a good part of a second, past the leases of a few hundred
/// milliseconds some cases run with. The turn is a listener on a fixed loopback port, which
/// the system releases when its holder exits, however it exits.
#[derive(Debug)]
pub(crate) struct Turn(#[allow(dead_code)] TcpListener);

/// Waits for the turn.
pub(crate) async fn turn() -> Turn {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        match TcpListener::bind(("127.0.0.1", TURN_PORT)) {
            Ok(listener) => return Turn(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "127.0.0.1:{TURN_PORT} stayed taken for 5 minutes: is another program using it?"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot take the test turn on 127.0.0.1:{TURN_PORT}: {e}"),
        }
    }
}

/// A store that keeps its turn while any clone of it is alive, i.e. for the whole case.
#[derive(Debug)]
pub(crate) struct WithTurn {
    store: DynamoDbStore,
    _turn: Turn,
}

impl WithTurn {
    pub(crate) fn new(store: DynamoDbStore, turn: Turn) -> Self {
        WithTurn { store, _turn: turn }
    }
}

#[async_trait]
impl ResultStore for WithTurn {
    fn capabilities(&self) -> Capabilities {
        self.store.capabilities()
    }
    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Record>> {
        self.store.get(ns, key).await
    }
    async fn claim(&self, ns: Namespace, key: &str, claim: &Claim<'_>) -> Result<ClaimOutcome> {
        self.store.claim(ns, key, claim).await
    }
    async fn renew(
        &self,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        lease: Duration,
    ) -> Result<Timestamp> {
        self.store.renew(ns, key, token, lease).await
    }
    async fn complete(
        &self,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()> {
        self.store.complete(ns, key, token, value, ttl).await
    }
    async fn release(&self, ns: Namespace, key: &str, token: &LeaseToken) -> Result<bool> {
        self.store.release(ns, key, token).await
    }
    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        meta: RecordMeta<'_>,
    ) -> Result<()> {
        self.store.put(ns, key, value, ttl, meta).await
    }
    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool> {
        self.store.delete(ns, key).await
    }
    async fn list(&self, ns: Namespace, query: &ListQuery) -> Result<Page> {
        self.store.list(ns, query).await
    }
    async fn clear(&self, ns: Namespace) -> Result<u64> {
        self.store.clear(ns).await
    }
    async fn purge_expired(&self, ns: Namespace, limit: usize) -> Result<u64> {
        self.store.purge_expired(ns, limit).await
    }
}
