#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod fingerprint;
mod key;
mod layer;
mod observe;
mod problem;
mod service;
mod stored;

pub use crate::fingerprint::Fingerprint;
pub use crate::layer::{
    DEFAULT_MAX_REQUEST_BODY, DEFAULT_METHODS, DEFAULT_REPLAY_HEADERS, DEFAULT_RETENTION,
    IDEMPOTENCY_KEY, IdempotencyLayer, REPLAYED,
};
pub use crate::observe::Outcome;
pub use crate::problem::{DEFAULT_PROBLEM_BASE, Problem};
pub use crate::service::IdempotencyService;
pub use stent_core::InFlight;

/// The default storage policy: 2xx, 3xx and 4xx responses are stored and replayed, except
/// 408 (Request Timeout), 409 (Conflict), 425 (Too Early) and 429 (Too Many Requests),
/// which a retry may well turn into something else; 1xx and 5xx are never stored.
pub fn stored_by_default(status: http::StatusCode) -> bool {
    (200..500).contains(&status.as_u16()) && !matches!(status.as_u16(), 408 | 409 | 425 | 429)
}
