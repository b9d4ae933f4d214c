//! Prefixes isolate stores by construction: whatever two prefixes are, no operation of one
//! store (`list`, `delete`, `purge_expired`, `clear`, in any namespace) reaches a record
//! of the other, on one server and on a Redis Cluster.
//!
//! Each pair is two prefixes one of which is built to blur the other's keys: the other
//! plus a namespace, a separator, a glob character, an escape, a hash tag. Both stores
//! write records under the same keys in every namespace, including keys that spell out
//! another namespace, then one of them lists, deletes, purges and clears, and the other's
//! records must all be there, unchanged.

use std::time::Duration;

use stent_conformance::servers::{self, Server};
use stent_core::{Claim, LeaseToken, ListQuery, Namespace, Record, RecordMeta, ResultStore};
use stent_redis::RedisStore;

/// Pairs of prefixes, each appended to one unique stem per run.
const PAIRS: &[(&str, &str)] = &[
    ("P", "P:cache"),
    ("P", "P:idempotency"),
    ("P", "P:progress"),
    ("P", "P:cache:cache"),
    ("P", "P:"),
    ("P:", "P::"),
    ("P:", "P%3A"),
    ("P%", "P%25"),
    ("{x}", "{x}:y"),
    ("{x}", "{x}:cache"),
    ("a", "a*"),
    ("a?", "ab"),
    ("a[b]", "ab"),
    ("a[b]", "a[b]:cache"),
    ("a", "a\\"),
    ("a*", "a\\*"),
    ("a:cache", "a\\:cache"),
    ("a\\", "a\\:cache"),
];

/// The keys each store writes with `put` in every namespace: some spell out another
/// store's key under the old `{prefix}:{namespace}:{key}` layout.
const KEYS: &[&str] = &[
    "k",
    "cache:k",
    "idempotency:k",
    "progress:k",
    "cache:cache:k",
    ":k",
    "*",
    "k\\",
];

/// Records per namespace: the `KEYS`, one claim in progress and one expired record.
const RECORDS: usize = KEYS.len() + 2;

/// How many of the `KEYS` the acting store deletes one by one.
const DELETED: usize = 3;

#[tokio::test]
async fn prefixes_never_reach_each_others_records_standalone() {
    if let Some(url) = server_url(Server::Redis).await {
        prefixes_never_reach_each_others_records(&url).await;
    }
}

#[tokio::test]
async fn prefixes_never_reach_each_others_records_in_a_cluster() {
    if let Some(url) = server_url(Server::RedisCluster).await {
        prefixes_never_reach_each_others_records(&url).await;
    }
}

async fn server_url(server: Server) -> Option<String> {
    match servers::url(server).await {
        Ok(url) => Some(url),
        Err(why) if stent_conformance::backends_required() => panic!("{why}"),
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

async fn prefixes_never_reach_each_others_records(url: &str) {
    let stem = stent_conformance::unique_id();
    for &(a, b) in PAIRS {
        let (a, b) = (format!("{stem}{a}"), format!("{stem}{b}"));
        // One of the two through the builder, the other through `?prefix=` in the URL.
        let first = store(url, &a, false).await;
        let second = store(url, &b, true).await;
        isolated(&first, &second).await;
        isolated(&second, &first).await;
    }
}

async fn store(url: &str, prefix: &str, in_url: bool) -> RedisStore {
    let builder = if in_url {
        RedisStore::builder().url(format!("{url}?prefix={}", percent_encode(prefix)))
    } else {
        RedisStore::builder().url(url).prefix(prefix)
    };
    // A grace keeps expired records in Redis, so that `purge_expired` has some to find:
    // an hour, far longer than the test runs on a loaded machine (a minute was not).
    let store = builder
        .expiry_grace(Duration::from_secs(3600))
        .build()
        .await
        .unwrap_or_else(|e| panic!("prefix {prefix:?}: {e}"));
    assert_eq!(store.prefix(), prefix);
    store
}

/// `actor` lists, deletes, purges and clears every namespace; `witness` keeps every record.
async fn isolated(actor: &RedisStore, witness: &RedisStore) {
    let pair = format!(
        "{:?} acting, {:?} watching",
        actor.prefix(),
        witness.prefix()
    );
    fill(actor).await;
    fill(witness).await;
    tokio::time::sleep(Duration::from_millis(20)).await; // the expired records expire
    for ns in Namespace::ALL {
        holds_its_own(actor, ns, &pair).await;
        holds_its_own(witness, ns, &pair).await;
    }

    for ns in Namespace::ALL {
        let live = actor.list(ns, &ListQuery::new().limit(1000)).await.unwrap();
        assert_eq!(
            live.records.len(),
            RECORDS - 1,
            "{pair}, {ns}: live {live:?}"
        );
        owned_by(actor, &live.records, &pair);
        let under = ListQuery::new().prefix("cache:").include_expired(true);
        let under = actor.list(ns, &under).await.unwrap();
        owned_by(actor, &under.records, &pair);

        for key in &KEYS[..DELETED] {
            assert!(actor.delete(ns, key).await.unwrap(), "{pair}, {ns}: {key}");
        }
        let purged = actor.purge_expired(ns, 1000).await.unwrap();
        assert_eq!(purged, 1, "{pair}, {ns}: purge_expired");
        let cleared = actor.clear(ns).await.unwrap();
        assert_eq!(
            cleared as usize,
            RECORDS - DELETED - 1,
            "{pair}, {ns}: clear"
        );
        assert!(all(actor, ns).await.is_empty(), "{pair}, {ns}");
    }

    for ns in Namespace::ALL {
        holds_its_own(witness, ns, &pair).await;
        for key in KEYS {
            let record = witness.get(ns, key).await.unwrap();
            let record = record.unwrap_or_else(|| panic!("{pair}, {ns}: {key:?} is gone"));
            assert_eq!(
                record.value.as_deref(),
                Some(witness.prefix().as_bytes()),
                "{pair}, {ns}: {key:?}"
            );
        }
        witness.clear(ns).await.unwrap();
    }
}

/// Writes the [`RECORDS`] of each namespace, each naming the store's prefix as its
/// function (and as its value when completed).
async fn fill(store: &RedisStore) {
    let label = store.prefix();
    let meta = RecordMeta {
        function: Some(label),
        ..RecordMeta::default()
    };
    for ns in Namespace::ALL {
        for key in KEYS {
            let value = label.as_bytes();
            store.put(ns, key, value, None, meta).await.unwrap();
        }
        let ttl = Some(Duration::from_millis(1));
        store.put(ns, "expired", b"", ttl, meta).await.unwrap();
        let token = LeaseToken::generate();
        let claim = Claim {
            token: &token,
            lease: Duration::from_secs(60),
            meta,
        };
        store.claim(ns, "claimed", &claim).await.unwrap();
    }
}

/// Every record of `ns`, expired ones too.
async fn all(store: &RedisStore, ns: Namespace) -> Vec<Record> {
    let query = ListQuery::new().limit(1000).include_expired(true);
    store.list(ns, &query).await.unwrap().records
}

/// The store lists exactly the records it wrote in `ns`, and none of another store.
async fn holds_its_own(store: &RedisStore, ns: Namespace, pair: &str) {
    let records = all(store, ns).await;
    owned_by(store, &records, pair);
    let mut keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    let mut expected: Vec<&str> = KEYS.iter().copied().chain(["claimed", "expired"]).collect();
    keys.sort_unstable();
    expected.sort_unstable();
    assert_eq!(keys, expected, "{pair}: {:?} in {ns}", store.prefix());
}

fn owned_by(store: &RedisStore, records: &[Record], pair: &str) {
    for record in records {
        assert_eq!(
            record.function.as_deref(),
            Some(store.prefix()),
            "{pair}: {:?} lists {:?}, a record of another store",
            store.prefix(),
            record.key
        );
    }
}

/// Every byte but ASCII letters and digits as `%XX`.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
