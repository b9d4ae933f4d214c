#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

/// Declares a fieldless enum whose variants have stable names: `ALL` lists the variants in
/// declaration order, `as_str` names each (documented by the attributes before `fn as_str`),
/// and `Display` writes the name.
macro_rules! named_enum {
    (
        $(#[$meta:meta])* pub enum $ty:ident { $($(#[$vmeta:meta])* $variant:ident = $name:literal,)+ }
        $(#[$as_str:meta])* fn as_str;
    ) => {
        $(#[$meta])*
        pub enum $ty {$($(#[$vmeta])* $variant,)+}

        impl $ty {
            /// Every variant, in declaration order.
            pub const ALL: [Self; [$($name),+].len()] = [$(Self::$variant),+];

            $(#[$as_str])*
            pub const fn as_str(self) -> &'static str {
                match self {$(Self::$variant => $name,)+}
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod broadcast;
pub mod clock;
pub mod codec;
mod durable;
pub mod error;
pub mod key;
#[cfg(feature = "local")]
#[cfg_attr(docsrs, doc(cfg(feature = "local")))]
pub mod local;
mod memory;
pub mod observe;
mod outcome;
pub mod progress;
pub mod record;
pub mod store;
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;

pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::durable::{
    DEFAULT_LEASE, DEFAULT_WAIT, Durable, DurableBuilder, Execution, HeldClaim, InFlight, Outcome,
    Status, Stent, Traced,
};
#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
pub use crate::durable::{OnConnection, SqlConnection, SqlStore, TxDurable};
pub use crate::error::{Error, ErrorKind, Result};
pub use crate::key::{DefaultKey, KeyScope, KeyStrategy};
#[cfg(feature = "local")]
#[cfg_attr(docsrs, doc(cfg(feature = "local")))]
pub use crate::local::LocalTier;
pub use crate::memory::MemoryStore;
pub use crate::progress::{ExecutionState, ProgressEntry};
pub use crate::record::{
    Capabilities, Claim, ClaimOutcome, LeaseToken, ListQuery, Namespace, Page, Record, RecordMeta,
    RecordState, Timestamp,
};
pub use crate::store::ResultStore;

#[doc(hidden)]
pub use async_trait::async_trait;
/// The sqlx crate the SQL stores and [`wrap_tx`](DurableBuilder::wrap_tx) are built on: write
/// a transactional function's queries with this one, so its types match.
#[cfg(feature = "sqlx")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlx")))]
pub use sqlx;

/// Builder methods that each set one field: `name(args) => field.path = value;` gives
/// `pub fn name(mut self, args) -> Self`. Shared by the builders of stent and its backends.
#[doc(hidden)]
#[macro_export]
macro_rules! builder_setters {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) => $($field:ident).+ = $value:expr;)+) => {
        $($(#[$doc])* pub fn $name(mut self, $($arg: $ty),*) -> Self {
            self.$($field).+ = $value;
            self
        })+
    };
}
