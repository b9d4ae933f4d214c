//! The service the layer wraps around a handler: claim, run, store, replay.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{HeaderMap, HeaderValue, Request, Response, header};
use http_body::Body;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use stent_core::{
    Claim, ClaimOutcome, ErrorKind, HeldClaim, InFlight, LeaseToken, Namespace, Record, RecordMeta,
    ResultStore, Timestamp,
};
use tower_service::Service;
use tracing::Instrument as _;

use crate::layer::Config;
use crate::observe::{self, Outcome};
use crate::problem::Problem;
use crate::{key, stored};

const NS: Namespace = Namespace::Idempotency;

type BoxError = Box<dyn StdError + Send + Sync>;

/// The [`Service`] made by [`IdempotencyLayer`](crate::IdempotencyLayer) around `S`.
///
/// The request and response bodies of `S` are built back from bytes (`From<Bytes>`), as
/// `axum::body::Body` and `http_body_util::Full<Bytes>` are: the layer buffers a guarded
/// request's body to fingerprint it, and a stored response's body to store it. Requests
/// with other methods or without a key, and responses the policy does not store, stream
/// through untouched.
pub struct IdempotencyService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> IdempotencyService<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        IdempotencyService { inner, config }
    }
}

impl<S: Clone> Clone for IdempotencyService<S> {
    fn clone(&self) -> Self {
        IdempotencyService {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for IdempotencyService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyService")
            .field("inner", &self.inner)
            .field("layer", &self.config)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for IdempotencyService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body + From<Bytes> + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: fmt::Display + Send,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The clone that was made ready goes with this request; a fresh clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !self.config.methods.contains(req.method()) {
            return Box::pin(inner.call(req));
        }
        let config = Arc::clone(&self.config);
        let span = tracing::debug_span!(
            "idempotency",
            name = %config.name,
            method = %req.method(),
            path = req.uri().path(),
        );
        Box::pin(guarded(config, inner, req).instrument(span))
    }
}

/// A guarded method: read the key, buffer the body, then claim until the request runs,
/// replays or is refused.
async fn guarded<S, ReqBody, ResBody>(
    c: Arc<Config>,
    mut inner: S,
    req: Request<ReqBody>,
) -> Result<Response<ResBody>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body + From<Bytes>,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body + From<Bytes>,
    ResBody::Error: fmt::Display,
{
    let (parts, body) = req.into_parts();
    let key = match key::parse(&parts.headers, &c.header, &c.key_rules) {
        Ok(Some(key)) => key,
        Ok(None) if !c.require_key => return inner.call(Request::from_parts(parts, body)).await,
        Ok(None) => {
            let header = if c.header == crate::IDEMPOTENCY_KEY {
                "Idempotency-Key"
            } else {
                c.header.as_str()
            };
            let detail = format!(
                "{} {} requires an {header} header",
                parts.method,
                parts.uri.path()
            );
            return Ok(refuse(&c, Problem::MissingKey, &detail, None));
        }
        Err(why) => return Ok(refuse(&c, Problem::MalformedKey, &why, None)),
    };
    let body = match buffer(body, c.max_request_body, &parts.headers).await {
        Ok(body) => body,
        Err((problem, detail)) => return Ok(refuse(&c, problem, &detail, None)),
    };
    let fingerprint = c.fingerprint.of(&parts, &body);
    let scope = (c.scope)(&parts);
    let stored_key = key::scoped(
        &c.name,
        &scope,
        parts.method.as_str(),
        parts.uri.path(),
        &key,
    );
    let started = Instant::now();
    let mut backoff = Duration::from_millis(5);
    loop {
        let token = LeaseToken::generate();
        let claim = Claim {
            token: &token,
            lease: c.lease,
            meta: RecordMeta {
                function: Some(&c.name),
                version: None,
                fingerprint: fingerprint.as_deref(),
            },
        };
        let outcome = match c.store.claim(NS, &stored_key, &claim).await {
            Ok(outcome) => outcome,
            Err(e) => return Ok(unclaimed(&c, &e)),
        };
        match outcome {
            ClaimOutcome::Completed(record) => {
                if mismatched(fingerprint.as_deref(), &record) {
                    return Ok(mismatch(&c));
                }
                return Ok(replay(&c, record));
            }
            ClaimOutcome::InFlight(record) => {
                if mismatched(fingerprint.as_deref(), &record) {
                    return Ok(mismatch(&c));
                }
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
                    let detail = "a request with this key is being processed; retry later";
                    let after = c.retry_after.min(until_lapse);
                    return Ok(refuse(&c, Problem::InFlight, detail, Some(after)));
                }
                // Wake up no later than the holder's lease lapses, to take over promptly.
                let nap = backoff
                    .min(until_lapse + Duration::from_millis(2))
                    .min(timeout - waited);
                tokio::time::sleep(nap).await;
                backoff = (backoff * 2).min(Duration::from_millis(200));
            }
            ClaimOutcome::Acquired { attempt, .. } => {
                let req = Request::from_parts(parts, ReqBody::from(body));
                let claimed = HeldClaim::new(Arc::clone(&c.store), NS, stored_key.into(), token);
                return execute(&c, inner, req, claimed, attempt).await;
            }
        }
    }
}

/// The answer when the key could not be claimed, so nothing ran: `503` with the store's
/// `Retry-After` when a retry may succeed (the store unreachable or busy), else `500`, since
/// no retry of the request would get another answer.
fn unclaimed<B: From<Bytes>>(c: &Config, e: &stent_core::Error) -> Response<B> {
    if e.is_retryable() {
        tracing::warn!(error = %e, "claiming the idempotency key failed");
        let detail = "the idempotency store could not be reached; nothing was done";
        return refuse(c, Problem::StoreUnavailable, detail, e.retry_after());
    }
    tracing::error!(error = %e, "the idempotency store refused to claim the key");
    let detail = format!(
        "the idempotency store refused to claim the key ({}); nothing was done",
        e.kind().as_str()
    );
    refuse(c, Problem::StoreFailed, &detail, None)
}

/// What the handler's run came to, before the claim is settled.
enum Step<B> {
    /// The policy does not store this response: it goes out as it is.
    NotStored(Response<B>),
    /// The response, its body read whole, to store.
    Read(http::response::Parts, Bytes),
    /// The response body failed while being read.
    BodyFailed(String),
}

/// Runs the handler while holding the claim: renews the lease, stores the response the
/// policy keeps, and releases the claim in every other case (error, panic, cancellation,
/// a response not stored or too large to store).
async fn execute<S, ReqBody, ResBody>(
    c: &Config,
    mut inner: S,
    req: Request<ReqBody>,
    claimed: HeldClaim,
    attempt: u32,
) -> Result<Response<ResBody>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body + From<Bytes>,
    ResBody::Error: fmt::Display,
{
    if attempt > 1 {
        tracing::info!(attempt, "taking over after a lapsed lease");
    }
    let work = async {
        let response = inner.call(req).await?;
        if !(c.store_if)(response.status(), response.headers()) {
            return Ok(Step::NotStored(response));
        }
        let (parts, body) = response.into_parts();
        Ok(match body.collect().await {
            Ok(body) => Step::Read(parts, body.to_bytes()),
            Err(e) => Step::BodyFailed(e.to_string()),
        })
    };
    let result = claimed
        .renewing(c.lease, AssertUnwindSafe(work).catch_unwind())
        .await;
    let step = match result {
        Ok(Ok(step)) => step,
        Ok(Err(e)) => {
            claimed.release().await;
            observe::request(&c.name, Outcome::Executed { attempt });
            return Err(e);
        }
        Err(panic) => {
            claimed.release().await;
            std::panic::resume_unwind(panic);
        }
    };
    let executed = Outcome::Executed { attempt };
    let mut response = match step {
        Step::NotStored(response) => {
            claimed.release().await;
            response
        }
        Step::BodyFailed(why) => {
            claimed.release().await;
            tracing::warn!(error = %why, "the response body failed; nothing was stored");
            let detail = "the handler's response body failed; retry the request";
            return Ok(answer(
                c,
                Problem::ResponseBodyFailed,
                detail,
                None,
                executed,
            ));
        }
        Step::Read(parts, body) => {
            record(c, claimed, &parts, &body).await;
            Response::from_parts(parts, ResBody::from(body))
        }
    };
    observe::request(&c.name, executed);
    response.extensions_mut().insert(executed);
    Ok(response)
}

/// Stores the response under the claim. A response too large for the store or the layer's
/// limit is not stored (the claim is released); any other failure is logged: the response
/// still goes to the client.
async fn record(c: &Config, claimed: HeldClaim, parts: &http::response::Parts, body: &Bytes) {
    let value = stored::encode(parts.status, &parts.headers, &c.replay_headers, body);
    let limit = match (c.max_response_body, c.store.capabilities().max_value_len) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if let Some(limit) = limit.filter(|limit| value.len() > *limit) {
        tracing::warn!(
            bytes = value.len(),
            limit,
            "the response is too large to store; it is sent but not stored, and a retry runs again"
        );
        observe::unrecorded(&c.name, "too_large");
        claimed.release().await;
        return;
    }
    match c
        .store
        .complete(NS, claimed.key(), claimed.token(), &value, c.retention)
        .await
    {
        Ok(()) => claimed.keep(()),
        Err(e) if e.kind() == ErrorKind::ValueTooLarge => {
            tracing::warn!(error = %e, "the response is too large to store; it is sent but not stored");
            observe::unrecorded(&c.name, "too_large");
            claimed.release().await;
        }
        Err(e) => {
            // A lost lease belongs to someone else now; after a store failure the lease
            // lapses and a retry runs again. Either way the response is not stored.
            let reason = if e.kind() == ErrorKind::LeaseLost {
                "lease_lost"
            } else {
                "store_error"
            };
            tracing::warn!(error = %e, "storing the response failed; it is sent but not stored");
            observe::unrecorded(&c.name, reason);
            claimed.keep(());
        }
    }
}

/// The stored response, marked as a replay.
fn replay<B: From<Bytes>>(c: &Config, record: Record) -> Response<B> {
    let Some(stored) = record.value.map(Bytes::from).and_then(stored::decode) else {
        tracing::error!("the stored response cannot be decoded; refusing to run the request again");
        let detail = "the stored response of this key cannot be read back";
        return answer(
            c,
            Problem::StoredResponseUnreadable,
            detail,
            None,
            Outcome::Error,
        );
    };
    let mut response = Response::new(B::from(stored.body));
    *response.status_mut() = stored.status;
    *response.headers_mut() = stored.headers;
    response
        .headers_mut()
        .insert(c.replayed_header.clone(), HeaderValue::from_static("true"));
    response.extensions_mut().insert(Outcome::Replayed);
    observe::request(&c.name, Outcome::Replayed);
    response
}

/// Whether the request's fingerprint differs from the one the key was claimed with.
fn mismatched(ours: Option<&str>, record: &Record) -> bool {
    matches!((ours, record.fingerprint.as_deref()), (Some(a), Some(b)) if a != b)
}

fn mismatch<B: From<Bytes>>(c: &Config) -> Response<B> {
    let detail = "this Idempotency-Key was first used with a different request";
    refuse(c, Problem::PayloadMismatch, detail, None)
}

/// A problem response for a request that did not run.
fn refuse<B: From<Bytes>>(
    c: &Config,
    problem: Problem,
    detail: &str,
    retry_after: Option<Duration>,
) -> Response<B> {
    let outcome = match problem {
        Problem::PayloadMismatch => Outcome::Mismatch,
        Problem::InFlight => Outcome::Conflict,
        Problem::MissingKey
        | Problem::MalformedKey
        | Problem::BodyTooLarge
        | Problem::BodyUnreadable => Outcome::Rejected,
        _ => Outcome::Error,
    };
    answer(c, problem, detail, retry_after, outcome)
}

fn answer<B: From<Bytes>>(
    c: &Config,
    problem: Problem,
    detail: &str,
    retry_after: Option<Duration>,
    outcome: Outcome,
) -> Response<B> {
    observe::request(&c.name, outcome);
    let mut response = problem.response(&c.problem_base, detail, retry_after);
    response.extensions_mut().insert(outcome);
    response
}

/// The request body, whole, or the problem when it is larger than `limit` or unreadable.
async fn buffer<B>(body: B, limit: usize, headers: &HeaderMap) -> Result<Bytes, (Problem, String)>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let too_large = || {
        let detail = format!("the request body exceeds the limit of {limit} bytes");
        (Problem::BodyTooLarge, detail)
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| u64::try_from(limit).is_ok_and(|limit| len > limit)) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
        Err(e) => Err((
            Problem::BodyUnreadable,
            format!("the request body could not be read: {e}"),
        )),
    }
}
