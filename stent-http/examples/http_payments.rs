//! A small payments API whose `POST /payments` is idempotent: each client's
//! `Idempotency-Key` runs the charge once, and every retry gets the first response back.
//!
//! ```text
//! cargo run -p stent-http --example http_payments      # listens on 127.0.0.1:3000
//! ```
//!
//! Then, from another shell, the session in the crate's README. The responses are kept in
//! `http_payments.db` (SQLite) next to where it runs, so they survive a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use stent_http::IdempotencyLayer;
use stent_sqlite::SqliteStore;

#[derive(Deserialize)]
struct NewPayment {
    amount: u64,
    currency: String,
}

/// Charges the card (here: counts the charge, and takes two seconds, as card networks
/// sometimes do) and answers 201 with the payment.
async fn create_payment(
    State(charges): State<Arc<AtomicU64>>,
    Json(payment): Json<NewPayment>,
) -> impl IntoResponse {
    let id = charges.fetch_add(1, Ordering::SeqCst) + 1;
    println!(
        "charging {} {} (payment {id})",
        payment.amount, payment.currency
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let body = serde_json::json!({
        "id": format!("pay_{id}"),
        "amount": payment.amount,
        "currency": payment.currency,
        "status": "succeeded",
    });
    (
        StatusCode::CREATED,
        [(header::LOCATION, format!("/payments/pay_{id}"))],
        Json(body),
    )
}

/// The client a request comes from: here the bearer token, in a real API the
/// authenticated principal.
fn client(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = SqliteStore::open("http_payments.db").await?;
    let idempotency = IdempotencyLayer::new(store)
        .name("payments")
        .require_key(true)
        .scope(|req| client(&req.headers));
    let app = Router::new()
        .route("/payments", post(create_payment))
        .with_state(Arc::new(AtomicU64::new(0)))
        .layer(idempotency);
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("payments API on http://{addr}");
    axum::serve(listener, app).await?;
    Ok(())
}
