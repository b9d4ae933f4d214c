//! The table as DynamoDB sees it: TTL enabled on `ttl` in epoch seconds, expired items
//! hidden while still stored, requests the SDK sends twice (after losing an answer) taking
//! effect once, and the admin scans paging through more than one `Scan` page and more than
//! one 25-item batch.

mod support;

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};
use stent_core::{
    Claim, ClaimOutcome, ErrorKind, LeaseToken, ListQuery, ManualClock, Namespace, RecordMeta,
    ResultStore, Timestamp,
};
use stent_dynamodb::DynamoDbStore;

/// A store under a fresh prefix on the shared server, or `None` when the test should be skipped.
async fn store(clock: Option<ManualClock>) -> Option<DynamoDbStore> {
    let url = match support::moto_url() {
        Ok(url) => url,
        Err(reason) if !support::required() => {
            eprintln!("SKIPPED: {reason}");
            return None;
        }
        Err(reason) => panic!("{reason} and STENT_REQUIRE_BACKENDS=1"),
    };
    let mut builder = support::builder(&url, support::TABLE, &stent_conformance::unique_id());
    if let Some(clock) = clock {
        builder = builder.clock(clock);
    }
    let store = builder.build().await.unwrap();
    store.migrate().await.unwrap();
    Some(store)
}

async fn raw_item(
    store: &DynamoDbStore,
    ns: Namespace,
    key: &str,
) -> Option<std::collections::HashMap<String, AttributeValue>> {
    store
        .client()
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(store.partition_key(ns, key)))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

#[tokio::test]
async fn expired_items_are_hidden_while_still_stored_and_carry_ttl_seconds() {
    let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_123));
    let Some(store) = store(Some(clock.clone())).await else {
        return;
    };
    let ttl = store
        .client()
        .describe_time_to_live()
        .table_name(store.table())
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some("ttl"));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));

    store
        .put(
            Namespace::Cache,
            "k",
            b"v",
            Some(Duration::from_millis(1_500)),
            RecordMeta::default(),
        )
        .await
        .unwrap();
    let item = raw_item(&store, Namespace::Cache, "k")
        .await
        .expect("stored");
    assert_eq!(
        item["expires_ms"],
        AttributeValue::N("1800000001623".into())
    );
    assert_eq!(
        item["ttl"],
        AttributeValue::N("1800000002".into()),
        "epoch seconds, rounded up"
    );
    assert_eq!(
        item["pk"],
        AttributeValue::S(store.partition_key(Namespace::Cache, "k"))
    );
    assert!(store.get(Namespace::Cache, "k").await.unwrap().is_some());

    clock.advance(Duration::from_millis(1_500));
    assert_eq!(
        store.get(Namespace::Cache, "k").await.unwrap(),
        None,
        "expired at its expiry"
    );
    assert!(
        raw_item(&store, Namespace::Cache, "k").await.is_some(),
        "still stored until purged"
    );
    assert_eq!(store.purge_expired(Namespace::Cache, 10).await.unwrap(), 1);
    assert!(raw_item(&store, Namespace::Cache, "k").await.is_none());
}

#[tokio::test]
async fn admin_operations_page_through_several_scan_pages_and_batches() {
    let Some(store) = store(None).await else {
        return;
    };
    let _turn = support::turn().await;
    // Four values of 300 KB make the scan span more than one 1 MB page; 30 keys make
    // `clear` send more than one 25-item batch.
    let keys: Vec<String> = (0..30).map(|i| format!("key-{i:02}")).collect();
    for (i, key) in keys.iter().enumerate() {
        let value = if i % 8 == 0 {
            vec![b'x'; 300_000]
        } else {
            key.as_bytes().to_vec()
        };
        store
            .put(Namespace::Cache, key, &value, None, RecordMeta::default())
            .await
            .unwrap();
    }
    store
        .put(
            Namespace::Idempotency,
            "other",
            b"v",
            None,
            RecordMeta::default(),
        )
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list(
                Namespace::Cache,
                &ListQuery::new().prefix("key-").limit(7).cursor(cursor),
            )
            .await
            .unwrap();
        assert!(page.records.len() <= 7);
        seen.extend(page.records.into_iter().map(|r| r.key));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, keys);
    assert_eq!(store.clear(Namespace::Cache).await.unwrap(), 30);
    assert!(
        store
            .list(Namespace::Cache, &ListQuery::new())
            .await
            .unwrap()
            .records
            .is_empty()
    );
    assert!(
        store
            .get(Namespace::Idempotency, "other")
            .await
            .unwrap()
            .is_some()
    );
}

/// The SDK resends a request whose answer it lost (a timeout, a dropped connection). With
/// the clock standing still, sending the same claim or completion again is exactly that
/// resend: it is recognised as already applied. Anything else stays refused.
#[tokio::test]
async fn a_resent_claim_or_completion_takes_effect_once() {
    let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
    let Some(store) = store(Some(clock.clone())).await else {
        return;
    };
    let ns = Namespace::Idempotency;
    let token = LeaseToken::generate();
    let claim = Claim {
        token: &token,
        lease: Duration::from_secs(30),
        meta: RecordMeta::default(),
    };
    for _ in 0..2 {
        match store.claim(ns, "k", &claim).await.unwrap() {
            ClaimOutcome::Acquired {
                attempt,
                lease_expires_at,
            } => {
                assert_eq!(attempt, 1);
                assert_eq!(lease_expires_at, Timestamp::from_millis(1_800_000_030_000));
            }
            other => panic!("the resent claim is the same claim: {other:?}"),
        }
    }
    let other = LeaseToken::generate();
    let rival = Claim {
        token: &other,
        ..claim.clone()
    };
    assert!(matches!(
        store.claim(ns, "k", &rival).await.unwrap(),
        ClaimOutcome::InFlight(_)
    ));

    store
        .complete(ns, "k", &token, b"result", None)
        .await
        .unwrap();
    store
        .complete(ns, "k", &token, b"result", None)
        .await
        .unwrap();
    let e = store
        .complete(ns, "k", &token, b"another", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost);
    clock.advance(Duration::from_millis(1));
    let e = store
        .complete(ns, "k", &token, b"result", None)
        .await
        .unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::LeaseLost,
        "a later completion is a second completion"
    );
    let r = store.get(ns, "k").await.unwrap().unwrap();
    assert_eq!((r.value.as_deref(), r.attempt), (Some(&b"result"[..]), 1));
}

/// Every namespace has partition keys of its own (`{prefix}#progress#…` for the progress
/// log), and clearing one leaves the others.
#[tokio::test]
async fn every_namespace_has_its_own_keys_and_clearing_one_leaves_the_others() {
    let Some(store) = store(None).await else {
        return;
    };
    for ns in Namespace::ALL {
        store
            .put(ns, "k", ns.as_str().as_bytes(), None, RecordMeta::default())
            .await
            .unwrap();
    }
    let pk = store.partition_key(Namespace::Progress, "k");
    assert_eq!(pk, format!("{}#progress#k", store.key_prefix()));
    let item = raw_item(&store, Namespace::Progress, "k")
        .await
        .expect("stored");
    assert_eq!(
        item["value"],
        AttributeValue::B(b"progress".to_vec().into())
    );
    assert_eq!(store.clear(Namespace::Cache).await.unwrap(), 1);
    for ns in [Namespace::Idempotency, Namespace::Progress] {
        let r = store.get(ns, "k").await.unwrap().expect("kept");
        assert_eq!(r.value.as_deref(), Some(ns.as_str().as_bytes()));
    }
    let e = DynamoDbStore::builder().key_prefix("progress").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("\"progress\""), "{e}");
}
