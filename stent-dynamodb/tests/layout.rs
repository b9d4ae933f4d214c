//! The items claims write, and items of the previous layout: a claim of an absent or expired
//! key is a conditional `PutItem` of the whole in-progress item, a lapsed lease is taken over
//! by a second `PutItem` conditioned on the very lease it replaces, and records stored by
//! earlier versions (claimed by an `UpdateItem` that kept `lease_attempt`, completed with a
//! `completed_token` and without `lease_token`) are read, claimed and completed as before.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use stent_core::{
    Claim, ClaimOutcome, ErrorKind, LeaseToken, ManualClock, Namespace, RecordMeta, RecordState,
    ResultStore, Timestamp,
};
use stent_dynamodb::DynamoDbStore;

const NS: Namespace = Namespace::Idempotency;
const T0: i64 = 1_800_000_000_000;
const LEASE: Duration = Duration::from_secs(30);

type Item = HashMap<String, AttributeValue>;

/// A store under a fresh prefix on the shared server with a manual clock at `T0`, or `None`
/// when the test should be skipped.
async fn store() -> Option<(DynamoDbStore, ManualClock)> {
    let url = match support::moto_url() {
        Ok(url) => url,
        Err(reason) if !support::required() => {
            eprintln!("SKIPPED: {reason}");
            return None;
        }
        Err(reason) => panic!("{reason} and STENT_REQUIRE_BACKENDS=1"),
    };
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let store = support::builder(&url, support::TABLE, &stent_conformance::unique_id())
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Some((store, clock))
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn claim_of(token: &LeaseToken) -> Claim<'_> {
    Claim {
        token,
        lease: LEASE,
        meta: RecordMeta {
            function: Some("f"),
            ..RecordMeta::default()
        },
    }
}

async fn raw_item(store: &DynamoDbStore, key: &str) -> Item {
    store
        .client()
        .get_item()
        .table_name(store.table())
        .key("pk", s(&store.partition_key(NS, key)))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("stored")
}

/// Writes `attrs` as the item of `key`, as an earlier version left it.
async fn write_raw(store: &DynamoDbStore, key: &str, attrs: &[(&str, AttributeValue)]) {
    let mut item: Item = attrs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    item.insert("pk".into(), s(&store.partition_key(NS, key)));
    store
        .client()
        .put_item()
        .table_name(store.table())
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
}

fn acquired(outcome: ClaimOutcome) -> u32 {
    match outcome {
        ClaimOutcome::Acquired { attempt, .. } => attempt,
        other => panic!("expected Acquired, got {other:?}"),
    }
}

#[tokio::test]
async fn a_claim_writes_the_whole_in_progress_item() {
    let Some((store, _clock)) = store().await else {
        return;
    };
    let token = LeaseToken::generate();
    assert_eq!(
        acquired(store.claim(NS, "k", &claim_of(&token)).await.unwrap()),
        1
    );
    let item = raw_item(&store, "k").await;
    assert_eq!(item["state"], s("in_progress"));
    assert_eq!(item["lease_token"], s(token.as_str()));
    assert_eq!(item["lease_expires_ms"], n(T0 + 30_000));
    assert_eq!(item["created_ms"], n(T0));
    assert_eq!(item["function"], s("f"));
    // `lease_attempt` equals `attempt`: what a store of an earlier version sharing the table
    // adds 1 to when it takes the lease over.
    assert_eq!((&item["attempt"], &item["lease_attempt"]), (&n(1), &n(1)));

    store
        .complete(NS, "k", &token, b"done", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    let item = raw_item(&store, "k").await;
    assert_eq!(item["state"], s("completed"));
    assert_eq!(item["expires_ms"], n(T0 + 60_000));
    assert_eq!(item["ttl"], n(T0 / 1000 + 60));
    assert!(
        !item.contains_key("lease_attempt"),
        "an earlier version's claim of the expired record must find no lease_attempt"
    );
    let r = store.get(NS, "k").await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::Completed);
    assert_eq!(
        (r.lease_token, r.lease_expires_at),
        (None, None),
        "a completed record has no lease, whatever attributes the item keeps"
    );
}

#[tokio::test]
async fn a_lapsed_lease_is_taken_over_once_and_its_owner_is_fenced() {
    let Some((store, clock)) = store().await else {
        return;
    };
    let first = LeaseToken::generate();
    assert_eq!(
        acquired(store.claim(NS, "k", &claim_of(&first)).await.unwrap()),
        1
    );
    clock.advance(LEASE);

    // Two callers find the lease lapsed at once: both takeovers are conditioned on the lease
    // they replace, so one wins and the other sees the winner's live lease.
    let (a, b) = (LeaseToken::generate(), LeaseToken::generate());
    let (claim_a, claim_b) = (claim_of(&a), claim_of(&b));
    let (ra, rb) = tokio::join!(
        store.claim(NS, "k", &claim_a),
        store.claim(NS, "k", &claim_b)
    );
    let (winner, loser) = match (ra.unwrap(), rb.unwrap()) {
        (ClaimOutcome::Acquired { attempt, .. }, ClaimOutcome::InFlight(r)) => {
            assert_eq!(attempt, 2);
            assert_eq!(r.lease_token.as_ref(), Some(&a));
            (a.clone(), b.clone())
        }
        (ClaimOutcome::InFlight(r), ClaimOutcome::Acquired { attempt, .. }) => {
            assert_eq!(attempt, 2);
            assert_eq!(r.lease_token.as_ref(), Some(&b));
            (b.clone(), a.clone())
        }
        other => panic!("exactly one takeover must win: {other:?}"),
    };
    let item = raw_item(&store, "k").await;
    assert_eq!(item["lease_token"], s(winner.as_str()));
    assert_eq!((&item["attempt"], &item["lease_attempt"]), (&n(2), &n(2)));
    assert_eq!(item["created_ms"], n(T0 + 30_000));

    // The first owner and the loser are fenced.
    for stale in [&first, &loser] {
        let e = store
            .complete(NS, "k", stale, b"x", None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LeaseLost);
        let e = store.renew(NS, "k", stale, LEASE).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LeaseLost);
        assert!(!store.release(NS, "k", stale).await.unwrap());
    }
    store
        .complete(NS, "k", &winner, b"second", None)
        .await
        .unwrap();
    let replay = LeaseToken::generate();
    match store.claim(NS, "k", &claim_of(&replay)).await.unwrap() {
        ClaimOutcome::Completed(r) => {
            assert_eq!((r.value.as_deref(), r.attempt), (Some(&b"second"[..]), 2));
            assert_eq!(r.lease_token, None);
        }
        other => panic!("expected Completed, got {other:?}"),
    }
    // A completed record keeps the token that completed it: it is still fenced.
    assert!(!store.release(NS, "k", &winner).await.unwrap());
    let e = store.renew(NS, "k", &winner, LEASE).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost);
}

#[tokio::test]
async fn a_renewed_lease_is_not_taken_over() {
    let Some((store, clock)) = store().await else {
        return;
    };
    let owner = LeaseToken::generate();
    store.claim(NS, "k", &claim_of(&owner)).await.unwrap();
    clock.advance(LEASE - Duration::from_millis(1));
    store.renew(NS, "k", &owner, LEASE).await.unwrap();
    clock.advance(Duration::from_millis(1));
    let rival = LeaseToken::generate();
    match store.claim(NS, "k", &claim_of(&rival)).await.unwrap() {
        ClaimOutcome::InFlight(r) => assert_eq!(r.lease_token, Some(owner)),
        other => panic!("a renewed lease is live: {other:?}"),
    }
}

#[tokio::test]
async fn records_of_the_previous_layout_are_claimed_and_completed() {
    let Some((store, clock)) = store().await else {
        return;
    };
    let old = LeaseToken::generate();
    let value = AttributeValue::B(Blob::new(&b"old result"[..]));

    // In progress, lease lapsed, on its second attempt: taken over as the third.
    write_raw(
        &store,
        "lapsed",
        &[
            ("state", s("in_progress")),
            ("lease_token", s(old.as_str())),
            ("lease_expires_ms", n(T0 - 1)),
            ("lease_attempt", n(2)),
            ("attempt", n(2)),
            ("created_ms", n(T0 - 60_000)),
            ("function", s("f")),
        ],
    )
    .await;
    let taker = LeaseToken::generate();
    assert_eq!(
        acquired(store.claim(NS, "lapsed", &claim_of(&taker)).await.unwrap()),
        3
    );
    let e = store
        .complete(NS, "lapsed", &old, b"late", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost);
    store
        .complete(NS, "lapsed", &taker, b"third", None)
        .await
        .unwrap();
    let r = store.get(NS, "lapsed").await.unwrap().unwrap();
    assert_eq!((r.value.as_deref(), r.attempt), (Some(&b"third"[..]), 3));

    // In progress, lease live: in flight, and its owner still renews and completes it.
    write_raw(
        &store,
        "live",
        &[
            ("state", s("in_progress")),
            ("lease_token", s(old.as_str())),
            ("lease_expires_ms", n(T0 + 10_000)),
            ("lease_attempt", n(1)),
            ("attempt", n(1)),
            ("created_ms", n(T0)),
        ],
    )
    .await;
    let rival = LeaseToken::generate();
    assert!(matches!(
        store.claim(NS, "live", &claim_of(&rival)).await.unwrap(),
        ClaimOutcome::InFlight(_)
    ));
    store.renew(NS, "live", &old, LEASE).await.unwrap();
    store
        .complete(NS, "live", &old, b"finished", None)
        .await
        .unwrap();
    let r = store.get(NS, "live").await.unwrap().unwrap();
    assert_eq!((r.value.as_deref(), r.attempt), (Some(&b"finished"[..]), 1));

    // Completed the old way (`completed_token`, no lease attributes): replayed, and a resend
    // of the completion that wrote it is still recognised.
    write_raw(
        &store,
        "completed",
        &[
            ("state", s("completed")),
            ("value", value.clone()),
            ("attempt", n(1)),
            ("created_ms", n(T0 - 5)),
            ("completed_ms", n(T0)),
            ("completed_token", s(old.as_str())),
        ],
    )
    .await;
    match store
        .claim(NS, "completed", &claim_of(&rival))
        .await
        .unwrap()
    {
        ClaimOutcome::Completed(r) => {
            assert_eq!(r.value.as_deref(), Some(&b"old result"[..]));
            assert_eq!(
                (r.lease_token, r.completed_at),
                (None, Some(Timestamp::from_millis(T0)))
            );
        }
        other => panic!("expected Completed, got {other:?}"),
    }
    store
        .complete(NS, "completed", &old, b"old result", None)
        .await
        .unwrap();
    let e = store
        .complete(NS, "completed", &old, b"other", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LeaseLost);

    // Completed and expired: claimed afresh, attempt 1, nothing of the old record left.
    write_raw(
        &store,
        "expired",
        &[
            ("state", s("completed")),
            ("value", value),
            ("attempt", n(4)),
            ("created_ms", n(T0 - 5_000)),
            ("completed_ms", n(T0 - 4_000)),
            ("completed_token", s(old.as_str())),
            ("expires_ms", n(T0 - 1)),
            ("ttl", n(T0 / 1000)),
            ("version", s("v0")),
        ],
    )
    .await;
    let fresh = LeaseToken::generate();
    assert_eq!(
        acquired(store.claim(NS, "expired", &claim_of(&fresh)).await.unwrap()),
        1
    );
    let item = raw_item(&store, "expired").await;
    for gone in [
        "value",
        "completed_ms",
        "completed_token",
        "expires_ms",
        "ttl",
        "version",
    ] {
        assert!(!item.contains_key(gone), "{gone} left over: {item:?}");
    }
    clock.advance(Duration::from_millis(1));
    store
        .complete(NS, "expired", &fresh, b"new", None)
        .await
        .unwrap();
    let r = store.get(NS, "expired").await.unwrap().unwrap();
    assert_eq!((r.value.as_deref(), r.attempt), (Some(&b"new"[..]), 1));
}
