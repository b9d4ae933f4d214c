//! A read judges expiry by the clock of the node that holds the key: without a grace Redis
//! deletes a record the moment it expires, so a record that is there is live; with one,
//! `purge_ms` less the key's `PTTL`; the server's `TIME` for a hash written without
//! `purge_ms`.

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
    let (expires, purge): (i64, i64) = redis::cmd("HMGET")
        .arg(&rk)
        .arg("expires_ms")
        .arg("purge_ms")
        .query_async(&mut conn)
        .await
        .unwrap();
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
        "expired on the server's clock, though Redis keeps the hash for the grace"
    );
    assert!(conn.exists::<_, bool>(&rk).await.unwrap());
    store.clear(Namespace::Cache).await.unwrap();
}

#[tokio::test]
async fn a_hash_without_purge_ms_is_judged_by_the_servers_time() {
    let Some(url) = url() else { return };
    let prefix = prefix();
    let (store, mut conn) = store_and_conn(&url, &prefix, None).await;
    let now = server_ms(&mut conn).await;
    for (key, expires) in [("past", now - 1_000), ("future", now + 60_000)] {
        let rk = format!("{prefix}:cache:{key}");
        let _: () = conn
            .hset_multiple(
                &rk,
                &[
                    ("state", "completed".to_owned()),
                    ("value", "\x01\"v\"".to_owned()),
                    ("attempt", "1".to_owned()),
                    ("created_ms", (now - 2_000).to_string()),
                    ("completed_ms", (now - 2_000).to_string()),
                    ("expires_ms", expires.to_string()),
                ],
            )
            .await
            .unwrap();
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
        let (expires, purge): (i64, i64) = redis::cmd("HMGET")
            .arg(&rk)
            .arg("expires_ms")
            .arg("purge_ms")
            .query_async(&mut conn)
            .await
            .unwrap();
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
        let record = store
            .get(ns, key)
            .await
            .unwrap()
            .expect("live before expiry");
        assert_eq!(record.value.as_deref(), Some(&b"\x01\"v\""[..]));
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
