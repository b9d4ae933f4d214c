//! What reaches the server: the requests the SDK client transmits for a replay, a first
//! call, a cache hit and a cache miss, counted by an interceptor on the client the store is
//! built from, and checked against the README's table.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_dynamodb::error::BoxError;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use stent_core::Stent;
use stent_dynamodb::DynamoDbStore;

/// The operation of every request the client transmits (`GetItem`, `PutItem`, …), retries
/// included, in order.
#[derive(Debug, Clone, Default)]
struct Sent(Arc<Mutex<Vec<String>>>);

impl Sent {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Intercept for Sent {
    fn name(&self) -> &'static str {
        "Sent"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // The JSON protocol names the operation in this header: `DynamoDB_20120810.GetItem`.
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or("?");
        let op = target.rsplit('.').next().unwrap_or(target).to_owned();
        self.0.lock().unwrap().push(op);
        Ok(())
    }
}

/// The operations the README's table says `op` sends on its path without contention: the
/// request names in its "what is sent" column, up to the first `;` (what follows is the
/// takeover of a lapsed lease).
fn readme_requests(op: &str) -> Vec<String> {
    let readme = include_str!("../README.md");
    let row = format!("| `{op}` |");
    let line = readme
        .lines()
        .find(|l| l.starts_with(&row))
        .unwrap_or_else(|| panic!("no row for `{op}` in the README's table"));
    let sent = line.split('|').nth(2).unwrap();
    let sent = sent.split(';').next().unwrap();
    sent.split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| w.ends_with("Item"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn each_call_sends_what_the_readme_says() {
    let endpoint = match support::moto_url() {
        Ok(url) => url,
        Err(why) if support::required() => panic!("{why}"),
        Err(why) => return eprintln!("SKIPPED: {why}"),
    };
    let sent = Sent::default();
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .interceptor(sent.clone())
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .build_https(),
        )
        .build();
    let prefix = stent_conformance::unique_id();
    let store = DynamoDbStore::builder()
        .client(aws_sdk_dynamodb::Client::from_conf(config))
        .table(support::TABLE)
        .and_then(|b| b.key_prefix(&prefix))
        .unwrap()
        .create_tables(true)
        .build()
        .await
        .unwrap();
    let stent = Stent::new(store);
    let receipt = |id: String| async move { Ok::<_, Infallible>(format!("receipt-{id}")) };
    let idempotent = stent.durable("requests::charge").idempotent().wrap(receipt);
    let cached = stent.durable("requests::quote").cached().wrap(receipt);
    sent.take(); // what building the store sent

    let (claim, complete, get, put) = (
        readme_requests("claim"),
        readme_requests("complete"),
        readme_requests("get"),
        readme_requests("put"),
    );
    assert_eq!(claim, ["PutItem"], "the README's claim row");
    assert_eq!(complete, ["UpdateItem"], "the README's complete row");

    idempotent.call("a".to_owned()).await.unwrap();
    assert_eq!(
        sent.take(),
        [claim.clone(), complete].concat(),
        "first call"
    );
    idempotent.call("a".to_owned()).await.unwrap();
    assert_eq!(sent.take(), claim, "replay");

    cached.call("b".to_owned()).await.unwrap();
    assert_eq!(sent.take(), [get.clone(), put].concat(), "cache miss");
    cached.call("b".to_owned()).await.unwrap();
    assert_eq!(sent.take(), get, "cache hit");
}
