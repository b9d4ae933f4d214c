//! The guide's scenarios, on `./stent.db`.
//!
//! ```sh
//! cargo run --example quickstart
//! sqlite3 stent.db "SELECT key, created_at FROM cache"
//! ```
//!
//! Run it twice: the second time every call is served from the database.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use stent::{SqliteStore, Stent, Traced};

fn show<R: std::fmt::Debug>(call: &str, t: &Traced<R>) {
    println!(
        "  {call:<44} -> {:<9} attempt {}  value {:?}\n  {:<44}    key {}",
        t.outcome.status.as_str(),
        t.outcome.attempt,
        t.value,
        "",
        t.outcome.key
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = SqliteStore::open("stent.db").await?;
    println!("store: {}", store.path().display());
    let stent = Stent::new(store);

    // 1. Idempotency: a payment retried three times is charged once.
    println!("\n1. idempotent payment, called three times");
    let charges = Arc::new(AtomicU32::new(0));
    let charge_customer = stent
        .durable("billing::charge_customer")
        .idempotent()
        .wrap({
            let charges = Arc::clone(&charges);
            move |(order_id, amount): (String, u64)| {
                let charges = Arc::clone(&charges);
                async move {
                    charges.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(format!("receipt:{order_id}:{amount}"))
                }
            }
        });
    for _ in 0..3 {
        let t = charge_customer
            .call_traced(("ord-1001".into(), 4999))
            .await?;
        show("charge_customer(\"ord-1001\", 4999)", &t);
    }
    println!(
        "  gateway charged {} time(s) in this run",
        charges.load(Ordering::SeqCst)
    );

    // 2. Caching: an expensive computation is reused.
    println!("\n2. cached computation (TTL 1 h)");
    let generate_report = stent
        .durable("reports::generate_report")
        .cached()
        .ttl(Duration::from_secs(3600))
        .wrap(|(region, quarter): (String, u8)| async move {
            tokio::time::sleep(Duration::from_millis(300)).await; // the slow part
            Ok::<_, Infallible>(format!("{region} Q{quarter}: revenue up 4%"))
        });
    for _ in 0..2 {
        let t = generate_report.call_traced(("emea".into(), 3)).await?;
        show("generate_report(\"emea\", 3)", &t);
    }

    // 3. Versioning: a new version is a new keyspace.
    println!("\n3. version bump");
    for version in ["v1", "v2", "v2"] {
        let process_data = stent
            .durable("etl::process_data")
            .cached()
            .version(version)
            .wrap(move |x: i64| async move {
                Ok::<_, Infallible>(if version == "v1" { x * 2 } else { x * 3 })
            });
        let t = process_data.call_traced(14).await?;
        show(&format!("process_data(14) @ {version}"), &t);
    }

    // 4. Custom key: the retry counter is not part of the key.
    println!("\n4. custom key ignoring the retry counter");
    let process_order = stent
        .durable("orders::process_order")
        .idempotent()
        .key(|(order_id, _timestamp, _retry): &(String, String, u32)| {
            format!("process_order:{order_id}")
        })
        .wrap(
            |(order_id, _timestamp, retry): (String, String, u32)| async move {
                Ok::<_, Infallible>(format!("order {order_id} processed on try {retry}"))
            },
        );
    for retry in 0..3 {
        let t = process_order
            .call_traced(("o-77".into(), format!("2026-11-28T10:0{retry}:00Z"), retry))
            .await?;
        show(&format!("process_order(\"o-77\", …, retry={retry})"), &t);
    }

    println!("\nlook inside: sqlite3 stent.db \"SELECT key, created_at FROM cache\"");
    Ok(())
}
