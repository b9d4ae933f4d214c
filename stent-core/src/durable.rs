//! The wrapper API: [`Stent`], [`DurableBuilder`] and [`Durable`].

use std::collections::hash_map::Entry;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument as _;

use crate::codec::{self, TAG_JSON_ERROR, TAG_JSON_VALUE};
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
#[derive(Clone)]
pub struct Stent {
    store: Arc<dyn ResultStore>,
}

impl fmt::Debug for Stent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stent").field("store", &self.store).finish()
    }
}

impl Stent {
    /// Wraps a store.
    pub fn new(store: impl ResultStore) -> Self {
        Stent {
            store: Arc::new(store),
        }
    }

    /// Wraps a store that is already shared (as `stent::connect` returns it).
    pub fn from_arc(store: Arc<dyn ResultStore>) -> Self {
        Stent { store }
    }

    /// The store results are kept in.
    pub fn store(&self) -> &Arc<dyn ResultStore> {
        &self.store
    }

    /// Starts describing a durable function. `name` must be stable across deploys and
    /// processes (it is part of every key): write it out, never derive it from a type path.
    pub fn durable(&self, name: impl Into<String>) -> DurableBuilder {
        DurableBuilder {
            store: Arc::clone(&self.store),
            config: Config {
                name: Arc::from(name.into()),
                version: None,
                idempotent: false,
                cached: false,
                ttl: None,
                retention: None,
                lease: None,
                in_flight: InFlight::default(),
                shared_key: false,
                validate_payload: false,
                fail_open: false,
            },
            key: DefaultKey::new(),
        }
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
    /// the running call's lease lapses. Identical calls in one process are not coalesced
    /// under this policy: they meet at the store, as calls from other processes do, so
    /// both get the same error.
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

#[derive(Clone, Debug)]
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
    validate_payload: bool,
    fail_open: bool,
}

impl Config {
    fn lease(&self) -> Duration {
        self.lease.unwrap_or(DEFAULT_LEASE)
    }

    /// Refuses a name or version that would make keys ambiguous, and settings that do
    /// nothing in the chosen mode (a reader would expect them to).
    fn check(&self) -> Result<()> {
        KeyScope {
            name: &self.name,
            version: self.version.as_deref(),
            shared: self.shared_key,
        }
        .check()?;
        let refuse = |setting: &str, why: &str| {
            Err(Error::config(format!(
                "{setting} has no effect on function {:?}: {why}",
                &*self.name
            )))
        };
        if self.ttl.is_some() && !self.cached {
            return refuse(
                ".ttl(…)",
                "it is not cached (add .cached(); idempotency records are kept for .retention(…))",
            );
        }
        if !self.idempotent {
            if self.retention.is_some() {
                return refuse(
                    ".retention(…)",
                    "it is not idempotent (cached results live for .ttl(…))",
                );
            }
            if self.lease.is_some() {
                return refuse(".lease(…)", "it is not idempotent, so it holds no lease");
            }
        }
        if self.fail_open && !self.cached {
            return refuse(
                ".fail_open()",
                "it is not cached, and idempotency fails closed",
            );
        }
        Ok(())
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

impl<K> DurableBuilder<K> {
    /// Run at most once per key; replay the stored result forever after (or for the
    /// [`retention`](Self::retention)). Errors are not stored: a failed call can be retried.
    pub fn idempotent(mut self) -> Self {
        self.config.idempotent = true;
        self
    }

    /// Reuse results; recompute after the [`ttl`](Self::ttl), if one is set.
    pub fn cached(mut self) -> Self {
        self.config.cached = true;
        self
    }

    /// Part of every key: bumping it starts a new keyspace (old results are ignored).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.config.version = Some(version.into());
        self
    }

    /// How long cached results live (default: forever). Only for [cached](Self::cached)
    /// functions: on a function that is not, every call fails with [`ErrorKind::Config`]
    /// (idempotency records are kept for the [`retention`](Self::retention)).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.ttl = Some(ttl);
        self
    }

    /// How long idempotency records are kept after completion (default: forever, as an
    /// idempotency guarantee should be). After it, the same call executes again. Only for
    /// idempotent functions: on a cache-only function, every call fails with
    /// [`ErrorKind::Config`] (cached results live for the [`ttl`](Self::ttl)).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.config.retention = Some(retention);
        self
    }

    /// How long a claim lasts without renewal (default 30 s). While the function runs the
    /// lease is renewed every third of it, so only a crashed owner lets it lapse; then the
    /// next caller takes over with `attempt + 1`. Only for idempotent functions (a
    /// cache-only function holds no lease): on others, every call fails with
    /// [`ErrorKind::Config`].
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = Some(lease.max(Duration::from_millis(3)));
        self
    }

    /// What to do when another caller is executing the same key (default: wait up to 60 s).
    pub fn in_flight(mut self, policy: InFlight) -> Self {
        self.config.in_flight = policy;
        self
    }

    /// Store a fingerprint of the arguments and refuse a call whose key matches a stored
    /// record but whose arguments differ ([`ErrorKind::PayloadMismatch`]); the stored
    /// result is never revealed to it. Useful with custom keys.
    pub fn validate_payload(mut self) -> Self {
        self.config.validate_payload = true;
        self
    }

    /// For cached functions: when the store fails, run the function anyway instead of
    /// failing the call. Never applies to idempotency, which always fails closed. On a
    /// function that is not cached, every call fails with [`ErrorKind::Config`].
    pub fn fail_open(mut self) -> Self {
        self.config.fail_open = true;
        self
    }

    /// Custom keys are used as given, not scoped by function name and version: for a
    /// correlation id that several functions deliberately share.
    pub fn shared_key(mut self) -> Self {
        self.config.shared_key = true;
        self
    }

    /// Derive keys with `strategy`: a closure `Fn(&Args) -> impl Into<String>` (scoped as
    /// `{name}|{version}|{custom}`) or any [`KeyStrategy`].
    pub fn key<K2>(self, strategy: K2) -> DurableBuilder<K2> {
        DurableBuilder {
            store: self.store,
            config: self.config,
            key: strategy,
        }
    }

    /// Always hash the arguments in the key (keeps personal data out of keys and logs).
    pub fn hashed_key(self) -> DurableBuilder<DefaultKey> {
        self.key(DefaultKey::hashed())
    }

    /// Wraps an async function of one argument value (a tuple for several).
    ///
    /// The function returns `Result<R, E>`; `R` is stored as JSON, `E` is returned to the
    /// caller and not stored (see [`Durable::store_errors_if`]).
    ///
    /// A function described with an invalid name or version (see [`KeyScope::check`]), or
    /// with a setting that does nothing in its mode (a [`ttl`](Self::ttl) on a function that
    /// is not cached, say), is still wrapped, and every call of it fails with
    /// [`ErrorKind::Config`] before anything is sent to the store; [`Durable::check`] reports
    /// the same error at start-up.
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
        Fut: Future<Output = std::result::Result<R, E>> + Send + 'static,
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
        Fut: Future<Output = std::result::Result<R, E>> + Send + 'static,
    {
        let mut config = self.config;
        if !config.idempotent && !config.cached {
            config.idempotent = true;
        }
        let invalid = config.check().err().map(|e| e.message().to_owned());
        let fingerprint: Option<FingerprintFn<A>> = if config.validate_payload {
            Some(Box::new(|args: &A| {
                Ok(sha256_hex(canonical_args(args)?.as_bytes()))
            }))
        } else {
            None
        };
        Durable {
            inner: Arc::new(Inner {
                store: self.store,
                config,
                key: Box::new(self.key),
                fingerprint,
                func: Box::new(move |args, ctx| Box::pin(f(args, ctx))),
                store_errors: None,
                invalid,
                flights: Flights::default(),
            }),
        }
    }
}

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type FingerprintFn<A> = Box<dyn Fn(&A) -> Result<String> + Send + Sync>;
type Func<A, R, E> = Box<dyn Fn(A, Execution) -> BoxFut<std::result::Result<R, E>> + Send + Sync>;

struct ErrorStorage<E> {
    pred: Box<dyn Fn(&E) -> bool + Send + Sync>,
    encode: fn(&E) -> Result<Vec<u8>>,
    decode: fn(&str, &[u8]) -> Result<E>,
}

struct Inner<A, R, E> {
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

/// What a call did, as [`Durable::call_traced`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The function ran in this call.
    Executed,
    /// The result came from the cache namespace.
    CacheHit,
    /// The result of an earlier execution was replayed from the idempotency namespace.
    Replayed,
    /// Another caller was executing the key; this call waited and got its result.
    Joined,
}

impl Status {
    /// `executed`, `cache_hit`, `replayed` or `joined`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Executed => "executed",
            Status::CacheHit => "cache_hit",
            Status::Replayed => "replayed",
            Status::Joined => "joined",
        }
    }

    /// Whether the result came from the store rather than from running the function here.
    pub const fn is_hit(self) -> bool {
        !matches!(self, Status::Executed)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    /// same key gives the same id in every process and every release.
    ///
    /// Computed when asked for: a function that does not need it does not pay for it.
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

impl<A, R, E> Durable<A, R, E>
where
    A: Serialize + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
    E: Send + 'static,
{
    fn configure(mut self, f: impl FnOnce(&mut Inner<A, R, E>)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => f(inner),
            None => panic!("configure a Durable right after `wrap`, before cloning it"),
        }
        self
    }

    /// Store errors for which `pred` is true and replay them like results: for terminal
    /// failures (a card declined) that must not be retried. Other errors are not stored.
    /// Only for idempotent functions (a cache never stores errors): on a cache-only
    /// function, every call fails with [`ErrorKind::Config`].
    pub fn store_errors_if(self, pred: impl Fn(&E) -> bool + Send + Sync + 'static) -> Self
    where
        E: Serialize + DeserializeOwned,
    {
        self.configure(|inner| {
            if !inner.config.idempotent && inner.invalid.is_none() {
                inner.invalid = Some(format!(
                    ".store_errors_if(…) has no effect on function {:?}: it is not idempotent, \
                     and a cache never stores errors",
                    &*inner.config.name
                ));
            }
            inner.store_errors = Some(ErrorStorage {
                pred: Box::new(pred),
                encode: |e| codec::encode_error(e),
                decode: |key, body| codec::decode_json(key, body, "stored error"),
            });
        })
    }

    /// Validate payloads with a custom fingerprint of the arguments (see
    /// [`DurableBuilder::validate_payload`]).
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

    /// `Ok` when the function can be called; otherwise the [`ErrorKind::Config`] error
    /// every call returns (an invalid name or version, or a setting that does nothing in
    /// the function's mode; see [`DurableBuilder::wrap`]). Nothing is sent to the store.
    pub fn check(&self) -> Result<()> {
        match &self.inner.invalid {
            Some(why) => Err(Error::config(why.clone())),
            None => Ok(()),
        }
    }

    /// The key a call with `args` is stored under.
    pub fn key_for(&self, args: &A) -> Result<String> {
        self.check()?;
        let c = &self.inner.config;
        let scope = KeyScope {
            name: &c.name,
            version: c.version.as_deref(),
            shared: c.shared_key,
        };
        self.inner.key.key(&scope, args)
    }

    /// Calls the function through the store: executes it, or returns a stored result.
    pub async fn call(&self, args: A) -> std::result::Result<R, Error<E>> {
        self.call_traced(args).await.map(|t| t.value)
    }

    /// Like [`call`](Self::call), and also says how the call was served.
    pub async fn call_traced(&self, args: A) -> std::result::Result<Traced<R>, Error<E>> {
        // Clocks are read only for what needs them: the latency histogram and the progress log.
        let started = observe::ENABLED.then(Instant::now);
        let started_at = progress::in_scope().then(Timestamp::now);
        let name = &self.inner.config.name;
        let (key, result) = match self.key_for(&args) {
            Err(e) => (String::new(), Err(e.into_call_error())),
            Ok(key) => {
                // The progress log needs the key after the call; otherwise it moves in.
                let kept = if started_at.is_some() {
                    key.clone()
                } else {
                    String::new()
                };
                let span = tracing::debug_span!(
                    "stent.call",
                    function = %name,
                    key = %key,
                    status = tracing::field::Empty,
                    attempt = tracing::field::Empty,
                );
                let result = if span.is_disabled() {
                    // No subscriber wants the span: skip entering it on every poll.
                    self.run(key, args).await
                } else {
                    let result = self.run(key, args).instrument(span.clone()).await;
                    match &result {
                        Ok(t) => {
                            span.record("status", t.outcome.status.as_str());
                            span.record("attempt", t.outcome.attempt);
                        }
                        Err(e) => {
                            tracing::debug!(parent: &span, error.kind = %e.kind(), "call failed")
                        }
                    }
                    result
                };
                (kept, result)
            }
        };
        if let Some(started) = started {
            observe::call(name, &result, started.elapsed());
        }
        if let Some(started_at) = started_at {
            progress::record(name, &key, &result, started_at).await;
        }
        result
    }

    async fn run(&self, key: String, args: A) -> std::result::Result<Traced<R>, Error<E>> {
        let started = Instant::now();
        let fingerprint = match &self.inner.fingerprint {
            Some(f) => Some(f(&args).map_err(Error::into_call_error)?),
            None => None,
        };
        let timeout = match self.inner.config.in_flight {
            // Rejecting: an identical call in this process is a conflict like one in
            // another process, met at the store, so both get the same error.
            InFlight::Reject => return self.run_alone(key, fingerprint, args, started).await,
            InFlight::Wait { timeout } => timeout,
        };
        // Identical concurrent calls in this process share one trip to the store.
        let flight = match &fingerprint {
            Some(fp) => self.inner.flights.join(&format!("{key}\0{fp}")),
            None => self.inner.flights.join(&key),
        };
        let leader = match flight {
            Flight::Leader(leader) => leader,
            Flight::Follower(slot) => {
                // A follower that waited its whole timeout goes to the store with no time
                // left: it gets the error a caller in another process would.
                let landed = tokio::time::timeout(timeout, slot.wait())
                    .await
                    .ok()
                    .flatten();
                if let Some(landed) = landed
                    && let Ok(value) = decode_value::<R>(&key, &landed.bytes)
                {
                    return Ok(Traced {
                        value,
                        outcome: Outcome {
                            status: Status::Joined,
                            attempt: landed.attempt,
                            key,
                        },
                    });
                }
                // The leader failed or was cancelled: go to the store like anyone else.
                return self.run_alone(key, fingerprint, args, started).await;
            }
        };
        let result = self.run_alone(key, fingerprint, args, started).await;
        leader.finish(|| {
            let t = result.as_ref().ok()?;
            let bytes = codec::encode_value(&t.value).ok()?;
            Some(Landed {
                bytes,
                attempt: t.outcome.attempt,
            })
        });
        result
    }

    /// The call's way through the store; `started` is when the call began, from which
    /// the in-flight policy's timeout runs.
    async fn run_alone(
        &self,
        key: String,
        fingerprint: Option<String>,
        args: A,
        started: Instant,
    ) -> std::result::Result<Traced<R>, Error<E>> {
        let inner = &*self.inner;
        let c = &inner.config;
        let fingerprint = fingerprint.as_deref();
        if c.cached
            && let Some((value, attempt)) = self.cache_lookup(&key, fingerprint).await?
        {
            return Ok(Traced {
                value,
                outcome: Outcome {
                    status: Status::CacheHit,
                    attempt,
                    key,
                },
            });
        }
        if c.idempotent {
            return self.idempotent(key, fingerprint, args, started).await;
        }
        let (value, bytes) = Box::pin(self.execute_plain(&key, args)).await?;
        self.cache_store(&key, &bytes, fingerprint)
            .await
            .map_err(Error::into_call_error)?;
        Ok(Traced {
            value,
            outcome: Outcome {
                status: Status::Executed,
                attempt: 1,
                key,
            },
        })
    }

    fn meta<'a>(&'a self, fingerprint: Option<&'a str>) -> RecordMeta<'a> {
        RecordMeta {
            function: Some(&self.inner.config.name),
            version: self.inner.config.version.as_deref(),
            fingerprint,
        }
    }

    /// Cache-namespace read: the value and its attempt, `None` on a miss (an undecodable
    /// value is a miss, and is overwritten by the next successful execution).
    ///
    /// With payload validation, a value stored with another fingerprint is
    /// [`ErrorKind::PayloadMismatch`], and one stored without a fingerprint is a miss:
    /// neither is revealed.
    async fn cache_lookup(
        &self,
        key: &str,
        fingerprint: Option<&str>,
    ) -> std::result::Result<Option<(R, u32)>, Error<E>> {
        let record = match self.inner.store.get(Namespace::Cache, key).await {
            Ok(r) => r,
            Err(e) if self.inner.config.fail_open && !self.inner.config.idempotent => {
                tracing::warn!(error = %e, "cache read failed; running the function (fail_open)");
                return Ok(None);
            }
            Err(e) => return Err(e.into_call_error()),
        };
        let Some(record) = record else {
            return Ok(None);
        };
        if fingerprint.is_some() {
            if record.fingerprint.is_none() {
                return Ok(None);
            }
            check_fingerprint(key, fingerprint, &record)?;
        }
        let Some(bytes) = record.value.as_deref() else {
            return Ok(None);
        };
        match decode_value::<R>(key, bytes) {
            Ok(value) => Ok(Some((value, record.attempt))),
            Err(e) => {
                tracing::warn!(error = %e, "cached value does not decode; treating it as a miss");
                Ok(None)
            }
        }
    }

    async fn cache_store(&self, key: &str, bytes: &[u8], fingerprint: Option<&str>) -> Result<()> {
        let c = &self.inner.config;
        match self
            .inner
            .store
            .put(Namespace::Cache, key, bytes, c.ttl, self.meta(fingerprint))
            .await
        {
            Ok(()) => Ok(()),
            // With idempotency on, the idempotency record is the source of truth: a failed
            // cache write only costs a later lookup.
            Err(e) if c.fail_open || c.idempotent => {
                tracing::warn!(error = %e, "cache write failed; result returned uncached");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn execute_plain(
        &self,
        key: &str,
        args: A,
    ) -> std::result::Result<(R, Vec<u8>), Error<E>> {
        let inner = &*self.inner;
        let exec = Execution {
            function: Arc::clone(&inner.config.name),
            key: key.into(),
            attempt: 1,
        };
        observe::execution(&inner.config.name, 1);
        let fut = (inner.func)(args, exec.clone());
        let value = CURRENT.scope(exec, fut).await.map_err(Error::function)?;
        let bytes = codec::encode_value(&value).map_err(Error::into_call_error)?;
        Ok((value, bytes))
    }

    async fn idempotent(
        &self,
        key: String,
        fingerprint: Option<&str>,
        args: A,
        started: Instant,
    ) -> std::result::Result<Traced<R>, Error<E>> {
        let inner = &*self.inner;
        let c = &inner.config;
        let store = &inner.store;
        let mut backoff = Duration::from_millis(5);
        let mut joined = false;
        loop {
            let token = LeaseToken::generate();
            let claim = Claim {
                token: &token,
                lease: c.lease(),
                meta: self.meta(fingerprint),
            };
            let outcome = store
                .claim(Namespace::Idempotency, &key, &claim)
                .await
                .map_err(Error::into_call_error)?;
            match outcome {
                ClaimOutcome::Completed(record) => {
                    check_fingerprint(&key, fingerprint, &record)?;
                    let status = if joined {
                        Status::Joined
                    } else {
                        Status::Replayed
                    };
                    let value = self.replay(&key, &record)?;
                    if c.cached
                        && let Some(bytes) = &record.value
                    {
                        self.cache_store(&key, bytes, fingerprint)
                            .await
                            .map_err(Error::into_call_error)?;
                    }
                    return Ok(Traced {
                        value,
                        outcome: Outcome {
                            status,
                            attempt: record.attempt,
                            key,
                        },
                    });
                }
                ClaimOutcome::InFlight(record) => {
                    check_fingerprint(&key, fingerprint, &record)?;
                    let until_lapse = record
                        .lease_expires_at
                        .map(|at| at.since(Timestamp::now()))
                        .unwrap_or_default();
                    let timeout = match c.in_flight {
                        InFlight::Reject => Duration::ZERO,
                        InFlight::Wait { timeout } => timeout,
                    };
                    let waited = started.elapsed();
                    if waited >= timeout {
                        return Err(Error::new(
                            ErrorKind::InFlight,
                            format!(
                                "another caller is executing this key (attempt {}){}",
                                record.attempt,
                                if timeout.is_zero() {
                                    String::new()
                                } else {
                                    format!("; gave up after waiting {waited:?}")
                                }
                            ),
                        )
                        .with_key(key)
                        .with_retry_after(until_lapse.max(Duration::from_millis(1)))
                        .into_call_error());
                    }
                    if !joined {
                        observe::in_flight_wait(&c.name);
                    }
                    joined = true;
                    // Wake up no later than the holder's lease lapses, to take over promptly.
                    let nap = backoff
                        .min(until_lapse + Duration::from_millis(2))
                        .min(timeout - waited);
                    tokio::time::sleep(nap).await;
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
                ClaimOutcome::Acquired { attempt, .. } => {
                    // Boxed: a replay's future need not carry the execution's state.
                    let value =
                        Box::pin(self.execute_claimed(&key, fingerprint, token, attempt, args))
                            .await?;
                    return Ok(Traced {
                        value,
                        outcome: Outcome {
                            status: Status::Executed,
                            attempt,
                            key,
                        },
                    });
                }
            }
        }
    }

    fn replay(&self, key: &str, record: &Record) -> std::result::Result<R, Error<E>> {
        if record.state != RecordState::Completed {
            return Err(Error::decode(key, "record is not completed").into_call_error());
        }
        let bytes = record.value.as_deref().unwrap_or_default();
        match bytes.first() {
            Some(&TAG_JSON_ERROR) => match &self.inner.store_errors {
                Some(s) => Err(Error::function(
                    (s.decode)(key, &bytes[1..]).map_err(Error::into_call_error)?,
                )),
                None => Err(Error::decode(
                    key,
                    "the stored result is an error, but this function does not replay stored errors",
                )
                .into_call_error()),
            },
            _ => decode_value(key, bytes).map_err(Error::into_call_error),
        }
    }

    /// Runs the function while holding the claim: renews the lease, records the result,
    /// and releases the claim on error, panic or cancellation.
    async fn execute_claimed(
        &self,
        key: &str,
        fingerprint: Option<&str>,
        token: LeaseToken,
        attempt: u32,
        args: A,
    ) -> std::result::Result<R, Error<E>> {
        let inner = &*self.inner;
        let c = &inner.config;
        let store = &inner.store;
        // One copy of the key, shared by the guard and the execution.
        let shared_key: Arc<str> = key.into();
        let mut guard = ReleaseGuard {
            store: Arc::clone(store),
            key: Arc::clone(&shared_key),
            token,
            armed: true,
        };
        let token = guard.token.clone();
        if attempt > 1 {
            tracing::info!(attempt, "taking over after a lapsed lease");
        }
        observe::execution(&c.name, attempt);
        let exec = Execution {
            function: Arc::clone(&c.name),
            key: shared_key,
            attempt,
        };
        let work =
            AssertUnwindSafe(CURRENT.scope(exec.clone(), (inner.func)(args, exec))).catch_unwind();
        let renew = async {
            // Fixed rate: a slow renewal does not push the next one later, so the lease
            // keeps two thirds of its length as margin however slow the store is.
            let every = c.lease() / 3;
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticks.tick().await;
                match store
                    .renew(Namespace::Idempotency, key, &token, c.lease())
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::LeaseLost => {
                        tracing::warn!("lease lost while running; the result will not be recorded");
                        return std::future::pending::<()>().await;
                    }
                    Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
                }
            }
        };
        let result = tokio::select! {
            biased;
            r = work => r,
            () = renew => unreachable!("the renewal loop never ends"),
        };
        let result = match result {
            Ok(r) => r,
            Err(panic) => {
                guard.release().await;
                std::panic::resume_unwind(panic);
            }
        };
        let bytes = match &result {
            Ok(value) => codec::encode_value(value),
            Err(e) => match &inner.store_errors {
                Some(s) if (s.pred)(e) => (s.encode)(e),
                _ => {
                    guard.release().await;
                    return Err(Error::function(result.err().expect("checked above")));
                }
            },
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                guard.release().await;
                return Err(e.into_call_error());
            }
        };
        if let Err(e) = self.complete(key, &token, &bytes).await {
            if e.kind() == ErrorKind::ValueTooLarge || e.kind() == ErrorKind::Encode {
                guard.release().await;
            } else {
                // Leave the claim: a lost lease belongs to someone else now, and after
                // a store outage the lease lapses and the next caller takes over.
                guard.armed = false;
            }
            return Err(e.into_call_error());
        }
        guard.armed = false;
        if c.cached {
            self.cache_store(key, &bytes, fingerprint)
                .await
                .map_err(Error::into_call_error)?;
        }
        result.map_err(Error::function)
    }

    /// Records the result, retrying transient store errors for up to one lease: the work
    /// is done, so recording it is worth some patience.
    async fn complete(&self, key: &str, token: &LeaseToken, bytes: &[u8]) -> Result<()> {
        let c = &self.inner.config;
        let store = &self.inner.store;
        let deadline = Instant::now() + c.lease();
        let mut backoff = Duration::from_millis(10);
        let mut retried = false;
        loop {
            match store
                .complete(Namespace::Idempotency, key, token, bytes, c.retention)
                .await
            {
                Err(e) if e.is_retryable() && Instant::now() + backoff < deadline => {
                    tracing::warn!(error = %e, "recording the result failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    retried = true;
                }
                // An attempt whose reply was lost may have been applied: if the record now
                // holds exactly this result, it was ours.
                Err(e) if retried && e.kind() == ErrorKind::LeaseLost => {
                    match store.get(Namespace::Idempotency, key).await {
                        Ok(Some(r))
                            if r.state == RecordState::Completed
                                && r.value.as_deref() == Some(bytes) =>
                        {
                            return Ok(());
                        }
                        Ok(_) => return Err(e),
                        // Whether the lost attempt was applied is unknown: a later call
                        // replays the result if it was, and runs again if it was not.
                        Err(read) => {
                            return Err(Error::new(
                                ErrorKind::Unavailable,
                                "the result may have been recorded: a reply was lost and \
                                 reading the record back failed; call again",
                            )
                            .with_key(key)
                            .with_source(read));
                        }
                    }
                }
                other => return other,
            }
        }
    }
}

fn decode_value<R: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<R> {
    match bytes.first() {
        Some(&TAG_JSON_VALUE) => codec::decode_json(key, &bytes[1..], "value"),
        _ => match codec::decode::<R, serde_json::Value>(key, bytes)? {
            codec::Stored::Value(v) => Ok(v),
            codec::Stored::Error(_) => Err(Error::decode(key, "stored value is an error")),
        },
    }
}

fn check_fingerprint<E>(
    key: &str,
    ours: Option<&str>,
    record: &Record,
) -> std::result::Result<(), Error<E>> {
    match (ours, record.fingerprint.as_deref()) {
        (Some(ours), Some(theirs)) if ours != theirs => Err(Error::new(
            ErrorKind::PayloadMismatch,
            "this key was already used with different arguments",
        )
        .with_key(key)
        .into_call_error()),
        _ => Ok(()),
    }
}

/// Releases a claim when the call ends without recording a result: awaited on error and
/// panic, spawned on the runtime when the call's future is dropped (cancellation).
struct ReleaseGuard {
    store: Arc<dyn ResultStore>,
    key: Arc<str>,
    token: LeaseToken,
    armed: bool,
}

impl ReleaseGuard {
    async fn release(&mut self) {
        self.armed = false;
        if let Err(e) = self
            .store
            .release(Namespace::Idempotency, &self.key, &self.token)
            .await
        {
            tracing::warn!(error = %e, "releasing the claim failed; it will lapse with its lease");
        }
    }
}

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let store = Arc::clone(&self.store);
            let key = Arc::clone(&self.key);
            let token = self.token.clone();
            handle.spawn(async move {
                if let Err(e) = store.release(Namespace::Idempotency, &key, &token).await {
                    tracing::warn!(error = %e, "releasing a cancelled claim failed; it will lapse");
                }
            });
        }
    }
}

/// A result one call obtained, handed to identical calls that waited on it.
struct Landed {
    bytes: Vec<u8>,
    attempt: u32,
}

/// One call in flight that others wait on: where its leader leaves the result for them.
/// Made by the first follower; a leader nobody joins never allocates one.
#[derive(Default)]
struct Slot {
    landed: std::sync::OnceLock<Landed>,
    done: tokio::sync::Notify,
    closed: std::sync::atomic::AtomicBool,
}

impl Slot {
    /// Waits until the leader's call has ended; its result, if it landed one.
    async fn wait(&self) -> Option<&Landed> {
        use std::sync::atomic::Ordering;
        // Created before the check, so a `notify_waiters` after the check still wakes it.
        let done = self.done.notified();
        if !self.closed.load(Ordering::Acquire) {
            done.await;
        }
        self.landed.get()
    }
}

/// Calls in flight in this process, by key: the first caller leads, later ones follow.
///
/// Every call joins and leaves here, from whichever worker thread runs it, so the map is
/// split into shards by key, each on its own cache lines: calls on different keys rarely
/// take the same lock or pull the same memory from the other core. The keys are hashed
/// with a fast seeded hasher rather than SipHash.
#[derive(Default)]
struct Flights {
    hasher: foldhash::fast::RandomState,
    shards: [Shard; SHARDS],
}

/// How many shards the calls in flight are split into.
const SHARDS: usize = 16;

/// One shard of [`Flights`], aligned so that no two share a cache line (or its neighbour,
/// which some cores fetch in pairs).
#[derive(Default)]
#[repr(align(128))]
struct Shard(std::sync::Mutex<FlightMap>);

/// A key in flight, and the slot its followers wait on once there is one.
type FlightMap =
    std::collections::HashMap<Arc<str>, Option<Arc<Slot>>, foldhash::fast::RandomState>;

enum Flight<'a> {
    Leader(LeaderGuard<'a>),
    Follower(Arc<Slot>),
}

impl Flights {
    fn shard(&self, key: &str) -> &std::sync::Mutex<FlightMap> {
        use std::hash::BuildHasher as _;
        // The hash's high bits: the shard's map indexes by the low bits of its own hash.
        let h = self.hasher.hash_one(key);
        &self.shards[(h >> 60) as usize % SHARDS].0
    }

    fn join(&self, key: &str) -> Flight<'_> {
        // `entry` finds and inserts in one lookup (a follower, the rare case, pays for the
        // leader's key it does not keep).
        let key: Arc<str> = Arc::from(key);
        let mut map = self.shard(&key).lock().unwrap_or_else(|p| p.into_inner());
        match map.entry(Arc::clone(&key)) {
            Entry::Occupied(mut found) => {
                let slot = found.get_mut().get_or_insert_with(Arc::default);
                Flight::Follower(Arc::clone(slot))
            }
            Entry::Vacant(free) => {
                free.insert(None);
                Flight::Leader(LeaderGuard {
                    flights: self,
                    key,
                    done: false,
                })
            }
        }
    }
}

/// Removes the flight when the leader's call ends, however it ends; followers of a
/// leader that never landed a result find no result and go to the store themselves.
struct LeaderGuard<'a> {
    flights: &'a Flights,
    /// The same allocation as the map's key: it tells this leader's entry from a later one's.
    key: Arc<str>,
    done: bool,
}

impl LeaderGuard<'_> {
    /// Ends the flight: no one joins it from now on, and whoever joined is woken with what
    /// `landed` makes (called only if someone did) or with nothing, to go to the store.
    fn finish(mut self, landed: impl FnOnce() -> Option<Landed>) {
        self.leave(landed);
    }

    fn leave(&mut self, landed: impl FnOnce() -> Option<Landed>) {
        use std::sync::atomic::Ordering;
        self.done = true;
        let slot = {
            let shard = self.flights.shard(&self.key);
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            match map.remove_entry(&self.key) {
                Some((key, slot)) if Arc::ptr_eq(&key, &self.key) => slot,
                // Defensive: not this leader's entry, so it goes back.
                Some((key, slot)) => {
                    map.insert(key, slot);
                    None
                }
                None => None,
            }
        };
        // No follower can join once the entry is gone.
        if let Some(slot) = slot {
            if let Some(landed) = landed() {
                // Only the leader sets it, once.
                let _ = slot.landed.set(landed);
            }
            slot.closed.store(true, Ordering::Release);
            slot.done.notify_waiters();
        }
    }
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.leave(|| None);
        }
    }
}
