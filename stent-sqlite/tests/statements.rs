//! What each call sends to SQLite: the statements sqlx reports running (its `sqlx::query`
//! events, from whichever thread runs them) and those SQLite reports running on the store's
//! read connections (`stent_sqlite::sql`), checked against the README's table.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use stent_core::Stent;
use stent_sqlite::SqliteStore;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Every statement sqlx runs, in order: its text (or summary when short).
#[derive(Clone, Default)]
struct Statements(Arc<Mutex<Vec<String>>>);

struct Text(String);

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "db.statement" && !value.trim().is_empty() {
            self.0 = value.to_owned();
        }
        if field.name() == "summary" && self.0.is_empty() {
            self.0 = value.to_owned();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "summary" && self.0.is_empty() {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Statements {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        ["sqlx::query", "stent_sqlite::sql"].contains(&metadata.target())
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut text = Text(String::new());
        event.record(&mut text);
        self.0.lock().unwrap().push(text.0);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

impl Statements {
    /// The operations the statements run since the last call are, in order (statements on
    /// other tables, such as a new pool connection's pragmas, are left out).
    fn take(&self, table: &str) -> Vec<&'static str> {
        let table = format!("\"{table}\"");
        std::mem::take(&mut *self.0.lock().unwrap())
            .iter()
            .filter(|sql| sql.contains(&table))
            .map(|sql| {
                let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
                match sql.split(' ').next().unwrap_or_default() {
                    "SELECT" => "read",
                    "INSERT" if sql.contains("'in_progress'") => "claim",
                    "INSERT" => "put",
                    "UPDATE" if sql.contains("state = 'completed'") => "complete",
                    _ => panic!("an unexpected statement: {sql}"),
                }
            })
            .collect()
    }
}

/// Each call sends what the README's table says, the same on every call: a first
/// idempotent call the claim's read, the claim and the completion; a replay the read; a
/// cache hit a read; a cache miss a read and a write. Repeated, so that no earlier call
/// changes a later one's statements.
#[tokio::test]
async fn each_call_sends_what_the_readme_says() {
    let statements = Statements::default();
    tracing::subscriber::set_global_default(statements.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("sends.db"))
        .await
        .unwrap();
    let idem = store.table(stent_core::Namespace::Idempotency).to_owned();
    let cache = store.table(stent_core::Namespace::Cache).to_owned();
    let stent = Stent::new(store);
    let idempotent = stent
        .durable("sends::idempotent")
        .idempotent()
        .wrap(|n: u32| async move { Ok::<_, Infallible>(n) });
    let cached = stent
        .durable("sends::cached")
        .cached()
        .wrap(|n: u32| async move { Ok::<_, Infallible>(n) });
    // What opening the store ran.
    statements.0.lock().unwrap().clear();
    for n in 0..12 {
        assert_eq!(idempotent.call(n).await.unwrap(), n);
        assert_eq!(
            statements.take(&idem),
            ["read", "claim", "complete"],
            "first call {n}"
        );
        assert_eq!(idempotent.call(n).await.unwrap(), n);
        assert_eq!(statements.take(&idem), ["read"], "replay {n}");
        assert_eq!(cached.call(n).await.unwrap(), n);
        assert_eq!(statements.take(&cache), ["read", "put"], "cache miss {n}");
        assert_eq!(cached.call(n).await.unwrap(), n);
        assert_eq!(statements.take(&cache), ["read"], "cache hit {n}");
    }
}
