//! The process-level fault suite of stent: what a real deployment does to a durable
//! function, done for real, on every backend.
//!
//! - **Killed owner**: a process running a claimed call is killed with `SIGKILL`; another
//!   process waiting on the key takes over once the lease lapses, at attempt 2, and the
//!   dead attempt's lease token is refused from then on.
//! - **Long work**: a function running five times its lease is renewed, not duplicated.
//! - **Server restarts**: PostgreSQL, Redis and a DynamoDB-API server are restarted under
//!   concurrent calls from several processes.
//! - **Many processes**: 8 processes × 64 tasks over 200 keys, each key executed once.
//! - **Transactional calls**: the same shape through
//!   [`wrap_tx`](stent_core::DurableBuilder::wrap_tx) on PostgreSQL and SQLite, workers
//!   killed at random points of their transactions (and PostgreSQL restarted): one effect
//!   row in the database for each recorded key, and none for the others.
//! - **Expiry storm**: 8 processes × 32 tasks call one cached key whose TTL is 200 ms;
//!   with [`single_flight`](stent_core::DurableBuilder::single_flight) and
//!   [`stale_while_revalidate`](stent_core::DurableBuilder::stale_while_revalidate) it
//!   runs once per expiry, and with
//!   [`stale_if_error`](stent_core::DurableBuilder::stale_if_error) every caller gets a
//!   value through an outage of the origin ([`storm`]).
//! - **Network faults**: a server in a network namespace of the scenario's own, and 200 ms
//!   of latency, 5 % packet loss and a 3 s partition on the link while 3 processes call,
//!   with leases shorter than the partition: a key runs again only after its owner's lease
//!   lapsed and its result went unrecorded, and no caller's value is lost. Every lease
//!   operation is journaled ([`journal`]).
//!
//! Executions are counted in a [`Ledger`]: a file outside every store and server under
//! test, one line per execution. The scenarios live in `tests/reliability/`; the child
//! processes they start run the `stent-reliability-worker` binary with a [`Job`].
//! `RELIABILITY.md` at the repository root states the guarantees and the measured results.

pub mod effects;
pub mod harness;
pub mod job;
pub mod journal;
pub mod ledger;
pub mod storm;
pub mod target;

pub use crate::harness::Worker;
pub use crate::job::{Job, Report, Task};
pub use crate::ledger::{Entry, Ledger};
pub use crate::target::{Backend, Target};

/// Milliseconds since the Unix epoch on this machine's clock: the one time base every
/// process of a scenario shares.
pub fn now_ms() -> i64 {
    stent_core::Timestamp::now().as_millis()
}

/// Whether `STENT_REQUIRE_BACKENDS=1` is set: a backend that cannot be reached fails the
/// scenario instead of skipping it.
pub fn backends_required() -> bool {
    std::env::var("STENT_REQUIRE_BACKENDS").is_ok_and(|v| v == "1" || v == "true")
}
