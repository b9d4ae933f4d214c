//! The guide's idempotency use cases: payments, emails, external resources, custom keys.
//!
//! ```sh
//! cargo run --example idempotency                          # on ./stent.db
//! STENT_STORE=memory:// cargo run --example idempotency    # any store URL
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};
use stent::{ErrorKind, Execution, Stent};

/// Stands in for a payment provider, counting real charges.
#[derive(Default)]
struct Gateway {
    charges: AtomicU32,
}

#[derive(Debug, Serialize, Deserialize)]
enum ChargeError {
    Declined(String),
    Timeout,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("STENT_STORE").unwrap_or_else(|_| "sqlite://stent.db".into());
    let stent = Stent::from_arc(stent::connect(&url).await?);
    let gateway = Arc::new(Gateway::default());

    // Payment processing: safe to retry, never charged twice. The gateway gets a stable
    // operation id so even a takeover after a crash cannot double-charge on its side.
    // A declined card is a terminal answer: stored and replayed, not retried.
    let charge_customer = stent
        .durable("billing::charge_customer")
        .idempotent()
        .validate_payload()
        .key(|(order_id, _amount): &(String, u64)| format!("charge:{order_id}"))
        .wrap_with_context({
            let gateway = Arc::clone(&gateway);
            move |(order_id, amount): (String, u64), exec: Execution| {
                let gateway = Arc::clone(&gateway);
                async move {
                    if order_id.ends_with("-declined") {
                        return Err(ChargeError::Declined(format!("card refused for {amount}")));
                    }
                    gateway.charges.fetch_add(1, Ordering::SeqCst);
                    Ok(format!("ch_{}", &exec.operation_id()[..12]))
                }
            }
        })
        .store_errors_if(|e| matches!(e, ChargeError::Declined(_)));

    for attempt in 1..=3 {
        let t = charge_customer.call_traced(("ord-1".into(), 4999)).await?;
        println!(
            "charge ord-1, try {attempt}: {} ({})",
            t.value, t.outcome.status
        );
    }
    let declined = charge_customer
        .call(("ord-2-declined".into(), 10))
        .await
        .unwrap_err();
    println!("charge ord-2: {:?}", declined.function_error());
    let mismatch = charge_customer.call(("ord-1".into(), 1)).await.unwrap_err();
    assert_eq!(mismatch.kind(), ErrorKind::PayloadMismatch);
    println!("charge ord-1 with another amount: {mismatch}");
    println!(
        "gateway charges in this run: {}",
        gateway.charges.load(Ordering::SeqCst)
    );

    // Email sending: no duplicate confirmations.
    let send_order_confirmation = stent
        .durable("emails::send_order_confirmation")
        .idempotent()
        .wrap(|order_id: String| async move {
            println!("  (sending the confirmation for {order_id})");
            Ok::<_, ChargeError>(true)
        });
    send_order_confirmation.call("ord-1".into()).await?;
    send_order_confirmation.call("ord-1".into()).await?;

    // External resources: created once, the stored description replayed after.
    let create_bucket = stent.durable("infra::create_bucket").idempotent().wrap(
        |(name, region): (String, String)| async move {
            Ok::<_, ChargeError>(
                serde_json::json!({ "name": name, "region": region, "arn": "arn:bucket:1" }),
            )
        },
    );
    let bucket = create_bucket
        .call(("reports".into(), "eu-west-1".into()))
        .await?;
    println!("bucket: {bucket}");

    // A client-supplied idempotency key, shared by two entry points on purpose.
    let submit = |name: &'static str| {
        stent
            .durable(name)
            .idempotent()
            .key(|req: &serde_json::Value| {
                req["idempotency_key"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .shared_key()
            .wrap(move |req: serde_json::Value| async move {
                Ok::<_, ChargeError>(format!("accepted by {name}: {}", req["item"]))
            })
    };
    let request = serde_json::json!({ "idempotency_key": "client-req-42", "item": "book" });
    println!("{}", submit("api::http").call(request.clone()).await?);
    println!("{}", submit("api::queue").call(request).await?);

    // One execution per user per day.
    let daily_digest = stent
        .durable("digests::daily")
        .idempotent()
        .key(|user_id: &String| format!("{user_id}:{}", &stent::Timestamp::now().to_string()[..10]))
        .wrap(
            |user_id: String| async move { Ok::<_, ChargeError>(format!("digest for {user_id}")) },
        );
    let t = daily_digest.call_traced("u-7".into()).await?;
    println!("daily digest: {} ({})", t.outcome.key, t.outcome.status);

    // Design for idempotency: after a crash, a takeover runs the function again, so the
    // function must leave the same state when run twice. Setting a counter does; adding to
    // one (`increment_counter`) would count a re-run twice.
    let counters = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let set_counter = stent.durable("counters::set").idempotent().wrap({
        let counters = Arc::clone(&counters);
        move |(counter_id, value): (String, i64)| {
            let counters = Arc::clone(&counters);
            async move {
                counters.lock().expect("counters").insert(counter_id, value);
                Ok::<_, ChargeError>(value)
            }
        }
    });
    set_counter.call(("visits".into(), 42)).await?;
    set_counter.call(("visits".into(), 42)).await?;
    println!(
        "counter visits: {:?}",
        counters.lock().expect("counters").get("visits")
    );
    Ok(())
}

impl std::fmt::Display for ChargeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for ChargeError {}
