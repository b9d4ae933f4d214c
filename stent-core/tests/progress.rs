//! The per-execution progress log.

use std::convert::Infallible;

use stent_core::{MemoryStore, Namespace, ResultStore, Stent};

#[tokio::test]
async fn executions_record_each_call_with_its_status() {
    let store = MemoryStore::new();
    let stent = Stent::new(store.clone());
    let step = stent
        .durable("workflow::step")
        .cached()
        .wrap(|x: u32| async move { if x == 0 { Err("zero") } else { Ok(x * 10) } });
    let once = stent
        .durable("workflow::charge")
        .idempotent()
        .wrap(|x: u32| async move { Ok::<_, Infallible>(x) });
    stent
        .run_execution("wf-1", async {
            step.call(1).await.unwrap();
            step.call(1).await.unwrap();
            once.call(5).await.unwrap();
            once.call(5).await.unwrap();
            step.call(0).await.unwrap_err();
        })
        .await;
    // Outside an execution nothing is recorded.
    step.call(2).await.unwrap();
    let state = stent.state_of("wf-1").await.unwrap();
    let seen: Vec<_> = state
        .progress
        .iter()
        .map(|p| (p.step.as_str(), p.status.as_str(), p.detail.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("workflow::step", "executed", "executed"),
            ("workflow::step", "cache_hit", "cache_hit"),
            ("workflow::charge", "executed", "executed"),
            ("workflow::charge", "cache_hit", "replayed"),
            ("workflow::step", "failed", "function"),
        ]
    );
    assert!(state.progress.iter().all(|p| p.finished_at >= p.started_at));
    assert_eq!(state.progress[0].key, r#"workflow::step|None|[1]"#);
    // A second run of the same execution appends, in order.
    stent
        .run_execution("wf-1", async { step.call(1).await.unwrap() })
        .await;
    let state = stent.state_of("wf-1").await.unwrap();
    assert_eq!(state.progress.len(), 6);
    assert_eq!(state.progress[5].status, "cache_hit");
    assert!(stent.state_of("unknown").await.unwrap().progress.is_empty());
    // Entries live in their own namespace and expire.
    let r = store
        .get(Namespace::Progress, "stent:progress|wf-1|00000000")
        .await
        .unwrap()
        .expect("entry");
    assert!(r.expires_at.is_some());
    // Clearing the cache keeps the debugging history.
    assert!(store.clear(Namespace::Cache).await.unwrap() > 0);
    assert_eq!(stent.state_of("wf-1").await.unwrap().progress.len(), 6);
}
