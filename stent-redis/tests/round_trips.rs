//! What each call sends, counted by the server: `INFO commandstats` deltas on a private
//! `redis-server` (no other test's commands in the counts). Commands that a script runs
//! count there too, so each case states the commands its client sends (its round trips)
//! and those its scripts run; the README's table of operations must say the same round
//! trips.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use stent_conformance::servers::local::{self, RedisServer};
use stent_core::{Status, Stent};
use stent_redis::RedisStore;

/// Calls of each command since the server started, from `INFO commandstats`.
async fn counts(conn: &mut redis::aio::MultiplexedConnection) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// The commands counted since `before`, the `INFO` that read them left out.
async fn delta(
    conn: &mut redis::aio::MultiplexedConnection,
    before: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    let after = counts(conn).await;
    after
        .into_iter()
        .filter(|(name, _)| name != "info")
        .map(|(name, n)| {
            let n = n - before.get(&name).copied().unwrap_or(0);
            (name, n)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Commands and how many times each.
type Commands = &'static [(&'static str, u64)];

fn commands(list: Commands) -> BTreeMap<String, u64> {
    list.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect()
}

/// The round trips the README's table gives `op` (its last column).
fn readme_round_trips(op: &str) -> String {
    let readme = include_str!("../README.md");
    let row = format!("| `{op}` |");
    let line = readme
        .lines()
        .find(|l| l.starts_with(&row))
        .unwrap_or_else(|| panic!("no row for `{op}` in the README's table"));
    line.trim_end_matches('|')
        .rsplit('|')
        .next()
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn each_call_sends_what_the_readme_says() {
    let test = "each_call_sends_what_the_readme_says";
    let Some(server) = local::or_skip(test, RedisServer::start(&["--save", ""])) else {
        return;
    };
    let url = server.url();
    let store = RedisStore::connect(&url).await.unwrap();
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stent = Stent::new(store);
    let charge = stent
        .durable("billing::charge")
        .idempotent()
        .wrap(|n: u32| async move { Ok::<_, Infallible>(n * 2) });
    let lookup = stent
        .durable("catalog::lookup")
        .cached()
        .ttl(Duration::from_secs(60))
        .wrap(|n: u32| async move { Ok::<_, Infallible>(n + 1) });
    // Loads the scripts, so that no case counts a NOSCRIPT and its `SCRIPT LOAD`.
    charge.call(0).await.unwrap();
    lookup.call(0).await.unwrap();

    // (case, what the client sends, what its scripts run, status)
    let cases: [(&str, Commands, Commands, Status); 4] = [
        (
            "first call (claim + complete)",
            &[("set", 1), ("evalsha", 1)],
            &[("get", 1), ("pexpiretime", 1), ("time", 1), ("set", 1)],
            Status::Executed,
        ),
        ("replay (claim)", &[("set", 1)], &[], Status::Replayed),
        (
            "cache miss (get + put)",
            &[("get", 1), ("evalsha", 1)],
            &[("getrange", 1), ("exists", 1), ("time", 1), ("set", 1)],
            Status::Executed,
        ),
        ("cache hit (get)", &[("get", 1)], &[], Status::CacheHit),
    ];
    for (case, sent, scripted, status) in cases {
        let before = counts(&mut conn).await;
        let outcome = if case.contains("cache") {
            lookup.call_traced(7).await.unwrap().outcome
        } else {
            charge.call_traced(7).await.unwrap().outcome
        };
        assert_eq!(outcome.status, status, "{case}");
        let mut expected = commands(sent);
        for (c, n) in scripted {
            *expected.entry((*c).to_owned()).or_default() += n;
        }
        assert_eq!(delta(&mut conn, &before).await, expected, "{case}");
    }

    // An overwrite and a delete announce themselves from their script, in the same round
    // trip: `PUBLISH` of the record's key on the store's channel.
    let store = stent.store();
    let (ns, key) = (stent_core::Namespace::Cache, "announced");
    let meta = stent_core::RecordMeta::default();
    store.put(ns, key, b"v1", None, meta).await.unwrap();
    assert!(!store.delete(ns, "absent").await.unwrap()); // loads the script
    let writes: [(&str, Commands); 3] = [
        (
            "put over a record",
            &[
                ("evalsha", 1),
                ("getrange", 1),
                ("time", 1),
                ("set", 1),
                ("publish", 1),
            ],
        ),
        (
            "delete",
            &[("evalsha", 1), ("get", 1), ("del", 1), ("publish", 1)],
        ),
        (
            "put of a new key",
            &[
                ("evalsha", 1),
                ("getrange", 1),
                ("exists", 1),
                ("time", 1),
                ("set", 1),
            ],
        ),
    ];
    for (case, expected) in writes {
        let before = counts(&mut conn).await;
        match case {
            "delete" => assert!(store.delete(ns, key).await.unwrap()),
            _ => store.put(ns, key, b"v2", None, meta).await.unwrap(),
        }
        assert_eq!(
            delta(&mut conn, &before).await,
            commands(expected),
            "{case}"
        );
    }

    // The README's table: one round trip per operation on a record.
    for op in [
        "get", "claim", "renew", "complete", "release", "put", "delete",
    ] {
        assert_eq!(readme_round_trips(op), "1", "{op}");
    }
}
