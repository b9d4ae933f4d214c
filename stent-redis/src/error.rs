//! The one place Redis errors become stent errors.

use redis::{ErrorKind as RedisKind, RedisError};
use stent_core::{Error, ErrorKind};

/// Converts a driver error. `what` says what was being done ("claim", "connecting to
/// redis://…"); `key` is the stent key concerned, when there is one.
pub(crate) fn from_redis(err: RedisError, what: &str, key: Option<&str>) -> Error {
    let (kind, hint) = classify(&err);
    let message = hint.map_or_else(|| format!("{what} failed"), |h| format!("{what}: {h}"));
    let e = Error::new(kind, message).with_source(err);
    if let Some(k) = key { e.with_key(k) } else { e }
}

fn classify(err: &RedisError) -> (ErrorKind, Option<&'static str>) {
    use ErrorKind::{Busy, Config, Decode, Store, Unavailable};
    const AUTH: &str = "authentication failed; check the username and password";
    const UNREACHABLE: &str = "the Redis server cannot be reached";
    const NOT_READY: &str = "the Redis server is not ready";
    let dropped = err.is_timeout() || err.is_connection_refusal() || err.is_connection_dropped();
    // A server error's kind is told by its code.
    let (kind, hint) = match (err.kind(), err.code().unwrap_or_default()) {
        (RedisKind::AuthenticationFailed, _) | (_, "NOAUTH" | "WRONGPASS") => (Config, AUTH),
        (RedisKind::InvalidClientConfig, _) => (Config, "invalid connection settings"),
        (_, "NOPERM") => (Config, "the Redis user lacks a permission the store needs"),
        (RedisKind::Io | RedisKind::ClusterConnectionNotFound, _) => (Unavailable, UNREACHABLE),
        _ if dropped => (Unavailable, UNREACHABLE),
        (_, "LOADING" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "READONLY") => {
            (Unavailable, NOT_READY)
        }
        (_, "WRONGTYPE") => (Decode, "the Redis key holds a value of another type"),
        (_, "BUSY") => (Busy, "the Redis server is busy running a script"),
        _ => return (Store, None),
    };
    (kind, Some(hint))
}

/// A key of the store's prefix that holds something other than a record.
pub(crate) fn wrong_type(key: &str, redis_key: &[u8], found: &str) -> Error {
    let redis_key = String::from_utf8_lossy(redis_key);
    let message = format!("Redis key {redis_key:?} holds a {found}, not a stent record");
    Error::decode(key, format!("{message}; it was left untouched"))
}

/// Redis answered something this version does not understand.
pub(crate) fn unexpected(what: &str, key: &str, reply: impl std::fmt::Debug) -> Error {
    let message = format!("{what}: unexpected reply from Redis: {reply:?}");
    Error::new(ErrorKind::Store, message).with_key(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_retryable_and_auth_errors_are_config() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let e = from_redis(refused, "claim", Some("k"));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_retryable());
        assert_eq!(e.key(), Some("k"));

        let auth = RedisError::from((
            RedisKind::AuthenticationFailed,
            "Password authentication failed",
        ));
        let e = from_redis(auth, "connecting to redis://:***@h", None);
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(!e.is_retryable());

        let other = RedisError::from((RedisKind::Client, "something else"));
        assert_eq!(from_redis(other, "x", None).kind(), ErrorKind::Store);
    }
}
