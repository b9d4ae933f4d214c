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

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use stent_core::ResultStore;
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

/// The account a request is from, which `authenticate` puts in the request.
#[derive(Clone, Copy)]
struct Account(&'static str);

/// Finds the account of the request's bearer token (here in a fixed table; in a real API,
/// the API keys' table or a JWT's subject), or answers 401.
async fn authenticate(mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let account = match token {
        Some("sk_alice") => "acct_alice",
        Some("sk_bob") => "acct_bob",
        _ => return StatusCode::UNAUTHORIZED.into_response(),
    };
    req.extensions_mut().insert(Account(account));
    next.run(req).await
}

/// The API (the tests serve it too): authentication first, then the idempotency layer, whose scope is the account
/// (never the token itself, which every stored key would then hold in clear).
pub(crate) fn app(store: impl ResultStore) -> Router {
    let idempotency = IdempotencyLayer::new(store)
        .name("payments")
        .require_key(true)
        .scope(|req| {
            let account = req.extensions.get::<Account>();
            account.map_or("", |a| a.0).to_owned()
        });
    Router::new()
        .route("/payments", post(create_payment))
        .with_state(Arc::new(AtomicU64::new(0)))
        .layer(idempotency)
        .layer(middleware::from_fn(authenticate))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = SqliteStore::open("http_payments.db").await?;
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("payments API on http://{addr}");
    axum::serve(listener, app(store)).await?;
    Ok(())
}
