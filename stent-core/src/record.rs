//! Records and the values that cross the [`ResultStore`](crate::ResultStore) boundary.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

named_enum! {
    /// The keyspaces of a store: results of idempotent calls, cached results, and the
    /// per-execution progress log (kept apart so that clearing caches never erases it).
    ///
    /// SQL backends name their tables exactly after [`Namespace::as_str`] (optionally prefixed),
    /// so `SELECT key, created_at FROM cache` works from a database shell.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Namespace {
        /// Results of idempotent calls: permanent unless a retention is set.
        Idempotency = "idempotency",
        /// Cached results: permanent or with a TTL.
        Cache = "cache",
        /// The per-execution progress log ([`Stent::run_execution`](crate::Stent::run_execution)):
        /// debugging history, not a cache, so `clear(Cache)` leaves it alone.
        Progress = "progress",
    }
    /// `"idempotency"`, `"cache"` or `"progress"`.
    fn as_str;
}

impl std::str::FromStr for Namespace {
    type Err = crate::Error;

    /// Parses [`as_str`](Self::as_str)'s form; anything else is an
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = "expected \"idempotency\", \"cache\" or \"progress\"";
        let unknown = || crate::Error::config(format!("unknown namespace {s:?} ({expected})"));
        let found = Self::ALL.into_iter().find(|ns| ns.as_str() == s);
        found.ok_or_else(unknown)
    }
}

named_enum! {
    /// Where a record stands.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum RecordState {
        /// Claimed by a caller whose lease may still be live; no value yet.
        InProgress = "in_progress",
        /// Holds a value.
        Completed = "completed",
    }
    /// `"in_progress"` or `"completed"`, as stored by every backend.
    fn as_str;
}

impl RecordState {
    /// Parses the stored form; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

/// A point in time: milliseconds since the Unix epoch, UTC (serialized as that integer).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The timestamp `ms` milliseconds after the Unix epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// The current wall-clock time.
    pub fn now() -> Self {
        SystemTime::now().into()
    }

    /// `self` plus `d` rounded up to whole milliseconds, saturating (also available as `+`).
    #[allow(clippy::should_implement_trait)]
    pub fn add(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(duration_millis(d)))
    }

    /// How long from `earlier` to `self` (zero when `earlier` is later).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0).unsigned_abs())
    }
}

/// Whole milliseconds in `d`, rounded up so a non-zero duration never becomes zero,
/// saturating at `i64::MAX`.
pub fn duration_millis(d: Duration) -> i64 {
    let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    i64::try_from(ms).unwrap_or(i64::MAX)
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;

    fn add(self, d: Duration) -> Timestamp {
        Timestamp::add(self, d)
    }
}

/// Whole milliseconds, truncated toward the epoch, saturating at the ends of `i64`.
impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(ms(d)),
            Err(e) => Timestamp(-ms(e.duration())),
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        let d = Duration::from_millis(t.0.unsigned_abs());
        if t.0 >= 0 {
            UNIX_EPOCH + d
        } else {
            UNIX_EPOCH - d
        }
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-28T15:54:30.123Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (secs, ms) = (self.0.div_euclid(1000), self.0.rem_euclid(1000));
        let sod = secs.rem_euclid(86_400);
        let (hh, mm, ss) = (sod / 3600, sod / 60 % 60, sod % 60);
        // Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's civil_from_days).
        let z = secs.div_euclid(86_400) + 719_468;
        let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let d = doy - (153 * mp + 2) / 5 + 1;
        let y = yoe + era * 400 + i64::from(m <= 2);
        write!(f, "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
    }
}

/// A fencing token: proof that the holder owns an in-progress record. Every successful
/// [`claim`](crate::ResultStore::claim) installs a fresh token; `complete`, `renew` and
/// `release` only act while it still matches, so a caller whose lease lapsed and was taken
/// over can never overwrite the new owner's work. `Debug` shows only its first 8 characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LeaseToken(String);

impl LeaseToken {
    /// A new random token: 128 bits as 32 lowercase hex digits.
    pub fn generate() -> Self {
        LeaseToken(format!("{:032x}", rand::random::<u128>()))
    }

    /// Wraps a token read back from a store.
    pub fn from_string(s: impl Into<String>) -> Self {
        LeaseToken(s.into())
    }

    /// The token as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeaseToken({})", self.0.get(..8).unwrap_or(&self.0))
    }
}

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One stored record, as returned by [`get`](crate::ResultStore::get),
/// [`claim`](crate::ResultStore::claim) and [`list`](crate::ResultStore::list).
///
/// `Debug` shows the value's length, not its bytes.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// The full key.
    pub key: String,
    /// In progress or completed.
    pub state: RecordState,
    /// The encoded result; `None` while in progress.
    pub value: Option<Vec<u8>>,
    /// The token of the current owner, while in progress.
    pub lease_token: Option<LeaseToken>,
    /// When the current owner's lease lapses, while in progress.
    pub lease_expires_at: Option<Timestamp>,
    /// 1 for the first execution, +1 for every takeover after a lapsed lease.
    pub attempt: u32,
    /// The payload fingerprint the record was claimed with, if validation is on.
    pub fingerprint: Option<String>,
    /// The wrapped function's name.
    pub function: Option<String>,
    /// The wrapped function's version.
    pub version: Option<String>,
    /// When the record was first written.
    pub created_at: Timestamp,
    /// When the value was stored.
    pub completed_at: Option<Timestamp>,
    /// When the record stops being visible; `None` for permanent records.
    pub expires_at: Option<Timestamp>,
}

impl Record {
    /// A record of `key` in `state` created at `created_at`, attempt 1, every optional field
    /// `None`; backends fill in the rest.
    pub fn new(key: impl Into<String>, state: RecordState, created_at: Timestamp) -> Self {
        Record {
            key: key.into(),
            state,
            value: None,
            lease_token: None,
            lease_expires_at: None,
            attempt: 1,
            fingerprint: None,
            function: None,
            version: None,
            created_at,
            completed_at: None,
            expires_at: None,
        }
    }

    /// Whether the record has expired at `now` (and must be treated as absent).
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }

    /// Whether the record is in progress with its lease lapsed (or absent) at `now`.
    pub fn lease_lapsed(&self, now: Timestamp) -> bool {
        self.state == RecordState::InProgress && self.lease_expires_at.is_none_or(|e| e <= now)
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.value.as_ref().map(|v| format!("<{} bytes>", v.len()));
        f.debug_struct("Record")
            .field("key", &self.key)
            .field("state", &self.state)
            .field("value", &value)
            .field("lease_token", &self.lease_token)
            .field("lease_expires_at", &self.lease_expires_at)
            .field("attempt", &self.attempt)
            .field("fingerprint", &self.fingerprint)
            .field("function", &self.function)
            .field("version", &self.version)
            .field("created_at", &self.created_at)
            .field("completed_at", &self.completed_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Descriptive fields written with a record, for the admin tools and payload validation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordMeta<'a> {
    /// The wrapped function's name.
    pub function: Option<&'a str>,
    /// The wrapped function's version.
    pub version: Option<&'a str>,
    /// A fingerprint of the arguments (payload validation).
    pub fingerprint: Option<&'a str>,
}

/// What a [`claim`](crate::ResultStore::claim) asks for.
#[derive(Clone, Debug)]
pub struct Claim<'a> {
    /// The token to install if the claim succeeds.
    pub token: &'a LeaseToken,
    /// How long the lease lasts unless renewed.
    pub lease: Duration,
    /// Descriptive fields stored with the record.
    pub meta: RecordMeta<'a>,
}

/// The answer to a [`claim`](crate::ResultStore::claim). Contention is a normal answer, not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The caller now owns the record and must run the work.
    Acquired {
        /// 1 on a fresh key, the previous attempt + 1 on a takeover.
        attempt: u32,
        /// When the new lease lapses unless renewed.
        lease_expires_at: Timestamp,
    },
    /// Another caller holds a live lease; the record is returned as it stands.
    InFlight(Record),
    /// A result is already stored.
    Completed(Record),
}

/// A page of [`list`](crate::ResultStore::list) results.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page {
    /// Records in ascending key order (by the key's UTF-8 bytes).
    pub records: Vec<Record>,
    /// Pass to the next `list` call to continue; `None` when there is nothing more.
    pub next_cursor: Option<String>,
}

impl Page {
    /// A page of `records` followed by `next_cursor`.
    pub fn new(records: Vec<Record>, next_cursor: Option<String>) -> Self {
        Page {
            records,
            next_cursor,
        }
    }

    /// The page of a `list` that fetched `records` in key order: the first `limit` of them
    /// (at least one), and the key of the last one kept as the cursor when more were
    /// fetched (fetching `limit + 1` is enough to tell), none when not.
    pub fn from_fetched(mut records: Vec<Record>, limit: usize) -> Self {
        let limit = limit.max(1);
        let next_cursor = (records.len() > limit).then(|| records[limit - 1].key.clone());
        records.truncate(limit);
        Page::new(records, next_cursor)
    }
}

/// What a [`list`](crate::ResultStore::list) call asks for; `Default` is every live record,
/// 100 per page.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListQuery {
    /// Only keys that start with this (matched literally: `%`, `_`, `*` are ordinary characters).
    pub prefix: String,
    /// Only keys strictly after this one (the previous page's `next_cursor`).
    pub cursor: Option<String>,
    /// At most this many records (at least 1).
    pub limit: usize,
    /// Include expired records that are not yet purged.
    pub include_expired: bool,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            prefix: String::new(),
            cursor: None,
            limit: 100,
            include_expired: false,
        }
    }
}

impl ListQuery {
    /// Every live record, 100 per page.
    pub fn new() -> Self {
        Self::default()
    }

    crate::builder_setters! {
        /// Only keys starting with `prefix`.
        prefix(prefix: impl Into<String>) => prefix = prefix.into();

        /// Continue after `cursor`.
        cursor(cursor: Option<String>) => cursor = cursor;

        /// At most `limit` records per page (a `limit` of 0 counts as 1).
        limit(limit: usize) => limit = limit.max(1);

        /// Include expired, not yet purged records.
        include_expired(yes: bool) => include_expired = yes;
    }

    /// Whether `key` belongs in this query's range (prefix and cursor).
    pub fn matches(&self, key: &str) -> bool {
        key.starts_with(self.prefix.as_str()) && self.cursor.as_deref().is_none_or(|c| key > c)
    }
}

/// What a store can do, as one flat struct (`Copy`; `Default` and [`new`](Self::new) give the
/// most conservative answers: all `false`, no limits). Each field has a setter of its name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The store removes expired records by itself (otherwise `purge_expired` does).
    pub native_ttl: bool,
    /// Lease and expiry decisions use the server's clock rather than this process's.
    pub server_clock: bool,
    /// Several processes can share the store and keep every guarantee.
    pub shared: bool,
    /// The data outlives the process.
    pub durable: bool,
    /// Longest key accepted, in bytes.
    pub max_key_len: Option<usize>,
    /// Largest value accepted, in bytes.
    pub max_value_len: Option<usize>,
}

/// `Capabilities::new()`, every field at the value given, and one `const` builder setter
/// per field, named after it: `.shared(true)` sets `shared`.
macro_rules! capabilities {
    ($($field:ident: $ty:ty = $none:expr),+) => {
        impl Capabilities {
            /// All `false`, no limits.
            pub const fn new() -> Self {
                Capabilities { $($field: $none),+ }
            }
            $(#[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ").")]
            pub const fn $field(mut self, $field: $ty) -> Self {
                self.$field = $field;
                self
            })+
        }
    };
}

capabilities!(native_ttl: bool = false, server_clock: bool = false, shared: bool = false,
    durable: bool = false, max_key_len: Option<usize> = None, max_value_len: Option<usize> = None);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_32_lowercase_hex_digits_and_differ() {
        let tokens: Vec<LeaseToken> = (0..64).map(|_| LeaseToken::generate()).collect();
        for t in &tokens {
            assert_eq!(t.as_str().len(), 32, "{t:?}");
            assert!(
                t.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{t:?}"
            );
        }
        let distinct: std::collections::HashSet<&str> =
            tokens.iter().map(LeaseToken::as_str).collect();
        assert_eq!(distinct.len(), tokens.len());
        // Every digit position is used: the leading zeros of small numbers are written.
        assert!(
            tokens
                .iter()
                .any(|t| t.as_str().starts_with(|c: char| c != '0'))
        );
    }

    #[test]
    fn timestamp_displays_as_rfc3339_utc() {
        assert_eq!(
            Timestamp::from_millis(0).to_string(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp::from_millis(1_795_881_270_123).to_string(),
            "2026-11-28T15:54:30.123Z"
        );
        assert_eq!(
            Timestamp::from_millis(-1).to_string(),
            "1969-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn duration_millis_rounds_up_and_saturates() {
        assert_eq!(duration_millis(Duration::from_micros(1)), 1);
        assert_eq!(duration_millis(Duration::from_millis(5)), 5);
        assert_eq!(duration_millis(Duration::MAX), i64::MAX);
    }
}
