//! Calls per second on the embedded default: the README's quick look (open a new file, a
//! first call, a replay, a cache miss and a hit), and a cached function and an idempotent one
//! each called 100,000 times with the same arguments, on a SQLite file in a temporary
//! directory.
//!
//! ```text
//! cargo run --release -p stent-benches --example sqlite_calls
//! ```

use std::convert::Infallible;
use std::time::{Duration, Instant};

use stent::{SqliteStore, Stent};

const CALLS: u32 = 100_000;

fn main() {
    let rt = stent_benches::runtime();
    rt.block_on(async {
        let mut quick: Vec<Duration> = Vec::new();
        for _ in 0..20 {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let started = Instant::now();
            let stent = Stent::new(
                SqliteStore::open(dir.path().join("q.db"))
                    .await
                    .expect("open"),
            );
            let charge = stent.durable("billing::charge").idempotent().wrap(receipt);
            let quote = stent
                .durable("fx::quote")
                .cached()
                .ttl(Duration::from_secs(3600))
                .wrap(receipt);
            for _ in 0..2 {
                charge.call(("ord-1".into(), 500)).await.expect("charge");
                quote.call(("EUR".into(), 1)).await.expect("quote");
            }
            quick.push(started.elapsed());
        }
        quick.sort();
        println!(
            "quick look (open, first call, replay, miss, hit): median {:?}",
            quick[10]
        );

        let dir = tempfile::tempdir().expect("a temporary directory");
        let stent = Stent::new(
            SqliteStore::open(dir.path().join("calls.db"))
                .await
                .expect("open"),
        );
        let quote = stent
            .durable("fx::quote")
            .cached()
            .ttl(Duration::from_secs(3600))
            .wrap(receipt);
        let charge = stent.durable("billing::charge").idempotent().wrap(receipt);
        for (name, f) in [
            ("cached function (hits)", &quote),
            ("idempotent function (replays)", &charge),
        ] {
            f.call(("ord-1".into(), 500)).await.expect("first call");
            let started = Instant::now();
            for _ in 0..CALLS {
                f.call(("ord-1".into(), 500)).await.expect("call");
            }
            let took = started.elapsed();
            println!(
                "{name}: {CALLS} calls in {took:.2?}, {:.0} calls/s",
                f64::from(CALLS) / took.as_secs_f64()
            );
        }
    });
}

async fn receipt((id, amount): (String, u64)) -> Result<String, Infallible> {
    Ok(format!("receipt-{id}-{amount}"))
}
