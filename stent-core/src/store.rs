//! The storage contract every backend implements.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, ErrorKind, Result};
use crate::record::{
    Capabilities, Claim, ClaimOutcome, LeaseToken, ListQuery, Namespace, Page, Record, RecordMeta,
    Timestamp,
};

/// A place to keep results: the one trait every backend implements.
///
/// Every method is **one atomic step in the backend's native primitive** (one SQL
/// statement, one Lua script, one conditional write): two callers racing on the same key
/// can never both succeed where the contract says only one may. Contention is a normal
/// return value ([`ClaimOutcome::InFlight`], `false` from `release`), never an error.
///
/// The trait is object safe; the wrapper API holds an `Arc<dyn ResultStore>`. Keys are
/// arbitrary UTF-8 and must round-trip exactly (quotes, `%`, `|`, `*`, newlines, emoji, up
/// to [`Capabilities::max_key_len`]). Timestamps are UTC milliseconds; stores that decide
/// time on the client take a [`Clock`](crate::Clock).
///
/// Every `# Behavior` bullet below has exactly one case whose doc line is the bullet's text,
/// in the `stent-conformance` file named after the method, which every backend runs.
#[async_trait]
pub trait ResultStore: Send + Sync + fmt::Debug + 'static {
    /// What this store can do.
    fn capabilities(&self) -> Capabilities;

    /// Reads one record.
    ///
    /// # Behavior
    ///
    /// - A missing key returns `None`.
    /// - An expired record returns `None`, even if it is not yet physically removed.
    /// - A record in progress is returned with its lease (no value).
    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Record>>;

    /// Claims a key for execution.
    ///
    /// # Behavior
    ///
    /// - An absent key is taken: `Acquired { attempt: 1 }`, with `claim.token` installed and
    ///   the lease running from now.
    /// - An expired record is taken afresh: `Acquired { attempt: 1 }`, with no trace of the
    ///   old value or expiry.
    /// - An in-progress record whose lease has lapsed is taken over:
    ///   `Acquired { attempt: previous + 1 }`, with the new token installed; the old token is
    ///   stale from then on (see `renew`, `complete`, `release`).
    /// - An in-progress record with a live lease: `InFlight(record)`, nothing changes.
    /// - A completed, unexpired record: `Completed(record)` with its value, nothing changes.
    /// - Of any number of concurrent claims on one key, exactly one acquires; the others see
    ///   it in flight.
    async fn claim(&self, ns: Namespace, key: &str, claim: &Claim<'_>) -> Result<ClaimOutcome>;

    /// Extends the lease of an in-progress record the token owns.
    ///
    /// # Behavior
    ///
    /// - With the owning token: the lease now lapses `lease` from now; returns that time.
    /// - With a stale token (taken over, released, completed): `ErrorKind::LeaseLost`,
    ///   nothing changes.
    async fn renew(
        &self,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        lease: Duration,
    ) -> Result<Timestamp>;

    /// Stores the value of an in-progress record the token owns.
    ///
    /// # Behavior
    ///
    /// - With the owning token: the record becomes completed with `value`, the lease is
    ///   cleared, and it expires `ttl` from now (never, if `None`).
    /// - With a stale token (taken over, released): `ErrorKind::LeaseLost` and **nothing is
    ///   written** (fencing).
    /// - A second `complete` with the same token: `ErrorKind::LeaseLost`, and the first value
    ///   stands.
    /// - A value over [`Capabilities::max_value_len`]: `ErrorKind::ValueTooLarge`, and the
    ///   record stays in progress.
    async fn complete(
        &self,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()>;

    /// Gives up a claim, so the next caller can claim the key at once.
    ///
    /// # Behavior
    ///
    /// - With the owning token: deletes the in-progress record and returns `true`; the key
    ///   can be claimed at once.
    /// - With any other token (a stranger's, or one taken over): returns `false` and deletes
    ///   nothing.
    /// - A completed record is never deleted, not even with the token that completed it:
    ///   returns `false`.
    async fn release(&self, ns: Namespace, key: &str, token: &LeaseToken) -> Result<bool>;

    /// Writes a completed record unconditionally (the cache's write).
    ///
    /// # Behavior
    ///
    /// - Creates a completed record with `value` and `meta`, which `get` returns as written.
    /// - Replaces an existing record: its value and its expiry.
    /// - The record expires `ttl` from now (never, if `None`).
    /// - Every byte value, including NUL and invalid UTF-8, round-trips exactly.
    /// - An empty value is stored as empty, not as absent.
    /// - The same key in the two namespaces names two different records.
    /// - A value over [`Capabilities::max_value_len`]: `ErrorKind::ValueTooLarge`, and nothing
    ///   is written.
    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        meta: RecordMeta<'_>,
    ) -> Result<()>;

    /// Deletes one record, whatever its state (admin).
    ///
    /// # Behavior
    ///
    /// - Returns whether a record was there, and removes it.
    /// - An in-progress record is deleted too: the key can be claimed at once.
    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool>;

    /// Lists records in key order (admin; not on any call's path).
    ///
    /// # Behavior
    ///
    /// - Returns records whose key starts with `query.prefix`, after `query.cursor`, at most
    ///   `query.limit`, in ascending key order; `next_cursor` is `Some` while more may follow.
    /// - The prefix is literal: SQL `LIKE` and glob wildcards in it are ordinary characters.
    /// - Expired records are left out unless `query.include_expired`.
    async fn list(&self, ns: Namespace, query: &ListQuery) -> Result<Page>;

    /// Deletes every record of the namespace in this store (admin).
    ///
    /// # Behavior
    ///
    /// - Deletes every record of the namespace and returns how many; the other namespace is
    ///   untouched.
    async fn clear(&self, ns: Namespace) -> Result<u64>;

    /// Deletes up to `limit` expired records (admin).
    ///
    /// SQLite and PostgreSQL read expired records from an index of expiry: a call costs what
    /// `limit` records cost, and a small limit keeps each transaction short. Stores with
    /// [`Capabilities::native_ttl`] (Redis, DynamoDB) sweep the namespace from its first key
    /// on each call: to purge everything, make one call with `usize::MAX` (as the CLI does).
    ///
    /// # Behavior
    ///
    /// - Deletes only records whose expiry has passed, of this namespace; returns how many.
    /// - Deletes at most `limit` records per call.
    async fn purge_expired(&self, ns: Namespace, limit: usize) -> Result<u64>;
}

/// Implements [`ResultStore`] for `$ty` by calling each method on `$target` (an expression of
/// `self`), every call's future handed to `$via!(self, Op, future)` (`Arc`, `Box`, `FaultStore`).
macro_rules! delegate_store {
    ([$($generics:tt)*] $ty:ty, |$this:ident| $target:expr, $via:ident) => {
        $crate::store::delegate_store!(@impl [$($generics)*] $ty, $this, $target, $via,
            get(ns: Namespace, key: &str) -> Option<Record> = Get,
            claim(ns: Namespace, key: &str, claim: &Claim<'_>) -> ClaimOutcome = Claim,
            renew(ns: Namespace, key: &str, token: &LeaseToken, lease: Duration) -> Timestamp = Renew,
            complete(ns: Namespace, key: &str, token: &LeaseToken, value: &[u8],
                ttl: Option<Duration>) -> () = Complete,
            release(ns: Namespace, key: &str, token: &LeaseToken) -> bool = Release,
            put(ns: Namespace, key: &str, value: &[u8], ttl: Option<Duration>,
                meta: RecordMeta<'_>) -> () = Put,
            delete(ns: Namespace, key: &str) -> bool = Delete,
            list(ns: Namespace, query: &ListQuery) -> Page = List,
            clear(ns: Namespace) -> u64 = Clear,
            purge_expired(ns: Namespace, limit: usize) -> u64 = PurgeExpired,
        );
    };
    (@impl [$($generics:tt)*] $ty:ty, $this:ident, $target:expr, $via:ident,
        $($method:ident($($arg:ident: $arg_ty:ty),*) -> $out:ty = $op:ident,)+) => {
        #[async_trait]
        impl<$($generics)*> ResultStore for $ty {
            fn capabilities(&$this) -> Capabilities {
                $target.capabilities()
            }
            $(async fn $method(&$this, $($arg: $arg_ty),*) -> Result<$out> {
                $via!($this, $op, $target.$method($($arg),*))
            })+
        }
    };
}
pub(crate) use delegate_store;

macro_rules! directly {
    ($this:ident, $op:ident, $call:expr) => {
        $call.await
    };
}

delegate_store!([T: ResultStore + ?Sized] Arc<T>, |self| (**self), directly);
delegate_store!([T: ResultStore + ?Sized] Box<T>, |self| (**self), directly);

/// Deletes every record of `ns` whose key starts with `prefix`, expired ones included, in
/// pages of `batch` keys (one [`list`](ResultStore::list), then one
/// [`delete`](ResultStore::delete) per key); returns how many. `progress` hears the running
/// count after each page.
pub async fn delete_prefix(
    store: &dyn ResultStore,
    ns: Namespace,
    prefix: &str,
    batch: usize,
    mut progress: impl FnMut(u64),
) -> Result<u64> {
    let mut query = ListQuery::new().prefix(prefix).include_expired(true);
    query.limit = batch.max(1);
    let mut deleted = 0;
    loop {
        let page = store.list(ns, &query).await?;
        for record in &page.records {
            deleted += u64::from(store.delete(ns, &record.key).await?);
        }
        progress(deleted);
        match page.next_cursor {
            Some(next) => query.cursor = Some(next),
            None => return Ok(deleted),
        }
    }
}

/// `Ok` when `value` fits [`Capabilities::max_value_len`], else an
/// [`ErrorKind::ValueTooLarge`] error naming `key`.
pub fn check_value_len(caps: &Capabilities, key: &str, value: &[u8]) -> Result<()> {
    let max = caps.max_value_len;
    check_len(ErrorKind::ValueTooLarge, "value", value.len(), max, key)
}

/// `Ok` when `key` fits [`Capabilities::max_key_len`], else an
/// [`ErrorKind::KeyTooLarge`] error naming it.
pub fn check_key_len(caps: &Capabilities, key: &str) -> Result<()> {
    let max = caps.max_key_len;
    check_len(ErrorKind::KeyTooLarge, "key", key.len(), max, key)
}

fn check_len(kind: ErrorKind, what: &str, len: usize, max: Option<usize>, key: &str) -> Result<()> {
    match max {
        Some(max) if len > max => {
            let message = format!("{what} of {len} bytes exceeds the store's limit of {max} bytes");
            Err(Error::new(kind, message).with_key(key))
        }
        _ => Ok(()),
    }
}

/// Takes the parameters named `names` out of a connection URL's query, for a backend whose
/// URL carries options of its own (a key prefix, a schema): the URL without them (the rest
/// as written), and each taken `(name, value)` in order, values as written.
///
/// ```
/// use stent_core::store::take_url_params;
///
/// let (url, taken) = take_url_params("redis://h:6379/0?protocol=resp3&prefix=app#x", &["prefix"]);
/// assert_eq!(url, "redis://h:6379/0?protocol=resp3#x");
/// assert_eq!(taken, [("prefix", "app".to_owned())]);
/// ```
pub fn take_url_params<'n>(url: &str, names: &[&'n str]) -> (String, Vec<(&'n str, String)>) {
    let (head, fragment) = url.split_at(url.find('#').unwrap_or(url.len()));
    let Some((base, query)) = head.split_once('?') else {
        return (url.to_owned(), Vec::new());
    };
    let (mut kept, mut taken) = (Vec::new(), Vec::new());
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let ours = pair
            .split_once('=')
            .and_then(|(name, value)| Some((*names.iter().find(|n| **n == name)?, value)));
        match ours {
            Some((name, value)) => taken.push((name, value.to_owned())),
            None => kept.push(pair),
        }
    }
    let sep = if kept.is_empty() { "" } else { "?" };
    (format!("{base}{sep}{}{fragment}", kept.join("&")), taken)
}

/// The bytes `s` stands for with its `%XX` escapes decoded (UTF-8 or not); a `%` not
/// followed by two hex digits is kept as written: `a%20b%3a` is `a b:`, `50%zz%` stays.
pub fn percent_decode(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}

/// `url` with every password it spells replaced by `***`, for messages and `Debug`: the one
/// in its user info and any `password=` option of its query, so
/// `postgres://u:pw@h/db?password=x` shows as `postgres://u:***@h/db?password=***`.
pub fn redact(url: &str) -> String {
    let mut shown = url.to_owned();
    for span in password_spans(url).into_iter().rev() {
        shown.replace_range(span, "***");
    }
    shown
}

/// The passwords `url` spells (see [`redact`]), as written and percent-decoded, longest
/// first: what to scrub from any text a driver wrote about a connection to it.
pub fn url_secrets(url: &str) -> Vec<String> {
    let decoded = |s: &str| String::from_utf8_lossy(&percent_decode(s)).into_owned();
    let spelled = password_spans(url).into_iter().map(|r| &url[r]);
    let mut secrets: Vec<String> = spelled.flat_map(|s| [s.to_owned(), decoded(s)]).collect();
    secrets.retain(|s| !s.is_empty());
    // Longest first, so a password containing another is scrubbed whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

/// Where `url` spells each password that [`redact`] hides.
fn password_spans(url: &str) -> Vec<std::ops::Range<usize>> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = start + url[start..].find(['?', '#']).unwrap_or(url.len() - start);
    let mut spans = Vec::new();
    if let Some(at) = url[start..end].rfind('@')
        && let Some(colon) = url[start..start + at].find(':')
    {
        spans.push(start + colon + 1..start + at);
    }
    if let Some(q) = url[end..].find('?') {
        let mut pos = end + q + 1;
        let query_end = url[pos..].find('#').map_or(url.len(), |i| pos + i);
        const PASSWORD: &str = "password=";
        for pair in url[pos..query_end].split('&') {
            let name = pair.get(..PASSWORD.len()).unwrap_or("");
            if name.eq_ignore_ascii_case(PASSWORD) {
                spans.push(pos + PASSWORD.len()..pos + pair.len());
            }
            pos += pair.len() + 1;
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password_everywhere_it_can_be() {
        let cases = [
            (
                "postgres://user:secret@host/db",
                "postgres://user:***@host/db",
            ),
            (
                "postgres://user@host:5432/db",
                "postgres://user@host:5432/db",
            ),
            (
                "postgresql://u:p%40ss@h/db?sslmode=require&password=x&application_name=a",
                "postgresql://u:***@h/db?sslmode=require&password=***&application_name=a",
            ),
            ("postgres://:pw@h", "postgres://:***@h"),
            ("redis://:hunter2@h:6379/0", "redis://:***@h:6379/0"),
            ("redis://user:p@ss@h", "redis://user:***@h"),
            ("redis://user:a/b@h", "redis://user:***@h"),
            ("redis://h:6379", "redis://h:6379"),
            ("redis://h/?x=a@b", "redis://h/?x=a@b"),
            (
                "redis+cluster://:pw@a:1,b:2",
                "redis+cluster://:***@a:1,b:2",
            ),
            ("sqlite://a/b.db", "sqlite://a/b.db"),
            ("memory://", "memory://"),
            ("not a url", "not a url"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    #[test]
    fn url_params_are_taken_and_percent_escapes_decoded() {
        assert_eq!(
            take_url_params("redis://h?prefix=a", &["prefix"]).0,
            "redis://h"
        );
        assert_eq!(percent_decode("a%20b%3a"), b"a b:");
        assert_eq!(percent_decode("50%zz%"), b"50%zz%");
        assert_eq!(redact("redis://user@h/0"), "redis://user@h/0");
        assert_eq!(
            redact("postgres://u:pw@h/db?password=x"),
            "postgres://u:***@h/db?password=***"
        );
    }

    #[test]
    fn url_secrets_are_every_spelling_longest_first() {
        assert_eq!(
            url_secrets("postgres://u:p%40ss@h/db?password=other"),
            ["p%40ss", "other", "p@ss"]
        );
        assert!(url_secrets("redis://h").is_empty());
    }
}
