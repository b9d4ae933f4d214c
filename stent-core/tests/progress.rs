//! The per-execution progress log.

use std::convert::Infallible;

use stent_core::{Durable, ListQuery, MemoryStore, Namespace, Record, ResultStore, Stent};

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
    let query = ListQuery::new().prefix("stent:progress|wf-1|");
    let page = store.list(Namespace::Progress, &query).await.unwrap();
    assert_eq!(page.records.len(), 6);
    assert!(page.records.iter().all(|r| r.expires_at.is_some()));
    // Clearing the cache keeps the debugging history.
    assert!(store.clear(Namespace::Cache).await.unwrap() > 0);
    assert_eq!(stent.state_of("wf-1").await.unwrap().progress.len(), 6);
}

/// A step that returns its argument.
type Echo = Durable<u32, u32, Infallible>;

/// A store, a `Stent` on it and an [`Echo`] step.
fn echo() -> (MemoryStore, Stent, Echo) {
    let store = MemoryStore::new();
    let stent = Stent::new(store.clone());
    let step = stent
        .durable("workflow::step")
        .wrap(|x: u32| async move { Ok::<_, Infallible>(x) });
    (store, stent, step)
}

/// The keys of the calls in the log of execution `id`, in its order.
async fn logged(stent: &Stent, id: &str) -> Vec<String> {
    let state = stent.state_of(id).await.unwrap();
    state.progress.into_iter().map(|p| p.key).collect()
}

/// The first progress record stored for execution `id`.
async fn first_entry(store: &MemoryStore, id: &str) -> Record {
    let query = ListQuery::new().prefix(format!("stent:progress|{id}|"));
    let page = store.list(Namespace::Progress, &query).await.unwrap();
    page.records.into_iter().next().expect("an entry")
}

/// The log of an id holds only its own calls, even when another id starts with `{id}|`.
#[tokio::test]
async fn progress_of_an_id_holds_none_of_another_ids_steps() {
    let (_, stent, step) = echo();
    stent
        .run_execution("order-1|retry", async { step.call(9).await.unwrap() })
        .await;
    stent
        .run_execution("order-1", async {
            step.call(1).await.unwrap();
            step.call(2).await.unwrap();
        })
        .await;
    let own = logged(&stent, "order-1").await;
    assert_eq!(own, ["workflow::step|None|[1]", "workflow::step|None|[2]"]);
    let other = logged(&stent, "order-1|retry").await;
    assert_eq!(other, ["workflow::step|None|[9]"]);
}

/// Concurrent runs of one id (two workers retrying the same job) each append every call.
#[tokio::test]
async fn concurrent_runs_of_an_id_keep_every_call() {
    let (_, stent, step) = echo();
    // Both runs start before either records a call.
    let both_started = &tokio::sync::Barrier::new(2);
    let step = &step;
    let run = |base: u32| {
        stent.run_execution("job-1", async move {
            both_started.wait().await;
            step.call(base).await.unwrap();
            step.call(base + 1).await.unwrap();
        })
    };
    tokio::join!(run(10), run(20));
    let mut keys = logged(&stent, "job-1").await;
    keys.sort_unstable();
    let expected = ["|[10]", "|[11]", "|[20]", "|[21]"].map(|a| format!("workflow::step|None{a}"));
    assert_eq!(keys, expected);
}

/// A run after the oldest entries of its id expired overwrites none of the others.
#[tokio::test]
async fn a_run_after_earlier_entries_expired_keeps_the_rest() {
    let (store, stent, step) = echo();
    stent
        .run_execution("job-2", async {
            step.call(1).await.unwrap();
            step.call(2).await.unwrap();
        })
        .await;
    let first = first_entry(&store, "job-2").await;
    assert!(store.delete(Namespace::Progress, &first.key).await.unwrap());
    stent
        .run_execution("job-2", async { step.call(3).await.unwrap() })
        .await;
    let keys = logged(&stent, "job-2").await;
    assert_eq!(keys, ["workflow::step|None|[2]", "workflow::step|None|[3]"]);
}

/// Entries logged before runs had a token (`…|{id}|{8-digit sequence}`) still read, before
/// newer runs' entries, and only under their own id.
#[tokio::test]
async fn entries_logged_before_run_tokens_still_read_first() {
    let (store, stent, step) = echo();
    stent
        .run_execution("scratch", async { step.call(1).await.unwrap() })
        .await;
    let value = first_entry(&store, "scratch").await.value.unwrap();
    for key in [
        "stent:progress|job-3|00000000",
        "stent:progress|job-3|retry|00000000",
    ] {
        let meta = Default::default();
        store
            .put(Namespace::Progress, key, &value, None, meta)
            .await
            .unwrap();
    }
    stent
        .run_execution("job-3", async { step.call(2).await.unwrap() })
        .await;
    let keys = logged(&stent, "job-3").await;
    assert_eq!(keys, ["workflow::step|None|[1]", "workflow::step|None|[2]"]);
    assert_eq!(logged(&stent, "job-3|retry").await.len(), 1);
}
