#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod schema;
mod store;

use std::time::Duration;

pub use crate::config::DynamoDbStoreBuilder;
pub use crate::store::DynamoDbStore;

/// The table used unless [`DynamoDbStoreBuilder::table`] (or `STENT_DYNAMODB_TABLE`) names another.
pub const DEFAULT_TABLE: &str = "stent";

/// The URL scheme of a DynamoDB store (see [`DynamoDbStoreBuilder::url`]).
pub const SCHEME: &str = "dynamodb";

/// Every URL scheme [`DynamoDbStore::connect`] accepts: [`SCHEME`] alone.
pub const SCHEMES: &[&str] = &[SCHEME];

/// The environment variable [`DynamoDbStore::from_env`] reads an `http://` endpoint override from.
pub const ENV_URL: &str = "STENT_DYNAMODB_URL";

/// The environment variable [`DynamoDbStore::from_env`] reads the table name from.
pub const ENV_TABLE: &str = "STENT_DYNAMODB_TABLE";

/// The largest value stored: DynamoDB's 400 KB item limit less 8 KiB for the other attributes.
pub const MAX_VALUE_LEN: usize = 400 * 1024 - 8 * 1024;

/// DynamoDB's partition key limit (bytes): a store's key limit is this less prefix and namespace.
pub const MAX_PARTITION_KEY_LEN: usize = 2048;

/// The attribute (epoch seconds) [`DynamoDbStore::migrate`] enables DynamoDB's TTL on.
pub const TTL_ATTRIBUTE: &str = "ttl";

/// How long one request may take, retries included, unless [`DynamoDbStoreBuilder::timeout`] says.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
