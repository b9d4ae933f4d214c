#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod sql;
mod store;

pub use crate::config::{Durability, MAX_PREFIX_LEN, SqliteStoreBuilder};
pub use crate::store::SqliteStore;

/// The database file used when none is given.
pub const DEFAULT_PATH: &str = "stent.db";
