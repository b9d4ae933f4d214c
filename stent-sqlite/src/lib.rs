#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod sql;
mod store;

pub use crate::config::{Durability, MAX_PREFIX_LEN, SqliteStoreBuilder};
pub use crate::store::SqliteStore;

/// The URL scheme of a SQLite store: `sqlite://path/to/file.db` (see [`SqliteStoreBuilder::url`]).
pub const SCHEME: &str = "sqlite";

/// Every URL scheme [`SqliteStore::connect`] accepts: [`SCHEME`] alone.
pub const SCHEMES: &[&str] = &[SCHEME];

/// The environment variable [`SqliteStore::from_env`] reads a `sqlite:` URL from; unset
/// or empty, the store opens [`DEFAULT_PATH`].
pub const ENV_URL: &str = "STENT_SQLITE_URL";

/// The database file used when none is given.
pub const DEFAULT_PATH: &str = "stent.db";
