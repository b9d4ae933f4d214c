//! How a call was served: [`Status`], [`Outcome`] and [`Traced`].

named_enum! {
    /// What a call did, as [`Durable::call_traced`](crate::Durable::call_traced) reports it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Status {
        /// The function ran in this call.
        Executed = "executed",
        /// The result came from the cache namespace.
        CacheHit = "cache_hit",
        /// The result of an earlier execution was replayed from the idempotency namespace.
        Replayed = "replayed",
        /// Another caller was executing the key; this call waited and got its result.
        Joined = "joined",
        /// A cached value past its TTL but within a stale window was returned: the function
        /// failed ([`stale_if_error`](crate::DurableBuilder::stale_if_error)), or a refresh
        /// runs in the background
        /// ([`stale_while_revalidate`](crate::DurableBuilder::stale_while_revalidate)).
        Stale = "stale",
    }
    /// `"executed"`, `"cache_hit"`, `"replayed"`, `"joined"` or `"stale"`.
    fn as_str;
}

impl Status {
    /// Whether the result came from the store rather than from running the function here.
    pub const fn is_hit(self) -> bool {
        !matches!(self, Status::Executed)
    }
}

/// How a call was served.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// Executed, cache hit, replayed or joined.
    pub status: Status,
    /// The attempt that produced the result (1 unless a takeover happened).
    pub attempt: u32,
    /// The key the result is stored under.
    pub key: String,
}

/// A call's value together with how it was served.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Traced<R> {
    /// The function's result.
    pub value: R,
    /// How it was obtained.
    pub outcome: Outcome,
}

impl<R> Traced<R> {
    pub(crate) fn new(value: R, status: Status, attempt: u32, key: String) -> Self {
        let outcome = Outcome {
            status,
            attempt,
            key,
        };
        Traced { value, outcome }
    }
}
