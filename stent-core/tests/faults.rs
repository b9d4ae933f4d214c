//! The wrapper around store failures.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use stent_core::{Status, Stent};

mod support;
use support::CountingStore;

#[tokio::test]
async fn a_completion_applied_but_unacknowledged_is_not_reported_as_lease_lost() {
    let store = Arc::new(CountingStore::default());
    store.lose_complete_replies.store(1, Ordering::SeqCst);
    let runs = Arc::new(AtomicU32::new(0));
    let f = Stent::from_arc(store.clone())
        .durable("pay")
        .idempotent()
        .wrap({
            let runs = Arc::clone(&runs);
            move |_: ()| {
                let runs = Arc::clone(&runs);
                async move { Ok::<_, Infallible>(runs.fetch_add(1, Ordering::SeqCst)) }
            }
        });
    let t = f
        .call_traced(())
        .await
        .expect("the result was recorded; the call succeeds");
    assert_eq!((t.value, t.outcome.status), (0, Status::Executed));
    assert_eq!(
        store.lose_complete_replies.load(Ordering::SeqCst),
        0,
        "the fault was used"
    );
    assert_eq!(
        f.call_traced(()).await.unwrap().outcome.status,
        Status::Replayed
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
