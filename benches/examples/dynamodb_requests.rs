//! What each request shape costs a DynamoDB-API server, next to the raw requests the benches
//! compare stent with: the variants alternate in rounds (as in `interleaved.rs`), and each
//! variant's median round is reported with its ratio to the raw consistent `GetItem`, then the
//! three ratios the benchmark targets are about.
//!
//! The `old …` variants send, through the SDK, exactly the requests of the store's previous
//! layout (one `UpdateItem` with a long update expression for every claim), so the store's
//! figures before and after come from the same run. The `cond. PutItem …` variants are the
//! claim's `PutItem` under other conditions and options, failing on the completed key or
//! writing a fresh one; the `put claim + …` variants follow that claim with other completions
//! (the previous layout's, one without the `REMOVE`, the bench's unconditional `UpdateItem`).
//! `VARIANTS=part,part` keeps only the variants whose names contain one of the parts.
//!
//! ```text
//! cargo run --release -p stent-benches --example dynamodb_requests               # every variant
//! cargo run --release -p stent-benches --example dynamodb_requests -- --list
//! cargo run --release -p stent-benches --example dynamodb_requests -- --only "store claim (completed)" 2000
//! ROUNDS=21 CALLS=20 cargo run --release -p stent-benches --example dynamodb_requests
//! ```
//!
//! `--only NAME N` sends one variant N times, to profile the server on that request alone;
//! with `MOTO_PID` set to the server's process id, it also reports the server's CPU time per
//! call, which other load on the machine moves far less than wall time.
//! The server is `STENT_DYNAMODB_URL` (moto in the project's lanes).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use stent::{ClaimOutcome, DynamoDbStore, LeaseToken, Namespace, ResultStore};
use stent_benches::{
    Fresh, env_url, now_ms, run_tag, runtime, store_claim, store_claim_complete, stored_value,
};

const TABLE: &str = "stent_requests";

/// One variant: one call of it.
type Call<'a> = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + 'a>> + 'a>;

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn b(v: &[u8]) -> AttributeValue {
    AttributeValue::B(Blob::new(v))
}

/// The previous layout's claim condition.
const OLD_CLAIM_CONDITION: &str = "attribute_not_exists(#pk) OR #expires_ms <= :now \
     OR (#state = :in_progress AND (attribute_not_exists(#lease_expires_ms) OR #lease_expires_ms <= :now))";

/// The previous layout's claim update, for a call with only a function name in its metadata.
const OLD_CLAIM_UPDATE: &str = "SET #state = :in_progress, #lease_token = :token, \
     #lease_expires_ms = :lease_until, #lease_attempt = if_not_exists(#lease_attempt, :zero) + :one, \
     #attempt = if_not_exists(#lease_attempt, :zero) + :one, #created_ms = :now, \
     #function = :function REMOVE #value, #completed_ms, #completed_token, #expires_ms, #ttl, \
     #version, #fingerprint";

/// The previous layout's completion.
const OLD_COMPLETE_UPDATE: &str = "SET #state = :completed, #value = :value, \
     #completed_ms = :now, #completed_token = :token \
     REMOVE #lease_token, #lease_expires_ms, #lease_attempt";
const OWNED_CONDITION: &str = "#lease_token = :token AND #state = :in_progress";

/// `#name` placeholders of `exprs`, mapped to their names.
fn names(exprs: &[&str]) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for expr in exprs {
        let mut rest = *expr;
        while let Some(at) = rest.find('#') {
            let tail = &rest[at + 1..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            map.insert(format!("#{}", &tail[..end]), tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    map
}

struct Bench {
    store: DynamoDbStore,
    fresh: Fresh,
    /// A completed record in the idempotency namespace.
    completed: String,
    value: Vec<u8>,
}

impl Bench {
    fn client(&self) -> &Client {
        self.store.client()
    }

    fn pk(&self, key: &str) -> AttributeValue {
        AttributeValue::S(self.store.partition_key(Namespace::Idempotency, key))
    }

    async fn raw_get(&self) {
        let out = self
            .client()
            .get_item()
            .table_name(TABLE)
            .key("pk", self.pk(&self.completed))
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem");
        assert!(out.item.is_some());
    }

    /// The bench's first raw write: a fresh record of 6 attributes.
    async fn raw_put(&self, key: &str) {
        let now = now_ms();
        self.client()
            .put_item()
            .table_name(TABLE)
            .item("pk", self.pk(key))
            .item("state", s("in_progress"))
            .item("lease_token", s("token"))
            .item("lease_expires_ms", n(now + 30_000))
            .item("attempt", n(1))
            .item("created_ms", n(now))
            .send()
            .await
            .expect("PutItem");
    }

    /// The bench's second raw write.
    async fn raw_update(&self, key: &str) {
        self.client()
            .update_item()
            .table_name(TABLE)
            .key("pk", self.pk(key))
            .update_expression(
                "SET #state = :completed, #value = :value, completed_ms = :now \
                 REMOVE lease_token, lease_expires_ms",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#value", "value")
            .expression_attribute_values(":completed", s("completed"))
            .expression_attribute_values(":value", b(&self.value))
            .expression_attribute_values(":now", n(now_ms()))
            .send()
            .await
            .expect("UpdateItem");
    }

    /// The previous layout's claim; true when it was applied.
    async fn old_claim(&self, key: &str, token: &str) -> bool {
        let now = now_ms();
        let out = self
            .client()
            .update_item()
            .table_name(TABLE)
            .key("pk", self.pk(key))
            .update_expression(OLD_CLAIM_UPDATE)
            .condition_expression(OLD_CLAIM_CONDITION)
            .set_expression_attribute_names(Some(names(&[OLD_CLAIM_UPDATE, OLD_CLAIM_CONDITION])))
            .expression_attribute_values(":in_progress", s("in_progress"))
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":lease_until", n(now + 30_000))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":function", s("bench::charge"))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match out {
            Ok(_) => true,
            Err(e) => {
                let e = e.into_service_error();
                assert!(e.is_conditional_check_failed_exception(), "{e}");
                false
            }
        }
    }

    async fn old_complete(&self, key: &str, token: &str) {
        self.client()
            .update_item()
            .table_name(TABLE)
            .key("pk", self.pk(key))
            .update_expression(OLD_COMPLETE_UPDATE)
            .condition_expression(OWNED_CONDITION)
            .set_expression_attribute_names(Some(names(&[OLD_COMPLETE_UPDATE, OWNED_CONDITION])))
            .expression_attribute_values(":completed", s("completed"))
            .expression_attribute_values(":in_progress", s("in_progress"))
            .expression_attribute_values(":value", b(&self.value))
            .expression_attribute_values(":now", n(now_ms()))
            .expression_attribute_values(":token", s(token))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await
            .expect("the old completion");
    }

    /// A `PutItem` of a claim's item conditioned on `condition`; true when applied.
    async fn conditional_put(&self, key: &str, condition: &str, all_old: bool) -> bool {
        self.put_claim(key, &LeaseToken::generate(), condition, all_old)
            .await
    }

    /// A `PutItem` of a claim's item with `token`, conditioned on `condition`; true when applied.
    async fn put_claim(
        &self,
        key: &str,
        token: &LeaseToken,
        condition: &str,
        all_old: bool,
    ) -> bool {
        let now = now_ms();
        let mut request = self
            .client()
            .put_item()
            .table_name(TABLE)
            .item("pk", self.pk(key))
            .item("state", s("in_progress"))
            .item("lease_token", s(token.as_str()))
            .item("lease_expires_ms", n(now + 30_000))
            .item("lease_attempt", n(1))
            .item("attempt", n(1))
            .item("created_ms", n(now))
            .item("function", s("bench::charge"))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names(&[condition])));
        if condition.contains(":now") {
            request = request.expression_attribute_values(":now", n(now));
        }
        if condition.contains(":in_progress") {
            request = request.expression_attribute_values(":in_progress", s("in_progress"));
        }
        if all_old {
            request = request.return_values_on_condition_check_failure(
                ReturnValuesOnConditionCheckFailure::AllOld,
            );
        }
        match request.send().await {
            Ok(_) => true,
            Err(e) => {
                let e = e.into_service_error();
                assert!(e.is_conditional_check_failed_exception(), "{e}");
                false
            }
        }
    }
}

impl Bench {
    /// A completion as an `UpdateItem` of `update` under `condition` (none when empty),
    /// binding the values the two use.
    async fn complete_shape(&self, key: &str, token: &LeaseToken, update: &str, condition: &str) {
        let mut request = self
            .client()
            .update_item()
            .table_name(TABLE)
            .key("pk", self.pk(key))
            .update_expression(update)
            .set_expression_attribute_names(Some(names(&[update, condition])));
        if !condition.is_empty() {
            request = request
                .condition_expression(condition)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
        }
        let both = format!("{update} {condition}");
        for (placeholder, value) in [
            (":completed", s("completed")),
            (":in_progress", s("in_progress")),
            (":value", b(&self.value)),
            (":now", n(now_ms())),
            (":token", s(token.as_str())),
        ] {
            if both.contains(placeholder) {
                request = request.expression_attribute_values(placeholder, value);
            }
        }
        request.send().await.expect("the completion");
    }
}

/// A claim as a conditional `PutItem`, then a completion of the shape given.
fn put_then<'a>(x: &'a Bench, update: &'static str, condition: &'static str) -> Call<'a> {
    Box::new(move || {
        Box::pin(async move {
            let key = x.fresh.next();
            let token = LeaseToken::generate();
            assert!(x.put_claim(&key, &token, ABSENT_OR_EXPIRED, true).await);
            x.complete_shape(&key, &token, update, condition).await;
        })
    })
}

/// The CPU time the server process `MOTO_PID` (when set) has used so far, from
/// `/proc/PID/stat` (user + system, in clock ticks of 10 ms).
fn server_cpu() -> Option<Duration> {
    let pid = std::env::var("MOTO_PID").ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).ok()?;
    // Fields after the command name (in parentheses): utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn env_count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const ABSENT_OR_EXPIRED: &str = "attribute_not_exists(#pk) OR #expires_ms <= :now";

fn variants(x: &Bench) -> Vec<(&'static str, Call<'_>)> {
    let store: &dyn ResultStore = &x.store;
    vec![
        (
            "raw GetItem",
            Box::new(move || Box::pin(async move { x.raw_get().await })),
        ),
        (
            "raw PutItem",
            Box::new(move || Box::pin(async move { x.raw_put(&x.fresh.next()).await })),
        ),
        (
            "raw UpdateItem (fresh key)",
            Box::new(move || Box::pin(async move { x.raw_update(&x.fresh.next()).await })),
        ),
        (
            "raw two writes",
            Box::new(move || {
                Box::pin(async move {
                    let key = x.fresh.next();
                    x.raw_put(&key).await;
                    x.raw_update(&key).await;
                })
            }),
        ),
        (
            "store get",
            Box::new(move || {
                Box::pin(async move {
                    let got = store.get(Namespace::Idempotency, &x.completed).await;
                    assert!(got.expect("get").is_some());
                })
            }),
        ),
        (
            "store claim (completed)",
            Box::new(move || {
                Box::pin(async move {
                    let (_, outcome) = store_claim(store, &x.completed).await;
                    assert!(matches!(outcome, ClaimOutcome::Completed(_)));
                })
            }),
        ),
        (
            "store claim + complete",
            Box::new(move || {
                Box::pin(async move {
                    store_claim_complete(store, &x.fresh.next(), &x.value).await;
                })
            }),
        ),
        (
            "old claim (completed)",
            Box::new(move || {
                Box::pin(async move {
                    let token = LeaseToken::generate();
                    assert!(!x.old_claim(&x.completed, token.as_str()).await);
                })
            }),
        ),
        (
            "old claim + complete",
            Box::new(move || {
                Box::pin(async move {
                    let key = x.fresh.next();
                    let token = LeaseToken::generate();
                    assert!(x.old_claim(&key, token.as_str()).await);
                    x.old_complete(&key, token.as_str()).await;
                })
            }),
        ),
        (
            "cond. PutItem, short cond. (completed)",
            Box::new(move || {
                Box::pin(async move {
                    assert!(
                        !x.conditional_put(&x.completed, ABSENT_OR_EXPIRED, true)
                            .await
                    );
                })
            }),
        ),
        (
            "cond. PutItem, no ALL_OLD (completed)",
            Box::new(move || {
                Box::pin(async move {
                    assert!(
                        !x.conditional_put(&x.completed, ABSENT_OR_EXPIRED, false)
                            .await
                    );
                })
            }),
        ),
        (
            "cond. PutItem, old cond. (completed)",
            Box::new(move || {
                Box::pin(async move {
                    assert!(
                        !x.conditional_put(&x.completed, OLD_CLAIM_CONDITION, true)
                            .await
                    );
                })
            }),
        ),
        (
            "cond. PutItem, short cond. (fresh)",
            Box::new(move || {
                Box::pin(async move {
                    let key = x.fresh.next();
                    assert!(x.conditional_put(&key, ABSENT_OR_EXPIRED, true).await);
                })
            }),
        ),
        (
            "cond. PutItem, not_exists only (fresh)",
            Box::new(move || {
                Box::pin(async move {
                    let key = x.fresh.next();
                    assert!(
                        x.conditional_put(&key, "attribute_not_exists(#pk)", true)
                            .await
                    );
                })
            }),
        ),
        (
            "put claim + old complete",
            put_then(x, OLD_COMPLETE_UPDATE, OWNED_CONDITION),
        ),
        (
            "put claim + complete w/o REMOVE",
            put_then(
                x,
                "SET #state = :completed, #value = :value, #completed_ms = :now",
                OWNED_CONDITION,
            ),
        ),
        (
            "put claim + bench's UpdateItem",
            put_then(
                x,
                "SET #state = :completed, #value = :value, completed_ms = :now \
                 REMOVE lease_token, lease_expires_ms",
                "",
            ),
        ),
    ]
}

async fn run(args: Vec<String>) {
    let url = env_url("STENT_DYNAMODB_URL");
    let store = DynamoDbStore::builder()
        .endpoint_url(url)
        .and_then(|b| b.table(TABLE))
        .expect("a valid configuration")
        .build()
        .await
        .expect("connecting stent to STENT_DYNAMODB_URL");
    store.migrate().await.expect("the table");
    let x = Bench {
        fresh: Fresh::new(format!("req-{}", run_tag())),
        completed: format!("completed-{}", run_tag()),
        value: stored_value("ord-000042"),
        store,
    };
    let (token, outcome) = store_claim(&x.store, &x.completed).await;
    assert!(matches!(outcome, ClaimOutcome::Acquired { .. }));
    x.store
        .complete(Namespace::Idempotency, &x.completed, &token, &x.value, None)
        .await
        .expect("seeding the completed record");

    let mut variants = variants(&x);
    if let Ok(only) = std::env::var("VARIANTS") {
        // Comma-separated parts of names; the raw GetItem always stays, first.
        variants.retain(|(name, _)| {
            *name == "raw GetItem" || only.split(',').any(|part| name.contains(part.trim()))
        });
    }
    match args.first().map(String::as_str) {
        Some("--list") => {
            for (name, _) in &variants {
                println!("{name}");
            }
        }
        Some("--only") => {
            let name = args.get(1).expect("--only NAME N");
            let count: usize = args.get(2).and_then(|c| c.parse().ok()).unwrap_or(1000);
            let (_, call) = variants
                .iter()
                .find(|(v, _)| v == name)
                .unwrap_or_else(|| panic!("no variant {name:?} (see --list)"));
            let cpu = server_cpu();
            let started = Instant::now();
            for _ in 0..count {
                call().await;
            }
            let wall = started.elapsed() / count as u32;
            match (cpu, server_cpu()) {
                (Some(before), Some(after)) => println!(
                    "{name}: {wall:.2?} per call, server CPU {:.2?} per call",
                    (after - before) / count as u32
                ),
                _ => println!("{name}: {wall:.2?} per call"),
            }
        }
        _ => compare(&variants).await,
    }
    x.store
        .clear(Namespace::Idempotency)
        .await
        .expect("clearing the table");
}

async fn compare(variants: &[(&'static str, Call<'_>)]) {
    let rounds = env_count("ROUNDS", 15);
    let calls = env_count("CALLS", 20);
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    for _ in 0..rounds {
        for (i, (_, call)) in variants.iter().enumerate() {
            let started = Instant::now();
            for _ in 0..calls {
                call().await;
            }
            times[i].push(started.elapsed() / calls as u32);
        }
    }
    let medians: HashMap<&str, Duration> = variants
        .iter()
        .zip(&mut times)
        .map(|((name, _), t)| (*name, median(t)))
        .collect();
    let get = medians["raw GetItem"];
    for (name, _) in variants {
        let m = medians[name];
        println!(
            "{name:>40}: {m:>10.2?}  ({:.2} × raw GetItem)",
            m.as_secs_f64() / get.as_secs_f64()
        );
    }
    let ratio =
        |a: &str, b: &str| Some(medians.get(a)?.as_secs_f64() / medians.get(b)?.as_secs_f64());
    println!();
    for (a, b) in [
        ("store claim (completed)", "raw GetItem"),
        ("old claim (completed)", "raw GetItem"),
        ("store claim + complete", "raw two writes"),
        ("old claim + complete", "raw two writes"),
        ("store get", "raw GetItem"),
    ] {
        if let Some(r) = ratio(a, b) {
            println!("{a:>30} ÷ {b:<16} {r:.2}");
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    runtime().block_on(run(args));
}
