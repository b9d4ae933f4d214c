//! Small helpers shared by the cases.

use std::future::Future;
use std::time::{Duration, Instant};

use stent_core::{Claim, ClaimOutcome, LeaseToken, Namespace, RecordMeta, ResultStore};

/// A lease long enough to stay live for the whole case on a loaded machine.
pub(crate) const LIVE: Duration = Duration::from_secs(30);
/// A lease short enough to lapse quickly.
pub(crate) const SHORT: Duration = Duration::from_millis(250);
/// A TTL short enough to pass quickly.
pub(crate) const TTL: Duration = Duration::from_millis(300);
/// How long a case waits for something that must happen eventually.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

pub(crate) const IDEM: Namespace = Namespace::Idempotency;
pub(crate) const CACHE: Namespace = Namespace::Cache;

pub(crate) fn meta() -> RecordMeta<'static> {
    RecordMeta {
        function: Some("conformance::case"),
        version: Some("v1"),
        fingerprint: None,
    }
}

pub(crate) async fn claim(
    store: &dyn ResultStore,
    ns: Namespace,
    key: &str,
    token: &LeaseToken,
    lease: Duration,
) -> ClaimOutcome {
    store
        .claim(
            ns,
            key,
            &Claim {
                token,
                lease,
                meta: meta(),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("claim({key:?}) failed: {e}"))
}

/// Claims `key` and asserts it was acquired; returns the token and attempt.
pub(crate) async fn acquire(
    store: &dyn ResultStore,
    ns: Namespace,
    key: &str,
    lease: Duration,
) -> (LeaseToken, u32) {
    let token = LeaseToken::generate();
    match claim(store, ns, key, &token, lease).await {
        ClaimOutcome::Acquired { attempt, .. } => (token, attempt),
        other => panic!("claim({key:?}) should acquire, got {other:?}"),
    }
}

/// Claims `key` with a [`SHORT`] lease and waits until a second claim takes it over;
/// returns the stale token and the new owner's.
pub(crate) async fn take_over(
    store: &dyn ResultStore,
    ns: Namespace,
    key: &str,
) -> (LeaseToken, LeaseToken) {
    let (stale, _) = acquire(store, ns, key, SHORT).await;
    let fresh = LeaseToken::generate();
    eventually("takeover", || async {
        matches!(
            claim(store, ns, key, &fresh, LIVE).await,
            ClaimOutcome::Acquired { .. }
        )
        .then_some(())
    })
    .await;
    (stale, fresh)
}

/// Polls `check` until it returns `Some`, or panics with `what` after [`PATIENCE`].
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < PATIENCE, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
