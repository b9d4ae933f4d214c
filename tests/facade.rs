//! Everything a public stent API returns can be named through `stent` alone.

use std::convert::Infallible;

use stent::{ExecutionState, MemoryStore, ProgressEntry, Stent};

#[tokio::test]
async fn the_progress_log_is_nameable_from_the_facade() {
    let stent = Stent::new(MemoryStore::new());
    let step = stent
        .durable("facade::step")
        .cached()
        .wrap(|n: u32| async move { Ok::<_, Infallible>(n) });
    stent
        .run_execution("exec-1", async { step.call(1).await })
        .await
        .unwrap();
    let state: ExecutionState = stent.state_of("exec-1").await.unwrap();
    let entries: &[ProgressEntry] = &state.progress;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].status, "executed");
    assert_eq!(stent::progress::PROGRESS_PREFIX, "stent:progress|");
}
