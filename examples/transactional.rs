//! Exactly once inside your database: ledger postings whose rows and idempotency records
//! commit in one SQLite transaction, on `./ledger.db` (made afresh on every run).
//!
//! ```sh
//! cargo run --example transactional
//! sqlite3 ledger.db "SELECT * FROM ledger"
//! ```

use stent::sqlx;
use stent::{SqliteStore, Status, Stent};

/// A posting: an entry id (the idempotency key), an account and an amount in cents.
type Posting = (String, String, i64);

/// Why a posting was not written.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    for file in ["ledger.db", "ledger.db-wal", "ledger.db-shm"] {
        let _ = std::fs::remove_file(file);
    }
    let store = SqliteStore::open("ledger.db").await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS ledger (
            id INTEGER PRIMARY KEY, entry TEXT NOT NULL, account TEXT NOT NULL, cents INTEGER NOT NULL)",
    )
    .execute(store.pool())
    .await?;
    let stent = Stent::new(store.clone());

    // The function writes through `tx`, the transaction that also claims the key and
    // records the result: the row and the record commit together, or neither does.
    let post = stent
        .durable("ledger::post")
        .key(|(entry, _, _): &Posting| entry.clone())
        .wrap_tx(&store, |tx, (entry, account, cents): Posting| {
            Box::pin(async move {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO ledger (entry, account, cents) VALUES (?1, ?2, ?3) RETURNING id",
                )
                .bind(&entry)
                .bind(&account)
                .bind(cents)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| Refused(e.to_string()))?;
                let balance: i64 =
                    sqlx::query_scalar("SELECT SUM(cents) FROM ledger WHERE account = ?1")
                        .bind(&account)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(|e| Refused(e.to_string()))?;
                if balance < 0 {
                    // Rolls back the insert above, and the claim with it.
                    return Err(Refused(format!(
                        "{account} would be overdrawn ({balance} cents)"
                    )));
                }
                Ok(id)
            })
        });

    println!("1. a posting retried three times is written once");
    let deposit = ("entry-1".to_owned(), "alice".to_owned(), 10_000);
    for _ in 0..3 {
        let t = post.call_traced(deposit.clone()).await?;
        println!(
            "  entry-1 -> {:<8} ledger row {}",
            t.outcome.status.as_str(),
            t.value
        );
    }
    assert_eq!(rows(&store, "entry-1").await?, 1);

    println!("2. a posting that fails leaves no row and no record: fixed, it runs");
    let overdraft = ("entry-2".to_owned(), "alice".to_owned(), -25_000);
    let err = post.call(overdraft).await.unwrap_err();
    println!("  entry-2 -> error: {err}");
    assert_eq!(rows(&store, "entry-2").await?, 0);
    let t = post
        .call_traced(("entry-2".into(), "alice".into(), -2_500))
        .await?;
    println!(
        "  entry-2 -> {:<8} ledger row {}",
        t.outcome.status.as_str(),
        t.value
    );
    assert_eq!(t.outcome.status, Status::Executed);

    println!("3. inside your own transaction: it commits, or rolls back, with yours");
    let refund = ("entry-3".to_owned(), "bob".to_owned(), 700);
    let mut tx = store.pool().begin().await?;
    post.call_in(&mut tx, refund.clone()).await?;
    tx.rollback().await?;
    println!(
        "  rolled back: {} row(s) for entry-3",
        rows(&store, "entry-3").await?
    );
    let mut tx = store.pool().begin().await?;
    post.call_in(&mut tx, refund.clone()).await?;
    tx.commit().await?;
    println!(
        "  committed:   {} row(s) for entry-3",
        rows(&store, "entry-3").await?
    );
    assert_eq!(rows(&store, "entry-3").await?, 1);
    let again = post.call_traced(refund).await?;
    assert_eq!(again.outcome.status, Status::Replayed);
    println!("  entry-3 again -> {}", again.outcome.status.as_str());
    Ok(())
}

/// How many ledger rows posting `entry` wrote.
async fn rows(store: &SqliteStore, entry: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM ledger WHERE entry = ?1")
        .bind(entry)
        .fetch_one(store.pool())
        .await
}
