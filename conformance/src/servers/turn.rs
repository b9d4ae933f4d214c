//! Turns on the shared DynamoDB-API server.
//!
//! moto answers one request at a time, a few milliseconds each: a 64-caller race queues
//! everyone else's requests for a good part of a second, past the leases of a few hundred
//! milliseconds some cases run with. A test holding the turn knows that no other test that
//! takes it (in this process or another: nextest runs each test in its own) talks to the
//! server meanwhile. The turn is a listener on a fixed loopback port, which the system
//! releases when its holder exits, however it exits.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stent_core::{
    Capabilities, Claim, ClaimOutcome, LeaseToken, ListQuery, Namespace, Page, Record, RecordMeta,
    Result, ResultStore, Timestamp, async_trait,
};

/// The loopback port whose listener is the turn.
const TURN_PORT: u16 = 5598;

/// The turn on the shared DynamoDB-API server, held until dropped.
#[derive(Debug)]
pub struct Turn(#[allow(dead_code)] TcpListener);

/// Waits for the turn (5 minutes at most, then panics).
pub async fn turn() -> Turn {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        match TcpListener::bind(("127.0.0.1", TURN_PORT)) {
            Ok(listener) => return Turn(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                assert!(
                    Instant::now() < deadline,
                    "127.0.0.1:{TURN_PORT} stayed taken for 5 minutes: is another program using it?"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot take the test turn on 127.0.0.1:{TURN_PORT}: {e}"),
        }
    }
}

/// A store that keeps a turn while it lives, i.e. for the whole case that uses it.
#[derive(Debug)]
pub struct WithTurn {
    store: Arc<dyn ResultStore>,
    _turn: Turn,
}

impl WithTurn {
    /// `store`, holding `turn`.
    pub fn new(store: Arc<dyn ResultStore>, turn: Turn) -> Self {
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
