//! The layer and its settings.

use std::fmt;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderName};
use http::request;
use http::{Method, StatusCode};
use stent_core::{DEFAULT_LEASE, InFlight, ResultStore};
use tower_layer::Layer;

use crate::fingerprint::Fingerprint;
use crate::key::KeyRules;
use crate::problem::DEFAULT_PROBLEM_BASE;
use crate::service::IdempotencyService;

/// The request header carrying the key: `Idempotency-Key`.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// The response header that marks a replay, set to `true`: `Idempotent-Replayed`.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// The methods guarded by default: POST and PATCH.
pub const DEFAULT_METHODS: [Method; 2] = [Method::POST, Method::PATCH];
/// How long a stored response is kept by default: 24 hours.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// The largest request body buffered by default: 1 MiB.
pub const DEFAULT_MAX_REQUEST_BODY: usize = 1 << 20;
/// The response headers stored and replayed by default. `Set-Cookie`, `Date`, the
/// hop-by-hop headers and `Content-Length` (recomputed) are not among them.
pub const DEFAULT_REPLAY_HEADERS: [HeaderName; 10] = [
    header::CONTENT_TYPE,
    header::CONTENT_LANGUAGE,
    header::CONTENT_ENCODING,
    header::CONTENT_LOCATION,
    header::LOCATION,
    header::ETAG,
    header::LAST_MODIFIED,
    header::CACHE_CONTROL,
    header::EXPIRES,
    header::LINK,
];

/// Hop-by-hop headers (RFC 9110 §7.6.1) and `Content-Length`: meaningful on one
/// connection only, so never stored, whatever the allowlist says.
const NEVER_STORED: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

type ScopeFn = dyn Fn(&request::Parts) -> String + Send + Sync;
type StoreIfFn = dyn Fn(StatusCode, &http::HeaderMap) -> bool + Send + Sync;

/// A [`tower_layer::Layer`] that makes unsafe requests carrying an `Idempotency-Key`
/// idempotent, with the responses kept in any [`ResultStore`]. See the
/// [crate documentation](crate) for the rules it follows.
///
/// Cloning is cheap (the settings are shared). The setters may be called in any order.
#[derive(Clone)]
pub struct IdempotencyLayer {
    pub(crate) config: Arc<Config>,
}

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) store: Arc<dyn ResultStore>,
    pub(crate) name: String,
    pub(crate) methods: Vec<Method>,
    pub(crate) header: HeaderName,
    pub(crate) require_key: bool,
    pub(crate) key_rules: KeyRules,
    pub(crate) scope: Arc<ScopeFn>,
    pub(crate) fingerprint: Fingerprint,
    pub(crate) in_flight: InFlight,
    pub(crate) retry_after: Duration,
    pub(crate) store_if: Arc<StoreIfFn>,
    pub(crate) replay_headers: Vec<HeaderName>,
    pub(crate) replayed_header: HeaderName,
    pub(crate) retention: Option<Duration>,
    pub(crate) lease: Duration,
    pub(crate) max_request_body: usize,
    pub(crate) max_response_body: Option<usize>,
    pub(crate) problem_base: String,
}

impl IdempotencyLayer {
    /// A layer keeping its responses in `store` (an `Arc` of a store is a store too), with
    /// the defaults: POST and PATCH guarded, key optional, every client in one scope,
    /// [`Fingerprint::request`], 409 while in flight, 24 h retention, 1 MiB request bodies.
    pub fn new(store: impl ResultStore) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// As [`new`](Self::new), sharing a store already behind an `Arc`.
    pub fn from_arc(store: Arc<dyn ResultStore>) -> Self {
        IdempotencyLayer {
            config: Arc::new(Config {
                store,
                name: "http".to_owned(),
                methods: DEFAULT_METHODS.to_vec(),
                header: IDEMPOTENCY_KEY,
                require_key: false,
                key_rules: KeyRules {
                    strict: false,
                    len: 1..=255,
                },
                scope: Arc::new(|_| String::new()),
                fingerprint: Fingerprint::default(),
                in_flight: InFlight::Reject,
                retry_after: Duration::from_secs(1),
                store_if: Arc::new(|status, _| crate::stored_by_default(status)),
                replay_headers: DEFAULT_REPLAY_HEADERS.to_vec(),
                replayed_header: REPLAYED,
                retention: Some(DEFAULT_RETENTION),
                lease: DEFAULT_LEASE,
                max_request_body: DEFAULT_MAX_REQUEST_BODY,
                max_response_body: None,
                problem_base: DEFAULT_PROBLEM_BASE.to_owned(),
            }),
        }
    }

    fn set(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// The name of this layer's keyspace (default `http`): the first part of every stored
    /// key and the `name` label of the metrics. Two layers on one store with different
    /// names never share a record.
    pub fn name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.set(|c| c.name = name)
    }

    /// The methods guarded (default POST and PATCH); requests with other methods pass
    /// through untouched.
    pub fn methods(self, methods: impl IntoIterator<Item = Method>) -> Self {
        let methods = methods.into_iter().collect();
        self.set(|c| c.methods = methods)
    }

    /// The request header carrying the key (default `Idempotency-Key`).
    pub fn header(self, name: HeaderName) -> Self {
        self.set(|c| c.header = name)
    }

    /// Whether a guarded request without a key is refused with 400
    /// ([`Problem::MissingKey`](crate::Problem::MissingKey)). Default `false`: it passes
    /// through, without any idempotency.
    pub fn require_key(self, yes: bool) -> Self {
        self.set(|c| c.require_key = yes)
    }

    /// Whether only the structured-field String form (`"…"`) is accepted. Default
    /// `false`: a bare key without quotes is accepted too.
    pub fn strict(self, yes: bool) -> Self {
        self.set(|c| c.key_rules.strict = yes)
    }

    /// The accepted key lengths in characters (default `1..=255`).
    pub fn key_length(self, len: RangeInclusive<usize>) -> Self {
        self.set(|c| c.key_rules.len = len)
    }

    /// Who the request is from: the stored key starts with what `scope` returns (the
    /// authenticated principal, an API key's id, a tenant), so two clients sending the same
    /// key never see each other's responses. Default: one scope for everyone, which is
    /// only right when one client can never guess another's keys.
    ///
    /// ```
    /// use stent_core::MemoryStore;
    /// use stent_http::IdempotencyLayer;
    ///
    /// let layer = IdempotencyLayer::new(MemoryStore::new()).scope(|req| {
    ///     req.headers
    ///         .get("x-api-key-id")
    ///         .and_then(|v| v.to_str().ok())
    ///         .unwrap_or_default()
    ///         .to_owned()
    /// });
    /// # let _ = layer;
    /// ```
    pub fn scope(self, scope: impl Fn(&request::Parts) -> String + Send + Sync + 'static) -> Self {
        self.set(|c| c.scope = Arc::new(scope))
    }

    /// How the request's fingerprint is computed (default [`Fingerprint::request`]).
    pub fn fingerprint(self, fingerprint: Fingerprint) -> Self {
        self.set(|c| c.fingerprint = fingerprint)
    }

    /// What a request does while another with its key is being processed: with
    /// [`InFlight::Reject`] (the default) it gets 409 with `Retry-After`; with
    /// [`InFlight::Wait`] it polls the store until the response is stored (then gets its
    /// replay), the claim is released (then runs) or `timeout` passes (then 409).
    pub fn in_flight(self, policy: InFlight) -> Self {
        self.set(|c| c.in_flight = policy)
    }

    /// The `Retry-After` of a 409 (default 1 s, sent in whole seconds): when the request in
    /// progress is likely done. It is never later than that request's lease lapses, after
    /// which a retry takes over.
    pub fn retry_after(self, after: Duration) -> Self {
        self.set(|c| c.retry_after = after)
    }

    /// Which responses are stored and replayed (default [`stored_by_default`](crate::stored_by_default)).
    /// A response not stored is sent as it is and its claim released: a retry runs again.
    pub fn store_if(
        self,
        policy: impl Fn(StatusCode, &http::HeaderMap) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.set(|c| c.store_if = Arc::new(policy))
    }

    /// The response headers stored and replayed (default [`DEFAULT_REPLAY_HEADERS`]).
    /// Hop-by-hop headers and `Content-Length` are never stored, even when listed.
    pub fn replay_headers(self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        let names = names
            .into_iter()
            .filter(|n| !NEVER_STORED.contains(n) && n != header::CONTENT_LENGTH)
            .collect();
        self.set(|c| c.replay_headers = names)
    }

    /// The header set to `true` on replayed responses (default `Idempotent-Replayed`).
    pub fn replayed_header(self, name: HeaderName) -> Self {
        self.set(|c| c.replayed_header = name)
    }

    /// How long a stored response is replayed (default 24 h); after that the key is new.
    pub fn retention(self, retention: Duration) -> Self {
        self.set(|c| c.retention = Some(retention))
    }

    /// Keep stored responses until deleted (no retention limit).
    pub fn keep_forever(self) -> Self {
        self.set(|c| c.retention = None)
    }

    /// How long a claim lives without renewal (default 30 s); it is renewed every third
    /// of that while the handler runs, so a crashed server's claim lapses after at most
    /// this long, and a retry then runs again.
    pub fn lease(self, lease: Duration) -> Self {
        self.set(|c| c.lease = lease.max(Duration::from_millis(3)))
    }

    /// The largest request body buffered (default 1 MiB); a larger one gets 413
    /// ([`Problem::BodyTooLarge`](crate::Problem::BodyTooLarge)) before anything runs.
    pub fn max_request_body(self, bytes: usize) -> Self {
        self.set(|c| c.max_request_body = bytes)
    }

    /// The largest stored response (status, headers and body, encoded). Larger responses
    /// still go to the client, but are not stored: the claim is released, and a warning
    /// and the `stent_http_unrecorded_total{reason="too_large"}` metric say so. The
    /// store's own limit ([`Capabilities::max_value_len`](stent_core::Capabilities)) always applies too.
    pub fn max_response_body(self, bytes: usize) -> Self {
        self.set(|c| c.max_response_body = Some(bytes))
    }

    /// Where the problem types' URIs start (default [`DEFAULT_PROBLEM_BASE`]); each type
    /// URI is this followed by the [`Problem`](crate::Problem)'s name.
    pub fn problem_base(self, base: impl Into<String>) -> Self {
        let base = base.into();
        self.set(|c| c.problem_base = base)
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = IdempotencyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IdempotencyService::new(inner, Arc::clone(&self.config))
    }
}

impl fmt::Debug for IdempotencyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt(f)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("store", &self.store)
            .field("name", &self.name)
            .field("methods", &self.methods)
            .field("header", &self.header)
            .field("require_key", &self.require_key)
            .field("key_rules", &self.key_rules)
            .field("fingerprint", &self.fingerprint)
            .field("in_flight", &self.in_flight)
            .field("retry_after", &self.retry_after)
            .field("replay_headers", &self.replay_headers)
            .field("replayed_header", &self.replayed_header)
            .field("retention", &self.retention)
            .field("lease", &self.lease)
            .field("max_request_body", &self.max_request_body)
            .field("max_response_body", &self.max_response_body)
            .field("problem_base", &self.problem_base)
            .finish_non_exhaustive()
    }
}
