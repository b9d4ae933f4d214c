#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod broadcast;
mod config;
mod error;
mod sql;
mod store;

pub use crate::config::{MAX_PREFIX_LEN, MAX_SCHEMA_LEN, PostgresStoreBuilder};
pub use crate::store::{MAX_KEY_LEN, MAX_VALUE_LEN, PostgresStore};

/// The main URL scheme of a PostgreSQL store: `postgres://user:password@host:port/database`.
pub const SCHEME: &str = "postgres";

/// Every URL scheme [`PostgresStore::connect`] accepts: [`SCHEME`] and its alias `postgresql`.
pub const SCHEMES: &[&str] = &[SCHEME, "postgresql"];

/// The environment variable [`PostgresStore::from_env`] reads the server's URL from.
pub const ENV_URL: &str = "STENT_POSTGRES_URL";
