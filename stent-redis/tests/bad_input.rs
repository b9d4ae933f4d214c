//! Bad input gets a clear, typed error at build time or on the call, never a panic, and
//! never overwrites anything.

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use stent_conformance::servers::local::{self, RedisServer};
use stent_core::{
    Claim, ErrorKind, LeaseToken, ListQuery, Namespace, RecordMeta, ResultStore, Status, Stent,
};
use stent_redis::RedisStore;

/// An address where nothing listens: builds that must fail before connecting use it.
const NOWHERE: &str = "redis://127.0.0.1:1";

fn url(test: &str) -> Option<String> {
    match std::env::var("STENT_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) if stent_conformance::backends_required() => {
            panic!("STENT_REDIS_URL is not set and STENT_REQUIRE_BACKENDS=1")
        }
        Err(_) => {
            eprintln!("SKIPPED {test}: STENT_REDIS_URL is not set");
            None
        }
    }
}

fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}{}x{nanos}", std::process::id())
}

/// A store under `prefix`, and a plain connection to the same server.
async fn store_and_raw(url: &str, prefix: &str) -> (RedisStore, MultiplexedConnection) {
    let store = RedisStore::builder()
        .url(url)
        .prefix(prefix)
        .build()
        .await
        .unwrap();
    let raw = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    (store, raw)
}

/// `url` with `user:password@` put in front of its host.
fn with_password(url: &str, userinfo: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{userinfo}@{rest}")
}

#[tokio::test]
async fn malformed_urls_are_config_errors_that_hide_the_password() {
    for url in [
        "redis://:s3cret-pw@127.0.0.1:notaport",
        "http://:s3cret-pw@127.0.0.1:6379",
        "redis://:s3cret-pw@[::1",
        "redis+cluster://:s3cret-pw@",
        "redis+cluster://:s3cret-pw@127.0.0.1:notaport,127.0.0.1:7102",
        "",
        "127.0.0.1:6379",
        "rediss://:s3cret-pw@127.0.0.1:6379",
    ] {
        let e = RedisStore::connect(url).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{url:?}: {e}");
        assert!(!e.is_retryable(), "{url:?}: {e}");
        eprintln!("{url:?}: {e}");
        for shown in [e.to_string(), format!("{e:?}")] {
            assert!(
                !shown.contains("s3cret-pw"),
                "{url:?} leaks its password: {shown}"
            );
        }
    }
    let e = RedisStore::builder().build().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("no Redis URL"), "{e}");
}

#[tokio::test]
async fn wrong_password_is_a_config_error_that_hides_the_password() {
    let Some(url) = url("wrong_password_is_a_config_error_that_hides_the_password") else {
        return;
    };
    for userinfo in [":bad", ":s3cret-pw", "someone:s3cret-pw"] {
        let bad = with_password(&url, userinfo);
        let e = RedisStore::connect(bad.as_str()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e:?}");
        assert!(!e.is_retryable(), "{e:?}");
        let (shown, debug) = (e.to_string(), format!("{e:?}"));
        eprintln!("wrong password: {shown}");
        assert!(shown.contains("authentication failed"), "{shown}");
        assert!(shown.contains(":***@"), "the URL is named, masked: {shown}");
        for s in [&shown, &debug] {
            assert!(
                !s.contains("s3cret-pw") && !s.contains(":bad@"),
                "password leaked: {s}"
            );
        }
    }
}

#[tokio::test]
async fn debug_output_masks_the_password() {
    let builder = RedisStore::builder().url("redis://user:s3cret-pw@127.0.0.1:6379/0");
    let debug = format!("{builder:?}");
    assert!(
        debug.contains("redis://user:***@127.0.0.1:6379/0"),
        "{debug}"
    );
    assert!(!debug.contains("s3cret-pw"), "{debug}");
    let cluster = RedisStore::builder().url("redis+cluster://:s3cret-pw@a:1,b:2");
    assert!(!format!("{cluster:?}").contains("s3cret-pw"));
    let nodes = RedisStore::builder().cluster(["redis://:s3cret-pw@a:1", "b:2"]);
    assert!(!format!("{nodes:?}").contains("s3cret-pw"));
}

#[tokio::test]
async fn invalid_prefixes_are_refused_at_build_time() {
    for (prefix, problem) in [
        ("my app", "a space"),
        ("app\n", "whitespace"),
        ("app\u{1b}", "a control character"),
        ("", "empty"),
    ] {
        // Nothing listens at NOWHERE: a Config error proves the prefix was refused first.
        let e = RedisStore::builder()
            .url(NOWHERE)
            .prefix(prefix)
            .build()
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{prefix:?}: {e}");
        assert!(e.to_string().contains(problem), "{prefix:?}: {e}");
    }
}

#[tokio::test]
async fn a_prefix_in_the_url_puts_the_keys_under_it_and_is_checked_like_the_builders() {
    let Some(url) =
        url("a_prefix_in_the_url_puts_the_keys_under_it_and_is_checked_like_the_builders")
    else {
        return;
    };
    let prefix = unique("urlprefix");
    let sep = if url.contains('?') { '&' } else { '?' };
    let store = RedisStore::connect(&format!("{url}{sep}prefix={prefix}%3Aa%25*"))
        .await
        .unwrap();
    assert_eq!(store.prefix(), format!("{prefix}:a%*"));
    store
        .put(Namespace::Cache, "k", b"v", None, RecordMeta::default())
        .await
        .unwrap();
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // `:` and `%` of the prefix are escaped in keys, so that no prefix nests in another.
    let exists: bool = raw
        .exists(format!("{prefix}%3Aa%25*:cache:k"))
        .await
        .unwrap();
    assert!(exists, "the record is not under {prefix}%3Aa%25*:cache:");
    store.clear(Namespace::Cache).await.unwrap();

    // Refused before any connection, as from `prefix`: nothing listens at NOWHERE.
    for (bad, problem) in [
        ("my%20app", "a space"),
        ("app%0A", "whitespace"),
        ("", "empty"),
    ] {
        let e = RedisStore::connect(&format!("{NOWHERE}?prefix={bad}"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{bad:?}: {e}");
        assert!(e.to_string().contains(problem), "{bad:?}: {e}");
    }
}

#[tokio::test]
async fn unreachable_server_is_a_retryable_unavailable_error() {
    let e = RedisStore::builder()
        .url(NOWHERE)
        .retries(0)
        .build()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable());
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
}

#[tokio::test]
async fn key_of_another_type_is_a_decode_error_naming_the_key_and_left_untouched() {
    let Some(url) = url("key_of_another_type_is_a_decode_error_naming_the_key_and_left_untouched")
    else {
        return;
    };
    let prefix = unique("badtype");
    let (store, mut raw) = store_and_raw(&url, &prefix).await;
    let idem_key = format!("{prefix}:idempotency:k");
    let cache_key = format!("{prefix}:cache:k");
    let _: () = raw.set(&idem_key, "hand-written").await.unwrap();
    let _: () = raw.rpush(&cache_key, "a list").await.unwrap();

    let token = LeaseToken::generate();
    let claim = Claim {
        token: &token,
        lease: Duration::from_secs(30),
        meta: RecordMeta::default(),
    };
    let ns = Namespace::Idempotency;
    let errors = [
        ("get", store.get(ns, "k").await.map(|_| ())),
        ("claim", store.claim(ns, "k", &claim).await.map(|_| ())),
        (
            "renew",
            store
                .renew(ns, "k", &token, Duration::from_secs(1))
                .await
                .map(|_| ()),
        ),
        (
            "complete",
            store.complete(ns, "k", &token, b"v", None).await,
        ),
        ("release", store.release(ns, "k", &token).await.map(|_| ())),
        (
            "put",
            store.put(ns, "k", b"v", None, RecordMeta::default()).await,
        ),
        ("delete", store.delete(ns, "k").await.map(|_| ())),
        (
            "put (cache)",
            store
                .put(Namespace::Cache, "k", b"v", None, RecordMeta::default())
                .await,
        ),
    ];
    for (op, result) in errors {
        let e = result.expect_err(op);
        assert_eq!(e.kind(), ErrorKind::Decode, "{op}: {e}");
        assert_eq!(e.key(), Some("k"), "{op}: {e}");
        let shown = e.to_string();
        eprintln!("{op}: {shown}");
        assert!(
            shown.contains(":k\"") && shown.contains(&prefix),
            "{op} names the Redis key: {shown}"
        );
        assert!(
            shown.contains("string") || shown.contains("list"),
            "{op} names the type: {shown}"
        );
    }

    // Through the wrapper: a typed error, and the function never runs.
    let f = Stent::new(store.clone())
        .durable("f")
        .idempotent()
        .key(|_: &()| "k")
        .shared_key()
        .wrap(|_: ()| async { Ok::<_, Infallible>(1u8) });
    let e = f.call(()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");

    // Admin operations skip what is not a record.
    assert_eq!(store.clear(ns).await.unwrap(), 0);
    assert_eq!(store.purge_expired(ns, 100).await.unwrap(), 0);
    assert!(
        store
            .list(ns, &ListQuery::new())
            .await
            .unwrap()
            .records
            .is_empty()
    );

    let kept: String = raw.get(&idem_key).await.unwrap();
    assert_eq!(kept, "hand-written", "never overwritten");
    let kept: Vec<String> = raw.lrange(&cache_key, 0, -1).await.unwrap();
    assert_eq!(kept, ["a list"]);
    let _: () = raw.del(&[&idem_key, &cache_key]).await.unwrap();
}

#[tokio::test]
async fn broken_record_is_a_decode_error_and_left_untouched() {
    let Some(url) = url("broken_record_is_a_decode_error_and_left_untouched") else {
        return;
    };
    let prefix = unique("badhash");
    let (store, mut raw) = store_and_raw(&url, &prefix).await;
    let key = format!("{prefix}:idempotency:h");
    let broken = "stent1|exploded||1|1||||||||0|";
    let _: () = raw.set(&key, broken).await.unwrap();
    let ns = Namespace::Idempotency;
    let e = store.get(ns, "h").await.unwrap_err();
    assert_eq!((e.kind(), e.key()), (ErrorKind::Decode, Some("h")), "{e}");
    let token = LeaseToken::generate();
    let claim = Claim {
        token: &token,
        lease: Duration::from_secs(30),
        meta: RecordMeta::default(),
    };
    let e = store.claim(ns, "h", &claim).await.unwrap_err();
    assert_eq!((e.kind(), e.key()), (ErrorKind::Decode, Some("h")), "{e}");
    let kept: String = raw.get(&key).await.unwrap();
    assert_eq!(kept, broken);
    assert!(
        store.delete(ns, "h").await.unwrap(),
        "an admin delete still removes it"
    );
}

#[tokio::test]
async fn from_env_connects_to_stent_redis_url() {
    if url("from_env_connects_to_stent_redis_url").is_none() {
        return;
    }
    let store = RedisStore::from_env().await.unwrap();
    assert_eq!(store.prefix(), stent_redis::DEFAULT_PREFIX);
    let debug = format!("{store:?}");
    assert!(
        debug.contains("standalone") && debug.contains("prefix"),
        "{debug}"
    );
}

#[tokio::test]
async fn a_hash_is_someone_elses_and_left_untouched() {
    let Some(url) = url("a_hash_is_someone_elses_and_left_untouched") else {
        return;
    };
    let prefix = unique("nostate");
    let (store, mut raw) = store_and_raw(&url, &prefix).await;
    let key = format!("{prefix}:idempotency:h");
    let _: () = raw.hset(&key, "value", "someone else's").await.unwrap();
    let token = LeaseToken::generate();
    let claim = Claim {
        token: &token,
        lease: Duration::from_secs(30),
        meta: RecordMeta::default(),
    };
    let e = store
        .claim(Namespace::Idempotency, "h", &claim)
        .await
        .unwrap_err();
    assert_eq!((e.kind(), e.key()), (ErrorKind::Decode, Some("h")), "{e}");
    assert!(e.to_string().contains("hash"), "{e}");
    let fields: Vec<String> = raw.hkeys(&key).await.unwrap();
    assert_eq!(fields, ["value"], "left untouched");
    let _: () = raw.del(&key).await.unwrap();
}

#[tokio::test]
async fn scripts_flushed_from_the_server_are_loaded_again() {
    // A private server: flushing the shared one's scripts would fail other tests' calls
    // between their `SCRIPT LOAD` and `EVALSHA`.
    let test = "scripts_flushed_from_the_server_are_loaded_again";
    let Some(server) = local::or_skip(test, RedisServer::start(&["--save", ""])) else {
        return;
    };
    let url = server.url();
    let prefix = unique("noscript");
    let (store, mut raw) = store_and_raw(&url, &prefix).await;
    let stent = Stent::new(store.clone());
    let f = stent
        .durable("noscript")
        .idempotent()
        .wrap(|n: u32| async move { Ok::<_, Infallible>(n * 2) });
    for round in 0..2 {
        // Every round starts with an empty script cache (as after a restart or a failover):
        // the round's first script (a first call's completion) meets NOSCRIPT, loads it and goes on.
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut raw)
            .await
            .unwrap();
        let executed = f.call_traced(21).await.unwrap();
        assert_eq!(executed.value, 42);
        let expected = if round == 0 {
            Status::Executed
        } else {
            Status::Replayed
        };
        assert_eq!(executed.outcome.status, expected, "round {round}");
    }
    for ns in Namespace::ALL {
        store.clear(ns).await.unwrap();
    }
}

#[tokio::test]
async fn a_store_from_the_callers_client_reaches_the_same_server() {
    let Some(url) = url("a_store_from_the_callers_client_reaches_the_same_server") else {
        return;
    };
    let prefix = unique("fromclient");
    let store = RedisStore::builder()
        .client(redis::Client::open(url.as_str()).unwrap())
        .prefix(prefix.as_str())
        .build()
        .await
        .unwrap();
    store
        .put(Namespace::Cache, "k", b"v", None, RecordMeta::default())
        .await
        .unwrap();
    let by_url = RedisStore::builder()
        .url(url.as_str())
        .prefix(prefix.as_str())
        .build()
        .await
        .unwrap();
    let got = by_url.get(Namespace::Cache, "k").await.unwrap().unwrap();
    assert_eq!(got.value.as_deref(), Some(&b"v"[..]));
    let client = redis::Client::open(NOWHERE).unwrap();
    let e = RedisStore::from_client(client).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}
