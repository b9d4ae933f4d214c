//! The example program (`examples/http_payments.rs`, the README's session) on a real port,
//! with its SQLite store.

use std::sync::Arc;

use stent_core::{ListQuery, Namespace, ResultStore};

use crate::support::{post, serve_router};

#[allow(dead_code)] // its `main`
#[path = "../../examples/http_payments.rs"]
mod http_payments;

/// A request without credentials is refused with 401 by the authentication in front of
/// the layer (it never panics), and the stored keys hold the account, never the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_scopes_by_account_never_by_token() {
    let name = "the_example_scopes_by_account_never_by_token";
    let factory = crate::support::backends::sqlite;
    stent_conformance::run(factory, name, |store: Arc<dyn ResultStore>| async move {
        let app = serve_router(http_payments::app(Arc::clone(&store))).await;
        let body = r#"{"amount":500,"currency":"eur"}"#;
        let anonymous = app.send(post("/payments", "pay-7f3a", body)).await;
        assert_eq!(anonymous.status, 401, "{anonymous:?}");
        let req = post("/payments", "pay-7f3a", body).header("authorization", "Bearer sk_alice");
        let first = app.send(req.clone()).await;
        assert_eq!(first.status, 201, "{first:?}");
        let retry = app.send(req).await;
        assert!(retry.replayed(), "{retry:?}");
        assert_eq!(retry.body, first.body);
        let page = store
            .list(Namespace::Idempotency, &ListQuery::new())
            .await
            .unwrap();
        let keys: Vec<&str> = page.records.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            ["8:payments|10:acct_alice|4:POST|9:/payments|pay-7f3a"]
        );
    })
    .await;
}
