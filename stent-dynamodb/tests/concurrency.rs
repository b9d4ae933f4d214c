//! 64 callers, each with its own store (as 64 processes would have), call one idempotent
//! function on one key at once: it runs exactly once. The executions are counted in
//! DynamoDB itself, by an atomic `ADD` on a counter item, not in this process's memory.

mod support;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use stent_core::{Status, Stent};
use stent_dynamodb::DynamoDbStore;

const CALLERS: usize = 64;

/// Adds one to the counter item `pk` and returns the new count.
async fn count_execution(store: &DynamoDbStore, pk: &str) -> Result<u64, String> {
    let out = store
        .client()
        .update_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(pk.to_owned()))
        .update_expression("ADD executions :one")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .return_values(ReturnValue::UpdatedNew)
        .send()
        .await
        .map_err(|e| {
            format!(
                "counting failed: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            )
        })?;
    match out.attributes().and_then(|a| a.get("executions")) {
        Some(AttributeValue::N(n)) => n.parse().map_err(|e| format!("counter {n:?}: {e}")),
        other => Err(format!("counter missing: {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_callers_with_their_own_stores_execute_once() {
    let url = match support::moto_url() {
        Ok(url) => url,
        Err(reason) if !support::required() => return eprintln!("SKIPPED: {reason}"),
        Err(reason) => panic!("{reason} and STENT_REQUIRE_BACKENDS=1"),
    };
    let prefix = stent_conformance::unique_id();
    let first = support::builder(&url, support::TABLE, &prefix)
        .build()
        .await
        .unwrap();
    let _turn = support::turn().await;
    first.migrate().await.unwrap();
    let counter = format!("{prefix}#executions");

    let barrier = Arc::new(tokio::sync::Barrier::new(CALLERS));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let store = DynamoDbStore::builder()
                .client(first.client().clone())
                .table(support::TABLE)
                .and_then(|b| b.key_prefix(&prefix))
                .unwrap();
            let counter = counter.clone();
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                let store = store.build().await.unwrap();
                let charge = Stent::new(store.clone())
                    .durable("payments::charge")
                    .idempotent()
                    .wrap(move |(order, amount): (String, u64)| {
                        let store = store.clone();
                        let counter = counter.clone();
                        async move {
                            let n = count_execution(&store, &counter).await?;
                            // Hold the lease while the other callers pile up.
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            Ok::<_, String>(format!("{order}:{amount}:execution-{n}"))
                        }
                    });
                barrier.wait().await;
                charge.call_traced(("ord-1".to_owned(), 500)).await
            })
        })
        .collect();

    let mut executed = 0;
    for caller in callers {
        let t = caller
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("caller failed: {e}"));
        assert_eq!(t.value, "ord-1:500:execution-1");
        executed += usize::from(t.outcome.status == Status::Executed);
    }
    assert_eq!(
        executed, 1,
        "exactly one caller executes; the others replay"
    );
    let item = first
        .client()
        .get_item()
        .table_name(support::TABLE)
        .key("pk", AttributeValue::S(counter))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let executions = item.item().and_then(|i| i.get("executions")).cloned();
    assert_eq!(
        executions,
        Some(AttributeValue::N("1".into())),
        "the function ran once in all"
    );
}
