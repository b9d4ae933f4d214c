//! Metrics, through the `metrics` facade crate (cargo feature `metrics`).
//!
//! | metric | kind | labels | counts |
//! |---|---|---|---|
//! | `stent_calls_total` | counter | `function`, `outcome` | every call; outcome = `executed`, `cache_hit`, `replayed`, `joined`, `stale`, `failed` (the function's error) or `error` |
//! | `stent_executions_total` | counter | `function` | runs of the wrapped function |
//! | `stent_cache_hits_total` | counter | `function` | results served from the cache namespace |
//! | `stent_replays_total` | counter | `function` | results replayed from the idempotency namespace |
//! | `stent_stale_total` | counter | `function` | failed calls answered with a stale cached value (`stale_if_error`) |
//! | `stent_in_flight_waits_total` | counter | `function` | calls that found the key in flight elsewhere and waited |
//! | `stent_takeovers_total` | counter | `function` | executions that took over a lapsed lease (attempt > 1) |
//! | `stent_lease_lost_total` | counter | `function` | completions refused by fencing |
//! | `stent_payload_mismatches_total` | counter | `function` | calls refused by payload validation |
//! | `stent_store_errors_total` | counter | `function`, `kind` | calls failed by the store (`unavailable`, `busy`, `store`, `decode`, …) |
//! | `stent_call_duration_seconds` | histogram | `function`, `outcome` | call latency |
//! | `stent_local_total` | counter | `event` | [`LocalTier`](crate::local) lookups and removals: `hit`, `miss`, `bypass` (not answered: the broadcast subscription is down), `eviction` (for room), `invalidation` (a write dropped a kept record), `broadcast` (an announcement of another process's write received), `subscription_lost`, `subscribed` |
//!
//! Without the feature every function here compiles to nothing.
#![cfg_attr(not(feature = "metrics"), allow(unused_variables))]

use std::time::Duration;

use crate::error::Error;
#[cfg(feature = "metrics")]
use crate::error::ErrorKind;
#[cfg(feature = "metrics")]
use crate::outcome::Status;
use crate::outcome::Traced;
#[cfg(feature = "metrics")]
use metrics::{counter, histogram};

/// Whether calls are measured: the wrapper reads a clock for each call only when they are.
pub(crate) const ENABLED: bool = cfg!(feature = "metrics");

/// A call of `function` finished with `result` after `elapsed`.
pub(crate) fn call<R, E>(function: &str, result: &Result<Traced<R>, Error<E>>, elapsed: Duration) {
    #[cfg(feature = "metrics")]
    {
        let f = function.to_owned();
        let outcome = match result {
            Ok(t) => t.outcome.status.as_str(),
            Err(e) if e.kind() == ErrorKind::Function => "failed",
            Err(_) => "error",
        };
        counter!("stent_calls_total", "function" => f.clone(), "outcome" => outcome).increment(1);
        let count = |name: &'static str| counter!(name, "function" => f.clone()).increment(1);
        match result {
            Ok(t) => match t.outcome.status {
                Status::CacheHit => count("stent_cache_hits_total"),
                Status::Replayed => count("stent_replays_total"),
                Status::Stale => count("stent_stale_total"),
                Status::Executed | Status::Joined => {}
            },
            Err(e) => match e.kind() {
                ErrorKind::Function | ErrorKind::Key | ErrorKind::Encode | ErrorKind::InFlight => {}
                ErrorKind::LeaseLost => count("stent_lease_lost_total"),
                ErrorKind::PayloadMismatch => count("stent_payload_mismatches_total"),
                kind => counter!("stent_store_errors_total", "function" => f.clone(), "kind" => kind.as_str())
                    .increment(1),
            },
        }
        histogram!("stent_call_duration_seconds", "function" => f, "outcome" => outcome)
            .record(elapsed.as_secs_f64());
    }
}

/// The wrapped function is about to run, as attempt `attempt`.
pub(crate) fn execution(function: &str, attempt: u32) {
    #[cfg(feature = "metrics")]
    {
        counter!("stent_executions_total", "function" => function.to_owned()).increment(1);
        if attempt > 1 {
            counter!("stent_takeovers_total", "function" => function.to_owned()).increment(1);
        }
    }
}

/// A call found its key in flight elsewhere and starts waiting.
pub(crate) fn in_flight_wait(function: &str) {
    #[cfg(feature = "metrics")]
    counter!("stent_in_flight_waits_total", "function" => function.to_owned()).increment(1);
}

/// Counts a [`LocalTier`](crate::local) `event` in `stent_local_total` (see the table above).
#[cfg(feature = "local")]
pub(crate) fn local(event: &'static str) {
    #[cfg(feature = "metrics")]
    counter!("stent_local_total", "event" => event).increment(1);
}
