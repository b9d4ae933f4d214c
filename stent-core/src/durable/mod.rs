//! The wrapper API: [`Stent`], [`DurableBuilder`] and [`Durable`]. The call path is in
//! `call.rs`, leases in `lease.rs`, transactional calls in `transactional.rs`, and the
//! coalescing of identical calls in one process in `flights.rs`.

mod call;
mod flights;
mod lease;
#[cfg(feature = "sqlx")]
mod transactional;

use flights::{Flight, Flights, Landed};

pub use crate::outcome::{Outcome, Status, Traced};
pub use lease::HeldClaim;
#[cfg(feature = "sqlx")]
pub use transactional::{OnConnection, SqlConnection, SqlStore, TxDurable};

use std::time::{Duration, Instant};
use std::{fmt, future::Future, panic::AssertUnwindSafe, sync::Arc};

use futures_util::{FutureExt as _, future::BoxFuture};
use serde::{Serialize, de::DeserializeOwned};
use tracing::Instrument as _;

use crate::codec::{self, TAG_JSON_ERROR};
use crate::error::{Error, ErrorKind, Result};
use crate::key::{DefaultKey, KeyScope, KeyStrategy, canonical_args, sha256_hex};
use crate::record::{
    Claim, ClaimOutcome, LeaseToken, Namespace, Record, RecordMeta, RecordState, Timestamp,
};
use crate::store::ResultStore;
use crate::{observe, progress};

/// Default lease: how long a claim lasts without renewal.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Default time a caller waits for another caller's in-flight execution.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// The entry point: a store, and a factory of durable functions over it.
///
/// Cheap to clone; clones share the store.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::convert::Infallible;
/// use stent_core::{MemoryStore, Stent, Status};
///
/// let stent = Stent::new(MemoryStore::new());
/// let charge = stent
///     .durable("billing::charge_customer")
///     .idempotent()
///     .version("v1")
///     .key(|(order_id, _amount): &(String, u64)| format!("charge:{order_id}"))
///     .wrap(|(order_id, amount): (String, u64)| async move {
///         Ok::<_, Infallible>(format!("receipt-{order_id}-{amount}"))
///     });
///
/// let first = charge.call_traced(("ord-1".into(), 500)).await?;
/// let again = charge.call_traced(("ord-1".into(), 500)).await?;
/// assert_eq!(first.outcome.status, Status::Executed);
/// assert_eq!(again.outcome.status, Status::Replayed);
/// assert_eq!(again.value, "receipt-ord-1-500");
/// assert_eq!(again.outcome.key, "billing::charge_customer|v1|charge:ord-1");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Stent {
    store: Arc<dyn ResultStore>,
}

impl Stent {
    /// Wraps a store.
    pub fn new(store: impl ResultStore) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// Wraps a store that is already shared (as `stent::connect` returns it).
    pub fn from_arc(store: Arc<dyn ResultStore>) -> Self {
        Stent { store }
    }

    /// The store results are kept in.
    pub fn store(&self) -> &Arc<dyn ResultStore> {
        &self.store
    }

    /// Runs `fut` as execution `id`: every durable call made inside it (in this task) is
    /// recorded in the progress log, readable with [`state_of`](Self::state_of).
    ///
    /// Running the same id again appends to its log; concurrent runs of one id each log
    /// every call.
    pub async fn run_execution<F: Future>(&self, id: impl Into<String>, fut: F) -> F::Output {
        progress::run(&self.store, id.into().into(), fut).await
    }

    /// The progress log of execution `id`, in call order (empty if it recorded nothing).
    pub async fn state_of(&self, id: &str) -> Result<progress::ExecutionState> {
        progress::read(&*self.store, id).await
    }

    /// Deletes every cached result of function `name` (of its `version` only, when given),
    /// so the next calls run it again; idempotency records stay. Keys are scanned by their
    /// `{name}|` or `{name}|{version}|` prefix in pages of 1,000
    /// ([`store::delete_prefix`](crate::store::delete_prefix)); results under [shared
    /// keys](DurableBuilder::shared_key) carry no name and stay. Returns how many went.
    pub async fn invalidate_function(&self, name: &str, version: Option<&str>) -> Result<u64> {
        let prefix = crate::key::function_prefix(name, version)?;
        crate::store::delete_prefix(&*self.store, Namespace::Cache, &prefix, 1000, |_| {}).await
    }

    /// Starts describing a durable function. `name` must be stable across deploys and
    /// processes (it is part of every key): write it out, never derive it from a type path.
    pub fn durable(&self, name: impl Into<String>) -> DurableBuilder {
        let (store, mut config) = (Arc::clone(&self.store), Config::default());
        config.name = name.into().into();
        let key = DefaultKey::new();
        DurableBuilder { store, config, key }
    }
}

/// What a call does when another caller is executing the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InFlight {
    /// Poll with backoff until the other execution completes (then replay its result), it
    /// releases (then claim again) or its lease lapses (then take over); give up with
    /// [`ErrorKind::InFlight`] after `timeout`. An identical call in the same process
    /// waits for the running call's result without touching the store ([`Status::Joined`]).
    Wait {
        /// How long to wait at most.
        timeout: Duration,
    },
    /// Return [`ErrorKind::InFlight`] at once, with [`Error::retry_after`] the time until
    /// the running call's lease lapses. Identical calls in one process are not coalesced:
    /// they meet at the store, like calls from other processes, and get the same error.
    Reject,
}

impl Default for InFlight {
    /// `Wait { timeout: 60 s }`.
    fn default() -> Self {
        InFlight::Wait {
            timeout: DEFAULT_WAIT,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Config {
    /// Shared with every [`Execution`] of the function.
    name: Arc<str>,
    version: Option<String>,
    idempotent: bool,
    cached: bool,
    ttl: Option<Duration>,
    retention: Option<Duration>,
    /// `None`: [`DEFAULT_LEASE`].
    lease: Option<Duration>,
    in_flight: InFlight,
    shared_key: bool,
    hashed_key: bool,
    validate_payload: bool,
    fail_open: bool,
    /// [`Durable::store_errors_if`] was called.
    store_errors: bool,
    single_flight: bool,
    stale_if_error: Option<Duration>,
    stale_while_revalidate: Option<Duration>,
    early_refresh: Option<f64>,
    timeout: Option<Duration>,
}

impl Config {
    fn lease(&self) -> Duration {
        self.lease.unwrap_or(DEFAULT_LEASE)
    }

    /// How long values are kept past their TTL: the longer of the stale windows.
    fn stale_window(&self) -> Option<Duration> {
        self.stale_if_error.max(self.stale_while_revalidate)
    }

    /// Whether a store failure lets the call go on without the cache: `.fail_open()` on a
    /// function that is not idempotent (idempotency always fails closed).
    fn fails_open(&self) -> bool {
        self.fail_open && !self.idempotent
    }

    /// How long a cached value is kept: its TTL and the stale window after it, and, on a
    /// function also idempotent, no longer than its idempotency record (the retention).
    fn cache_kept_for(&self) -> Option<Duration> {
        let cached = (self.ttl).map(|ttl| ttl + self.stale_window().unwrap_or_default());
        shorter(cached, self.retention.filter(|_| self.idempotent))
    }

    fn scope(&self) -> KeyScope<'_> {
        KeyScope {
            name: &self.name,
            version: self.version.as_deref(),
            shared: self.shared_key,
        }
    }

    /// Refuses a name or version that would make keys ambiguous, and settings that do
    /// nothing in the chosen mode (a reader would expect them to).
    fn check(&self) -> Result<()> {
        self.scope().check()?;
        let (idempotent, cached, name) = (self.idempotent, self.cached, &*self.name);
        // Values kept past or refreshed before their TTL: only a cached function that is not
        // idempotent, with a TTL, has them.
        let refresh_fits = cached && !idempotent && self.ttl.is_some();
        if let Some(beta) = self.early_refresh
            && !(beta.is_finite() && beta > 0.0)
        {
            return Err(Error::config(format!(
                ".early_refresh({beta}) on function {name:?}: beta must be finite and above 0 \
                 (1.0 is the usual choice)"
            )));
        }
        let useless = [
            (
                self.ttl.is_some() && !cached,
                ".ttl(…)",
                "it is not cached (add .cached(); idempotency records are kept for .retention(…))",
            ),
            (
                self.retention.is_some() && !idempotent,
                ".retention(…)",
                "it is not idempotent (cached results live for .ttl(…))",
            ),
            (
                self.lease.is_some() && !idempotent && !self.single_flight,
                ".lease(…)",
                "it is neither idempotent nor single-flight, so it holds no lease",
            ),
            (
                self.stale_while_revalidate.is_some() && !refresh_fits,
                ".stale_while_revalidate(…)",
                "it applies to a cached function with a .ttl(…) that is not idempotent",
            ),
            (
                self.stale_if_error.is_some() && !refresh_fits,
                ".stale_if_error(…)",
                "it applies to a cached function with a .ttl(…) that is not idempotent",
            ),
            (
                self.early_refresh.is_some() && !refresh_fits,
                ".early_refresh(…)",
                "it applies to a cached function with a .ttl(…) that is not idempotent",
            ),
            (
                self.single_flight && (idempotent || !cached),
                ".single_flight()",
                "only a cached function that is not idempotent needs it (idempotency already \
                 runs each key once)",
            ),
            (
                self.fail_open && !cached,
                ".fail_open()",
                "it is not cached, and idempotency fails closed",
            ),
            (
                self.store_errors && !idempotent,
                ".store_errors_if(…)",
                "it is not idempotent, and a cache never stores errors",
            ),
        ];
        match useless.into_iter().find(|(useless, ..)| *useless) {
            Some((_, setting, why)) => Err(Error::config(format!(
                "{setting} has no effect on function {name:?}: {why}"
            ))),
            None => Ok(()),
        }
    }
}

/// The shorter of two lifetimes, `None` being forever.
fn shorter(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Describes a durable function before it is [wrapped](Self::wrap).
///
/// Choose [`idempotent`](Self::idempotent), [`cached`](Self::cached) or both; with neither,
/// the function is idempotent (the stronger guarantee).
#[derive(Clone)]
#[must_use = "a builder does nothing until `.wrap(...)`"]
pub struct DurableBuilder<K = DefaultKey> {
    store: Arc<dyn ResultStore>,
    config: Config,
    key: K,
}

impl<K> fmt::Debug for DurableBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableBuilder")
            .field("config", &self.config)
            .finish()
    }
}

/// A setting that does nothing in the function's mode makes every call fail with
/// [`ErrorKind::Config`] (see [`wrap`](DurableBuilder::wrap)).
impl<K> DurableBuilder<K> {
    crate::builder_setters! {
        /// Run at most once per key; replay the stored result forever after (or for the
        /// [`retention`](Self::retention)). Errors are not stored: a failed call can be retried.
        idempotent() => config.idempotent = true;

        /// Reuse results; recompute after the [`ttl`](Self::ttl), if one is set.
        cached() => config.cached = true;

        /// Part of every key: bumping it starts a new keyspace (old results are ignored).
        version(version: impl Into<String>) => config.version = Some(version.into());

        /// How long cached results live (default: forever). Only for [cached](Self::cached)
        /// functions: idempotency records are kept for the [`retention`](Self::retention).
        /// On a function also idempotent, a call past the TTL replays the idempotency record
        /// (and caches it again): the function runs again only after the retention.
        ttl(ttl: Duration) => config.ttl = Some(ttl);

        /// How long idempotency records are kept after completion (default: forever); after it,
        /// the same call executes again. Only for idempotent functions: cached results live for
        /// the [`ttl`](Self::ttl). On a function also cached, the cached copy of a result
        /// lasts no longer than its idempotency record.
        retention(retention: Duration) => config.retention = Some(retention);

        /// How long a claim lasts without renewal (default 30 s). While the function runs the
        /// lease is renewed every third of it, so only a crashed owner lets it lapse; then the
        /// next caller takes over with `attempt + 1`. Only for idempotent functions (a
        /// cache-only function holds no lease).
        lease(lease: Duration) => config.lease = Some(lease.max(Duration::from_millis(3)));

        /// What to do when another caller is executing the same key (default: wait up to 60 s).
        in_flight(policy: InFlight) => config.in_flight = policy;

        /// Store a fingerprint of the arguments and refuse a call whose key matches a stored
        /// record but whose arguments differ ([`ErrorKind::PayloadMismatch`]); the stored
        /// result is never revealed to it. Useful with custom keys. A record stored before
        /// this was set holds no fingerprint to compare: it replays to any call of its key.
        validate_payload() => config.validate_payload = true;

        /// For cached functions: when the store fails, run the function anyway instead of
        /// failing the call. Never applies to idempotency, which always fails closed.
        fail_open() => config.fail_open = true;

        /// For cached functions: concurrent misses of one key, in any number of processes,
        /// run the function once. The first claims the key in the cache namespace (lease
        /// renewed while it runs); the others wait (per [`in_flight`](Self::in_flight)) and
        /// read its value (`Joined`), or, if it fails or dies, one of them runs instead. It
        /// costs a claim on every miss (one round trip more), so it is not the default. When
        /// the claim fails, the call fails, or runs unprotected with [`fail_open`](Self::fail_open).
        single_flight() => config.single_flight = true;

        /// For cached functions with a [`ttl`](Self::ttl): values are kept `window` past their
        /// TTL. A call that finds one there runs the function and, if it fails or passes its
        /// [`timeout`](Self::timeout), returns that value (`Status::Stale`; the error is logged
        /// and counted). Age is the caller's clock against the store's record time (the
        /// server's, on PostgreSQL and Redis). With [single flight](Self::single_flight), one
        /// caller in every process runs the function under the key's refresh lock (see
        /// [`stale_while_revalidate`](Self::stale_while_revalidate)); the others get the stale
        /// value at once.
        stale_if_error(window: Duration) => config.stale_if_error = Some(window);

        /// For cached functions with a [`ttl`](Self::ttl): values are kept `window` past their
        /// TTL, and a call that finds one there gets it at once (`Status::Stale`) while one
        /// refresh across every process runs in the background, holding a renewed claim on the
        /// key's refresh lock (a key of its own in the cache namespace) and reading the value
        /// again under it, so a refresh that just ended is not repeated.
        stale_while_revalidate(window: Duration) => config.stale_while_revalidate = Some(window);

        /// For cached functions with a [`ttl`](Self::ttl): refresh hot values before they
        /// expire, so callers of a busy key never meet its expiry, and never all at once. Each
        /// hit refreshes in the background (once across every process, as
        /// [`stale_while_revalidate`](Self::stale_while_revalidate)) when `took × beta × −ln(u)
        /// ≥ time left`, `u` uniform in (0, 1] (XFetch: Vattani, Chierichetti and Lowenstein,
        /// 2015). `beta` 1.0 is usual; above 1 refreshes earlier. `took` is stored with the
        /// value (see [`codec`](crate::codec)); a value without it refreshes only at expiry.
        early_refresh(beta: f64) => config.early_refresh = Some(beta);

        /// Cancels the function when it runs longer than `limit`: the call fails with
        /// [`ErrorKind::Timeout`] (retryable), nothing is recorded, and a claim it held is
        /// released. With [`stale_if_error`](Self::stale_if_error), a value kept past its TTL
        /// is returned instead.
        timeout(limit: Duration) => config.timeout = Some(limit);

        /// Custom keys are used as given, not scoped by function name and version: for a
        /// correlation id that several functions deliberately share.
        shared_key() => config.shared_key = true;

        /// Always hash the key's part after `{name}|{version}|` (all of a shared key), whichever
        /// way keys are derived: keeps personal data out of keys and logs.
        hashed_key() => config.hashed_key = true;
    }

    /// Derive keys with `key`: a closure `Fn(&Args) -> impl Into<String>` (scoped as
    /// `{name}|{version}|{custom}`) or any [`KeyStrategy`].
    pub fn key<K2>(self, key: K2) -> DurableBuilder<K2> {
        let Self { store, config, .. } = self;
        DurableBuilder { store, config, key }
    }

    /// Wraps an async function of one argument value (a tuple for several).
    ///
    /// The function returns `Result<R, E>`; `R` is stored as JSON, `E` is returned to the
    /// caller and not stored (see [`Durable::store_errors_if`]). A function with an invalid
    /// name or version ([`KeyScope::check`]), or a setting that does nothing in its mode (a
    /// [`ttl`](Self::ttl) on one not cached, say), is still wrapped: every call fails with
    /// [`ErrorKind::Config`] before reaching the store, and [`Durable::check`] reports it.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use stent_core::{ErrorKind, MemoryStore, Stent};
    /// let stent = Stent::new(MemoryStore::new());
    /// let f = stent
    ///     .durable("reports::monthly")
    ///     .idempotent()
    ///     .ttl(Duration::from_secs(60)) // a ttl applies to cached results
    ///     .wrap(|month: u32| async move { Ok::<_, std::convert::Infallible>(month) });
    /// assert_eq!(f.check().unwrap_err().kind(), ErrorKind::Config);
    /// ```
    pub fn wrap<A, R, E, F, Fut>(self, f: F) -> Durable<A, R, E>
    where
        K: KeyStrategy<A>,
        A: Serialize + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        E: Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        self.wrap_with_context(move |args, _ctx| f(args))
    }

    /// Like [`wrap`](Self::wrap), but the function also receives its [`Execution`]:
    /// attempt number and a stable operation id to pass to downstream APIs.
    pub fn wrap_with_context<A, R, E, F, Fut>(self, f: F) -> Durable<A, R, E>
    where
        K: KeyStrategy<A>,
        A: Serialize + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        E: Send + 'static,
        F: Fn(A, Execution) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        let mut config = self.config;
        config.idempotent |= !config.cached;
        let fingerprint = config.validate_payload.then(|| -> FingerprintFn<A> {
            Box::new(|args: &A| Ok(sha256_hex(canonical_args(args)?.as_bytes())))
        });
        Durable {
            inner: Arc::new(Inner {
                store: self.store,
                invalid: config.check().err().map(|e| e.message().to_owned()),
                config,
                key: Box::new(self.key),
                fingerprint,
                func: Box::new(move |args, ctx| Box::pin(f(args, ctx))),
                store_errors: None,
                flights: Flights::default(),
            }),
        }
    }
}

type FingerprintFn<A> = Box<dyn Fn(&A) -> Result<String> + Send + Sync>;
type Func<A, R, E> = Box<dyn Fn(A, Execution) -> BoxFuture<'static, Result<R, E>> + Send + Sync>;

struct ErrorStorage<E> {
    pred: Box<dyn Fn(&E) -> bool + Send + Sync>,
    encode: fn(&E) -> Result<Vec<u8>>,
    decode: fn(&str, &[u8]) -> Result<E>,
}

struct Inner<A, R, E> {
    /// Called through `store.as_ref()`, as `&dyn ResultStore`: the `Arc`'s own forwarding
    /// impl would box every store future a second time.
    store: Arc<dyn ResultStore>,
    config: Config,
    key: Box<dyn KeyStrategy<A>>,
    fingerprint: Option<FingerprintFn<A>>,
    func: Func<A, R, E>,
    store_errors: Option<ErrorStorage<E>>,
    /// Why every call fails ([`ErrorKind::Config`]), when the function was described with
    /// a setting it cannot take.
    invalid: Option<String>,
    flights: Flights,
}

/// A wrapped function: call it like the original, get idempotency and/or caching.
///
/// `Clone + Send + Sync`, cheap to share (one `Arc`). Configure it with
/// [`store_errors_if`](Self::store_errors_if) and [`fingerprint`](Self::fingerprint)
/// right after [`wrap`](DurableBuilder::wrap), before cloning it.
pub struct Durable<A, R, E> {
    inner: Arc<Inner<A, R, E>>,
}

impl<A, R, E> Clone for Durable<A, R, E> {
    fn clone(&self) -> Self {
        Durable {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<A, R, E> fmt::Debug for Durable<A, R, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Durable")
            .field("config", &self.inner.config)
            .field("store", &self.inner.store)
            .finish()
    }
}

/// What a running function knows about its own execution.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Execution {
    /// The durable function's name.
    pub function: Arc<str>,
    /// The key of this call.
    pub key: Arc<str>,
    /// 1 for the first execution; +1 for each takeover after a crashed owner's lease lapsed.
    pub attempt: u32,
}

tokio::task_local! {
    static CURRENT: Execution;
}

impl Execution {
    /// The execution the current task is running inside, if any.
    pub fn current() -> Option<Execution> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Stable across attempts of the same key: pass it to downstream APIs as their
    /// idempotency key. 32 hex characters, the first half of the SHA-256 of the key, so the
    /// same key gives the same id in every process and every release; computed when asked.
    ///
    /// ```
    /// # use stent_core::{Execution, MemoryStore, Stent};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let charge = Stent::new(MemoryStore::new())
    ///     .durable("payments::charge")
    ///     .idempotent()
    ///     .wrap_with_context(|order: String, exec: Execution| async move {
    ///         Ok::<_, std::convert::Infallible>(exec.operation_id())
    ///     });
    /// let id = charge.call("ord-1".to_owned()).await.unwrap();
    /// assert_eq!(id.len(), 32);
    /// assert_eq!(charge.call("ord-1".to_owned()).await.unwrap(), id); // replayed
    /// # }
    /// ```
    pub fn operation_id(&self) -> String {
        let mut id = sha256_hex(self.key.as_bytes());
        id.truncate(32);
        id
    }
}

impl<A: 'static, R, E> Durable<A, R, E> {
    fn configure(mut self, f: impl FnOnce(&mut Inner<A, R, E>)) -> Self {
        f(Arc::get_mut(&mut self.inner)
            .expect("configure a Durable right after `wrap`, before cloning it"));
        self
    }

    /// Store errors for which `pred` is true and replay them like results: for terminal
    /// failures (a card declined) that must not be retried; others are not stored. Only for
    /// idempotent functions: on a cache-only one, every call fails with [`ErrorKind::Config`].
    pub fn store_errors_if(self, pred: impl Fn(&E) -> bool + Send + Sync + 'static) -> Self
    where
        E: Serialize + DeserializeOwned,
    {
        self.configure(|inner| {
            inner.config.store_errors = true;
            inner.invalid = inner.config.check().err().map(|e| e.message().to_owned());
            inner.store_errors = Some(ErrorStorage {
                pred: Box::new(pred),
                encode: |e| codec::encode_error(e),
                decode: |key, body| codec::decode_json(key, body, "stored error"),
            });
        })
    }

    /// Like [`DurableBuilder::validate_payload`], with a custom fingerprint of the arguments.
    pub fn fingerprint<S: Into<String>>(self, f: impl Fn(&A) -> S + Send + Sync + 'static) -> Self {
        self.configure(|inner| {
            inner.config.validate_payload = true;
            inner.fingerprint = Some(Box::new(move |a| Ok(f(a).into())));
        })
    }

    /// The durable function's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// `Ok` when the function can be called; otherwise the [`ErrorKind::Config`] error every
    /// call returns, without reaching the store (see [`DurableBuilder::wrap`]).
    pub fn check(&self) -> Result<()> {
        (self.inner.invalid)
            .as_ref()
            .map_or(Ok(()), |why| Err(Error::config(why.clone())))
    }

    /// The key a call with `args` is stored under.
    pub fn key_for(&self, args: &A) -> Result<String> {
        self.check()?;
        let (scope, hashed) = (self.inner.config.scope(), self.inner.config.hashed_key);
        let key = self.inner.key.key(&scope, args)?;
        Ok(if hashed { scope.hashed(key) } else { key })
    }
}
