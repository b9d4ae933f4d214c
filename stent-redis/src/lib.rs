#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod broadcast;
mod config;
mod conn;
mod error;
mod layout;
mod scripts;
mod store;

use std::time::Duration;

pub use crate::config::RedisStoreBuilder;
pub use crate::store::RedisStore;

/// The key prefix used unless [`RedisStoreBuilder::prefix`] sets another.
pub const DEFAULT_PREFIX: &str = "stent";

/// The main URL scheme of a Redis store: `redis://host:port/db`.
pub const SCHEME: &str = "redis";

/// Every URL scheme that names a Redis store ([`RedisStoreBuilder::url`]): [`SCHEME`],
/// `redis+unix`, `redis+cluster` and `rediss` (TLS, refused: it is not compiled in).
pub const SCHEMES: &[&str] = &[SCHEME, "rediss", "redis+unix", "redis+cluster"];

/// The environment variable [`RedisStore::from_env`] reads the URL from.
pub const ENV_URL: &str = "STENT_REDIS_URL";

/// The largest value stored unless [`RedisStoreBuilder::max_value_len`] sets another: 64 MiB.
pub const DEFAULT_MAX_VALUE_LEN: usize = 64 << 20;

/// The ceiling for [`RedisStoreBuilder::max_value_len`]: Redis's own limit on one
/// string (`proto-max-bulk-len`, 512 MB), less room for the rest of the request.
pub const MAX_VALUE_LEN_LIMIT: usize = 512_000_000 - 64 * 1024;

/// How long an expired record stays in Redis unless [`RedisStoreBuilder::expiry_grace`] sets
/// another: none, so Redis deletes a record the moment it expires and a read is a lone `GET`.
pub const DEFAULT_EXPIRY_GRACE: Duration = Duration::ZERO;
