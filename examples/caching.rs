//! The guide's caching use cases: expensive computations, external data, ML inference,
//! versioning, and using idempotency and caching together.
//!
//! ```sh
//! cargo run --example caching
//! STENT_STORE=memory:// cargo run --example caching
//! ```

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use stent::Stent;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("STENT_STORE").unwrap_or_else(|_| "sqlite://stent.db".into());
    let stent = Stent::from_arc(stent::connect(&url).await?);

    // Expensive computation: the second call returns at once.
    let generate_report = stent.durable("reports::generate_report").cached().wrap(
        |params: BTreeMap<String, String>| async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok::<_, Infallible>(format!("report for {params:?}"))
        },
    );
    let params = BTreeMap::from([("region".to_string(), "emea".to_string())]);
    for _ in 0..2 {
        let started = Instant::now();
        let t = generate_report.call_traced(params.clone()).await?;
        println!(
            "generate_report: {} in {:?}",
            t.outcome.status,
            started.elapsed()
        );
    }

    // External data that never changes for a given date, in versioned keyspace v1.
    let fetch_exchange_rates = stent
        .durable("fx::fetch_exchange_rates")
        .cached()
        .version("v1")
        .wrap(|date: String| async move {
            // forex_api.get_rates(&date).await
            let rates =
                BTreeMap::from([("EUR/USD".to_string(), 1.08), ("GBP/USD".to_string(), 1.27)]);
            Ok::<_, Infallible>((date, rates))
        });
    let t = fetch_exchange_rates
        .call_traced("2026-11-27".into())
        .await?;
    println!(
        "rates: {:?} ({}, key {})",
        t.value, t.outcome.status, t.outcome.key
    );

    // ML inference: the model version is the function version; a new model, a new keyspace.
    for model in ["model-v2", "model-v3"] {
        let classify_document = stent
            .durable("ml::classify_document")
            .cached()
            .version(model)
            .ttl(Duration::from_secs(7 * 24 * 3600))
            .wrap(move |doc_hash: String| async move {
                Ok::<_, Infallible>(format!("{model}: invoice ({doc_hash})"))
            });
        let t = classify_document.call_traced("sha1:ab12".into()).await?;
        println!("classify with {model}: {} ({})", t.value, t.outcome.status);
    }

    // Both: never re-executed (idempotent) and served from the cache when warm.
    let process_and_store = stent
        .durable("pipeline::process_and_store")
        .idempotent()
        .cached()
        .version("v1")
        .wrap(|data_id: String| async move { Ok::<_, Infallible>(format!("stored {data_id}")) });
    for _ in 0..2 {
        let t = process_and_store.call_traced("d-1".into()).await?;
        println!("process_and_store: {} ({})", t.value, t.outcome.status);
    }
    Ok(())
}
