//! A read judges expiry by the clock of the node that holds the key: without a grace Redis
//! deletes a record the moment it expires, so a record that is there is live; with one, or
//! for a record written without `purge_ms`, the server's `TIME`. A claim's native `SET` writes no time: the key's expiry gives it. Every other
//! write is a script, which writes the server's times into the record.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use stent_core::{Namespace, RecordMeta, ResultStore};
use stent_redis::RedisStore;

fn url() -> Option<String> {
    match std::env::var("STENT_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) if stent_conformance::backends_required() => {
            panic!("STENT_REDIS_URL is not set and STENT_REQUIRE_BACKENDS=1")
        }
        Err(_) => {
            eprintln!("SKIPPED: STENT_REDIS_URL is not set");
            None
        }
    }
}

fn prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("expclock{}x{nanos}", std::process::id())
}

/// A store under `prefix` (with `grace`, if any), and a plain connection to the same server.
async fn store_and_conn(
    url: &str,
    prefix: &str,
    grace: Option<Duration>,
) -> (RedisStore, redis::aio::MultiplexedConnection) {
    let mut builder = RedisStore::builder().url(url).prefix(prefix);
    if let Some(grace) = grace {
        builder = builder.expiry_grace(grace);
    }
    let conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    (builder.build().await.unwrap(), conn)
}

/// The header fields of the record at `rk` (`stent1`, state, token, attempt, created_ms,
/// lease_expires_ms, completed_ms, expires_ms, purge_ms, lease_ms, horizon_ms, meta_len).
async fn header(conn: &mut redis::aio::MultiplexedConnection, rk: &str) -> Vec<String> {
    let raw: Vec<u8> = conn.get(rk).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    let fields: Vec<String> = text.splitn(13, '|').take(12).map(str::to_owned).collect();
    assert_eq!(fields.len(), 12, "{text}");
    assert_eq!(fields[0], "stent1");
    fields
}

fn ms(field: &str) -> i64 {
    field
        .parse()
        .unwrap_or_else(|_| panic!("{field:?} is not a number"))
}

/// How far past its lease a natively claimed record's key expires.
const HORIZON_MS: i64 = 10_000_000_000_000;

async fn pexpiretime(conn: &mut redis::aio::MultiplexedConnection, rk: &str) -> i64 {
    redis::cmd("PEXPIRETIME")
        .arg(rk)
        .query_async(conn)
        .await
        .unwrap()
}

async fn server_ms(conn: &mut redis::aio::MultiplexedConnection) -> i64 {
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(conn).await.unwrap();
    secs * 1000 + micros / 1000
}

#[tokio::test]
async fn records_with_an_expiry_carry_purge_ms_and_expire_on_the_server_clock() {
    let Some(url) = url() else { return };
    let prefix = prefix();
    let (store, mut conn) = store_and_conn(&url, &prefix, Some(Duration::from_secs(30))).await;
    store
        .put(
            Namespace::Cache,
            "k",
            b"\x01\"v\"",
            Some(Duration::from_millis(300)),
            RecordMeta::default(),
        )
        .await
        .unwrap();
    let rk = format!("{prefix}:cache:k");
    let h = header(&mut conn, &rk).await;
    let (expires, purge) = (ms(&h[7]), ms(&h[8]));
    assert_eq!(purge - expires, 30_000, "purge_ms is expires_ms + grace");
    let pexpiretime: i64 = redis::cmd("PEXPIRETIME")
        .arg(&rk)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pexpiretime, purge, "PEXPIREAT is purge_ms");
    assert!(store.get(Namespace::Cache, "k").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        store.get(Namespace::Cache, "k").await.unwrap().is_none(),
        "expired on the server's clock, though Redis keeps the record for the grace"
    );
    assert!(conn.exists::<_, bool>(&rk).await.unwrap());
    store.clear(Namespace::Cache).await.unwrap();
}

#[tokio::test]
async fn a_record_without_purge_ms_is_judged_by_the_servers_time() {
    let Some(url) = url() else { return };
    let prefix = prefix();
    let (store, mut conn) = store_and_conn(&url, &prefix, None).await;
    let now = server_ms(&mut conn).await;
    for (key, expires) in [("past", now - 1_000), ("future", now + 60_000)] {
        let rk = format!("{prefix}:cache:{key}");
        let created = now - 2_000;
        let record = format!("stent1|completed||1|{created}||{created}|{expires}||||0|\x01\"v\"");
        let _: () = conn.set(&rk, record).await.unwrap();
        let _: () = conn.pexpire(&rk, 120_000).await.unwrap();
    }
    assert!(store.get(Namespace::Cache, "past").await.unwrap().is_none());
    let record = store
        .get(Namespace::Cache, "future")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.value.as_deref(), Some(&b"\x01\"v\""[..]));
    store.clear(Namespace::Cache).await.unwrap();
}

#[tokio::test]
async fn without_a_grace_redis_deletes_a_record_the_moment_it_expires() {
    let Some(url) = url() else { return };
    let prefix = prefix();
    let (store, mut conn) = store_and_conn(&url, &prefix, None).await;
    for (ns, key) in [(Namespace::Cache, "put"), (Namespace::Idempotency, "done")] {
        let rk = format!("{prefix}:{}:{key}", ns.as_str());
        if ns == Namespace::Cache {
            store
                .put(
                    ns,
                    key,
                    b"\x01\"v\"",
                    Some(Duration::from_millis(300)),
                    RecordMeta::default(),
                )
                .await
                .unwrap();
        } else {
            let token = stent_core::LeaseToken::generate();
            let claim = stent_core::Claim {
                token: &token,
                lease: Duration::from_secs(30),
                meta: RecordMeta::default(),
            };
            store.claim(ns, key, &claim).await.unwrap();
            store
                .complete(
                    ns,
                    key,
                    &token,
                    b"\x01\"v\"",
                    Some(Duration::from_millis(300)),
                )
                .await
                .unwrap();
        }
        let record = store
            .get(ns, key)
            .await
            .unwrap()
            .expect("live before expiry");
        assert_eq!(record.value.as_deref(), Some(&b"\x01\"v\""[..]));
        let h = header(&mut conn, &rk).await;
        let (expires, purge) = (ms(&h[7]), ms(&h[8]));
        assert_eq!(
            purge,
            expires - 1,
            "{key}: Redis keeps a key through its PEXPIREAT's millisecond"
        );
        let pexpiretime: i64 = redis::cmd("PEXPIRETIME")
            .arg(&rk)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(pexpiretime, purge, "{key}: PEXPIREAT is purge_ms");
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    for (ns, key) in [(Namespace::Cache, "put"), (Namespace::Idempotency, "done")] {
        assert!(store.get(ns, key).await.unwrap().is_none(), "{key} expired");
        let rk = format!("{prefix}:{}:{key}", ns.as_str());
        assert!(
            !conn.exists::<_, bool>(&rk).await.unwrap(),
            "{key}: Redis deleted it when it expired"
        );
    }
}

#[tokio::test]
async fn a_claim_writes_the_servers_times() {
    let Some(url) = url() else { return };
    let prefix = prefix();
    let (store, mut conn) = store_and_conn(&url, &prefix, None).await;
    let ns = Namespace::Idempotency;
    let rk = format!("{prefix}:idempotency:k");
    let token = stent_core::LeaseToken::generate();
    let lease = Duration::from_secs(30);
    let claim = stent_core::Claim {
        token: &token,
        lease,
        meta: RecordMeta::default(),
    };
    let before = server_ms(&mut conn).await;
    assert!(matches!(
        store.claim(ns, "k", &claim).await.unwrap(),
        stent_core::ClaimOutcome::Acquired { attempt: 1, .. }
    ));
    let after = server_ms(&mut conn).await;
    // Claimed natively: no times in the record, which the key's expiry gives instead.
    let h = header(&mut conn, &rk).await;
    assert_eq!((h[4].as_str(), h[5].as_str()), ("", ""), "no times written");
    assert_eq!((ms(&h[9]), ms(&h[10])), (30_000, HORIZON_MS));
    let read = store.get(ns, "k").await.unwrap().unwrap();
    let created = read.created_at.as_millis();
    assert!(
        (before..=after).contains(&created),
        "created by the server's clock: {before} <= {created} <= {after}"
    );
    assert_eq!(read.lease_expires_at.unwrap().as_millis(), created + 30_000);
    assert_eq!(
        pexpiretime(&mut conn, &rk).await,
        created + 30_000 + HORIZON_MS,
        "a record in progress expires only past the horizon (about 317 years)"
    );
    let other = stent_core::LeaseToken::generate();
    let second = stent_core::Claim {
        token: &other,
        lease,
        meta: RecordMeta::default(),
    };
    match store.claim(ns, "k", &second).await.unwrap() {
        stent_core::ClaimOutcome::InFlight(r) => {
            assert_eq!(r.created_at.as_millis(), created);
            assert_eq!(r.lease_expires_at.unwrap().as_millis(), created + 30_000);
            assert_eq!(r.lease_token, Some(token.clone()));
        }
        other => panic!("expected in flight, got {other:?}"),
    }

    let before = server_ms(&mut conn).await;
    let until = store
        .renew(ns, "k", &token, lease)
        .await
        .unwrap()
        .as_millis();
    let after = server_ms(&mut conn).await;
    assert!(
        (before + 30_000..=after + 30_000).contains(&until),
        "{until}"
    );
    let h = header(&mut conn, &rk).await;
    assert_eq!((ms(&h[9]), ms(&h[10])), (until - created, HORIZON_MS));
    let read = store.get(ns, "k").await.unwrap().unwrap();
    assert_eq!(read.created_at.as_millis(), created, "renewed, not created");
    assert_eq!(read.lease_expires_at.unwrap().as_millis(), until);
    assert_eq!(pexpiretime(&mut conn, &rk).await, until + HORIZON_MS);
    let before = server_ms(&mut conn).await;
    store.complete(ns, "k", &token, b"v", None).await.unwrap();
    let after = server_ms(&mut conn).await;
    let done = store.get(ns, "k").await.unwrap().unwrap();
    assert_eq!(done.created_at.as_millis(), created);
    let completed = done.completed_at.unwrap().as_millis();
    assert!(
        (before..=after).contains(&completed),
        "completed by the server's clock: {before} <= {completed} <= {after}"
    );

    // A put's times are the server's too, and its expiry follows from them.
    let before = server_ms(&mut conn).await;
    store
        .put(
            Namespace::Cache,
            "p",
            b"v",
            Some(Duration::from_secs(60)),
            RecordMeta::default(),
        )
        .await
        .unwrap();
    let after = server_ms(&mut conn).await;
    let put = store.get(Namespace::Cache, "p").await.unwrap().unwrap();
    let at = put.created_at.as_millis();
    assert!(
        (before..=after).contains(&at),
        "{before} <= {at} <= {after}"
    );
    assert_eq!(put.completed_at.unwrap().as_millis(), at);
    assert_eq!(put.expires_at.unwrap().as_millis(), at + 60_000);
    store.clear(Namespace::Cache).await.unwrap();
    let pttl: i64 = conn.pttl(&rk).await.unwrap();
    assert_eq!(
        pttl, -1,
        "a completed record without a retention never expires"
    );
    store.clear(ns).await.unwrap();
}

fn claim_of(token: &stent_core::LeaseToken) -> stent_core::Claim<'_> {
    stent_core::Claim {
        token,
        lease: Duration::from_secs(30),
        meta: RecordMeta {
            function: Some("f"),
            ..RecordMeta::default()
        },
    }
}

#[tokio::test]
async fn a_completion_writes_the_servers_times_and_the_keys_expiry() {
    let Some(url) = url() else { return };
    let prefix = prefix();
    let (store, mut conn) = store_and_conn(&url, &prefix, None).await;
    let ns = Namespace::Idempotency;
    for (key, ttl) in [("ttl", Some(Duration::from_secs(60))), ("forever", None)] {
        let rk = format!("{prefix}:idempotency:{key}");
        let token = stent_core::LeaseToken::generate();
        let before = server_ms(&mut conn).await;
        store.claim(ns, key, &claim_of(&token)).await.unwrap();
        store.complete(ns, key, &token, b"v", ttl).await.unwrap();
        let after = server_ms(&mut conn).await;
        let h = header(&mut conn, &rk).await;
        assert_eq!(h[1], "completed");
        assert_eq!(
            (h[9].as_str(), h[10].as_str()),
            ("", ""),
            "{key}: no lease_ms or horizon_ms"
        );
        let done = store.get(ns, key).await.unwrap().expect("completed");
        assert_eq!(done.value.as_deref(), Some(&b"v"[..]));
        assert_eq!(done.function.as_deref(), Some("f"));
        let completed = done.completed_at.unwrap().as_millis();
        assert!(
            (before..=after).contains(&completed),
            "{key}: completed by the server's clock: {before} <= {completed} <= {after}"
        );
        let created = done.created_at.as_millis();
        assert!(
            (before..=completed).contains(&created),
            "{key}: {before} <= {created} <= {completed}"
        );
        assert_eq!((ms(&h[4]), ms(&h[6])), (created, completed), "{key}");
        assert_eq!(
            done.expires_at.map(|t| t.as_millis()),
            ttl.map(|_| completed + 60_000)
        );
        let pexpiretime: i64 = redis::cmd("PEXPIRETIME")
            .arg(&rk)
            .query_async(&mut conn)
            .await
            .unwrap();
        match ttl {
            Some(_) => {
                assert_eq!(pexpiretime, completed + 60_000 - 1, "{key}");
                assert_eq!(
                    ms(&h[8]),
                    pexpiretime,
                    "{key}: purge_ms is the key's expiry"
                );
            }
            None => assert_eq!(pexpiretime, -1, "{key}: never expires"),
        }
        // A replay answers the same record.
        let other = stent_core::LeaseToken::generate();
        match store.claim(ns, key, &claim_of(&other)).await.unwrap() {
            stent_core::ClaimOutcome::Completed(r) => assert_eq!(r, done),
            other => panic!("{key}: expected completed, got {other:?}"),
        }
    }

    // Taken over in between: the stale token writes nothing.
    let (old, new) = (
        stent_core::LeaseToken::generate(),
        stent_core::LeaseToken::generate(),
    );
    let short = stent_core::Claim {
        token: &old,
        lease: Duration::from_millis(50),
        meta: RecordMeta::default(),
    };
    store.claim(ns, "lapsed", &short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(matches!(
        store.claim(ns, "lapsed", &claim_of(&new)).await.unwrap(),
        stent_core::ClaimOutcome::Acquired { attempt: 2, .. }
    ));
    let lost = store.complete(ns, "lapsed", &old, b"stale", None).await;
    assert_eq!(
        lost.unwrap_err().kind(),
        stent_core::ErrorKind::LeaseLost,
        "fenced"
    );
    store
        .complete(ns, "lapsed", &new, b"fresh", None)
        .await
        .unwrap();
    let r = store.get(ns, "lapsed").await.unwrap().unwrap();
    assert_eq!((r.value.as_deref(), r.attempt), (Some(&b"fresh"[..]), 2));
    store.clear(ns).await.unwrap();
}

#[tokio::test]
async fn a_completion_with_a_grace_keeps_the_record_for_the_grace() {
    let Some(url) = url() else { return };
    let prefix = prefix();
    let grace = Duration::from_secs(30);
    let (store, mut conn) = store_and_conn(&url, &prefix, Some(grace)).await;
    let ns = Namespace::Idempotency;
    let rk = format!("{prefix}:idempotency:k");
    let token = stent_core::LeaseToken::generate();
    store.claim(ns, "k", &claim_of(&token)).await.unwrap();
    store
        .complete(ns, "k", &token, b"v", Some(Duration::from_millis(300)))
        .await
        .unwrap();
    let pttl: i64 = conn.pttl(&rk).await.unwrap();
    assert!((29_000..=30_300).contains(&pttl), "ttl + grace: {pttl}");
    let done = store.get(ns, "k").await.unwrap().expect("live");
    let completed = done.completed_at.unwrap().as_millis();
    assert_eq!(done.expires_at.unwrap().as_millis(), completed + 300);
    let h = header(&mut conn, &rk).await;
    assert_eq!(
        ms(&h[8]),
        completed + 300 + 30_000,
        "purge_ms is expires_ms + grace"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(store.get(ns, "k").await.unwrap().is_none(), "expired");
    assert!(
        conn.exists::<_, bool>(&rk).await.unwrap(),
        "kept for the grace"
    );
    let other = stent_core::LeaseToken::generate();
    assert!(matches!(
        store.claim(ns, "k", &claim_of(&other)).await.unwrap(),
        stent_core::ClaimOutcome::Acquired { attempt: 1, .. }
    ));
    store.clear(ns).await.unwrap();
}

#[tokio::test]
async fn records_with_their_times_written_out_are_read_renewed_and_completed() {
    // As every write wrote them before claims were native: times in the record, no expiry.
    let Some(url) = url() else { return };
    let prefix = prefix();
    let (store, mut conn) = store_and_conn(&url, &prefix, None).await;
    let ns = Namespace::Idempotency;
    let now = server_ms(&mut conn).await;
    let token = stent_core::LeaseToken::generate();
    let created = now - 1_000;
    let records = [
        (
            "live",
            format!(
                "stent1|in_progress|{}|1|{created}|{}||||||4|f1:f",
                token.as_str(),
                now + 60_000
            ),
        ),
        (
            "lapsed",
            format!("stent1|in_progress|old|3|{created}|{created}||||||0|"),
        ),
        (
            "done",
            format!("stent1|completed||2|{created}||{now}|||||4|f1:fv"),
        ),
    ];
    for (key, record) in &records {
        let _: () = conn
            .set(format!("{prefix}:idempotency:{key}"), record)
            .await
            .unwrap();
    }
    let live = store.get(ns, "live").await.unwrap().unwrap();
    assert_eq!(live.created_at.as_millis(), created);
    assert_eq!(live.lease_expires_at.unwrap().as_millis(), now + 60_000);
    let other = stent_core::LeaseToken::generate();
    assert!(matches!(
        store.claim(ns, "live", &claim_of(&other)).await.unwrap(),
        stent_core::ClaimOutcome::InFlight(r) if r.lease_token.as_ref() == Some(&token)
    ));
    let until = store
        .renew(ns, "live", &token, Duration::from_secs(30))
        .await
        .unwrap();
    let renewed = store.get(ns, "live").await.unwrap().unwrap();
    assert_eq!(renewed.created_at.as_millis(), created);
    assert_eq!(renewed.lease_expires_at, Some(until));
    store
        .complete(ns, "live", &token, b"v", None)
        .await
        .unwrap();
    let done = store.get(ns, "live").await.unwrap().unwrap();
    assert_eq!(
        (done.value.as_deref(), done.created_at.as_millis()),
        (Some(&b"v"[..]), created)
    );
    assert_eq!(done.function.as_deref(), Some("f"));

    assert!(matches!(
        store.claim(ns, "lapsed", &claim_of(&other)).await.unwrap(),
        stent_core::ClaimOutcome::Acquired { attempt: 4, .. }
    ));
    assert!(
        !store
            .release(ns, "lapsed", &stent_core::LeaseToken::from_string("old"))
            .await
            .unwrap()
    );
    match store.claim(ns, "done", &claim_of(&other)).await.unwrap() {
        stent_core::ClaimOutcome::Completed(r) => {
            assert_eq!((r.value.as_deref(), r.attempt), (Some(&b"v"[..]), 2));
            assert_eq!(r.completed_at.unwrap().as_millis(), now);
        }
        other => panic!("expected the completed record, got {other:?}"),
    }
    store.clear(ns).await.unwrap();
}

/// A purge in batches examines every key it passes: a call that deletes fewer than its limit
/// has met every expired record, even when live records share the pages of the sweep.
#[tokio::test]
async fn purges_in_batches_leave_no_expired_record_among_live_ones() {
    let Some(url) = url() else { return };
    let prefix = prefix();
    let (store, _conn) = store_and_conn(&url, &prefix, Some(Duration::from_secs(30))).await;
    let ns = Namespace::Cache;
    for i in 0..150 {
        let ttl = (i % 2 == 0).then_some(Duration::from_millis(20));
        let key = format!("k{i}");
        let put = store.put(ns, &key, b"v", ttl, RecordMeta::default());
        put.await.unwrap();
    }
    // The last record put with a time to live expires last (the server's clock decides).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.get(ns, "k148").await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the records never expired"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut purged = 0;
    loop {
        let n = store.purge_expired(ns, 10).await.unwrap();
        assert!(n <= 10, "purge_expired(limit 10) deleted {n}");
        purged += n;
        if n < 10 {
            break;
        }
    }
    assert_eq!(purged, 75, "every expired record, and only those");
    let all = stent_core::ListQuery::new().include_expired(true);
    assert_eq!(store.list(ns, &all).await.unwrap().records.len(), 75);
    store.clear(ns).await.unwrap();
}
