//! What became of each guarded request: a response extension, a tracing event and, with
//! the `metrics` feature, counters through the `metrics` facade crate.
//!
//! | metric | kind | labels | counts |
//! |---|---|---|---|
//! | `stent_http_requests_total` | counter | `name`, `outcome` | guarded requests, by [`Outcome::as_str`] |
//! | `stent_http_unrecorded_total` | counter | `name`, `reason` | executed responses the policy would store that were not stored: `too_large`, `lease_lost`, `store_error` |

/// What the layer did with a request that carried an `Idempotency-Key` (or had to): found
/// in the response's extensions (`response.extensions().get::<Outcome>()`), logged as a
/// `tracing` event and counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler ran (attempt 1, or more after a lapsed lease).
    Executed {
        /// 1 for the first run, +1 for each takeover of a lapsed lease.
        attempt: u32,
    },
    /// The stored response was replayed.
    Replayed,
    /// Another request with the key was in progress: 409.
    Conflict,
    /// The key was used with another request: 422.
    Mismatch,
    /// The key or body was refused before anything ran: 400 or 413.
    Rejected,
    /// The store failed or a stored response could not be read: 5xx.
    Error,
}

impl Outcome {
    /// `executed`, `replayed`, `conflict`, `mismatch`, `rejected` or `error`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Executed { .. } => "executed",
            Outcome::Replayed => "replayed",
            Outcome::Conflict => "conflict",
            Outcome::Mismatch => "mismatch",
            Outcome::Rejected => "rejected",
            Outcome::Error => "error",
        }
    }
}

/// A guarded request of the layer `name` ended with `outcome`.
pub(crate) fn request(name: &str, outcome: Outcome) {
    tracing::debug!(outcome = outcome.as_str(), "idempotent request");
    #[cfg(feature = "metrics")]
    metrics::counter!("stent_http_requests_total", "name" => name.to_owned(), "outcome" => outcome.as_str())
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = name;
}

/// A response the policy would store was sent without being stored, for `reason`.
pub(crate) fn unrecorded(name: &str, reason: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("stent_http_unrecorded_total", "name" => name.to_owned(), "reason" => reason)
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (name, reason);
}
