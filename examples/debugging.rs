//! The guide's Debugging section: was a call a cache hit, what is in the cache, clearing it.
//!
//! ```sh
//! cargo run --example debugging
//! ```

use std::convert::Infallible;

use stent::{ListQuery, Namespace, Stent};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("STENT_STORE").unwrap_or_else(|_| "sqlite://stent.db".into());
    let store = stent::connect(&url).await?;
    let stent = Stent::from_arc(store.clone());
    let expensive_computation = stent
        .durable("expensive_computation")
        .cached()
        .wrap(|data_hash: String| async move { Ok::<_, Infallible>(data_hash.len()) });

    // Check if a result was cached: every call reports how it was served.
    for hash in ["hash-1", "hash-1", "hash-2"] {
        let t = expensive_computation.call_traced(hash.into()).await?;
        if t.outcome.status.is_hit() {
            println!("cache hit for {}", t.outcome.key);
        } else {
            println!("computed {}", t.outcome.key);
        }
    }

    // View cache contents (the same as `SELECT key, created_at FROM cache` on SQLite).
    let mut cursor = None;
    loop {
        let page = store
            .list(Namespace::Cache, &ListQuery::new().limit(50).cursor(cursor))
            .await?;
        for r in &page.records {
            println!("Key: {}, Created: {}", r.key, r.created_at);
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }

    // Clear the cache (use with caution).
    let n = store.clear(Namespace::Cache).await?;
    println!("cleared {n} cached result(s)");
    Ok(())
}
