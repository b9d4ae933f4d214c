//! Everything that touches a lease: the claim loop, renewal while the function runs,
//! fencing, the completion retry, and release on error, panic or cancellation.

use super::call::{Served, check_fingerprint, decode_value};
use super::*;

impl<A, R, E> Durable<A, R, E>
where
    A: Serialize + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
    E: Send + 'static,
{
    pub(super) async fn idempotent(
        &self,
        key: String,
        fingerprint: Option<&str>,
        args: A,
        started: Instant,
    ) -> Served<Traced<R>, E> {
        let (c, ns) = (&self.inner.config, self.claim_ns());
        let store = self.inner.store.as_ref();
        let (mut backoff, mut joined) = (Duration::from_millis(5), false);
        loop {
            let (token, sent) = (LeaseToken::generate(), Instant::now());
            let claim = self.claim(&token, fingerprint);
            let claimed = match store.claim(ns, &key, &claim).await {
                // Single flight is protection, not a result: fail_open runs without it.
                Err(e) if c.fails_open() => {
                    tracing::warn!(error = %e, "single-flight claim failed; running the function (fail_open)");
                    return self.execute_and_cache(key, fingerprint, args).await;
                }
                claimed => claimed?,
            };
            let nap = match claimed {
                // The answer took as long as the lease it asked for (a slow network), so the
                // lease may have lapsed and another caller may hold the key by now: run
                // nothing, claim again. Measured here, not against the store's clock.
                ClaimOutcome::Acquired { .. } if sent.elapsed() >= claim.lease => {
                    if started.elapsed() >= self.in_flight_wait() {
                        let why = "the store's answers to claims take as long as the leases \
                                   they grant: the lease is too short for this network";
                        return Err(Error::new(ErrorKind::Unavailable, why).with_key(&key));
                    }
                    tracing::warn!(
                        "the claim's answer came back after its lease lapsed; claiming again"
                    );
                    backoff
                }
                ClaimOutcome::Acquired { attempt, .. } => {
                    // Boxed: a replay's future need not carry the execution's state.
                    let run = self.execute_claimed(&key, fingerprint, token, attempt, args);
                    let served = Box::pin(run).await?;
                    return Ok(served.map(|v| Traced::new(v, Status::Executed, attempt, key)));
                }
                ClaimOutcome::Completed(record) => {
                    let replayed = self.replay_completed(key, fingerprint, &record, joined);
                    return replayed.await;
                }
                ClaimOutcome::InFlight(record) => {
                    self.wait_or_reject(&key, fingerprint, &record, started, &mut joined)?
                }
            };
            tokio::time::sleep(nap.min(backoff)).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }

    /// How long a call may wait for a key: the in-flight policy's timeout, none when it rejects.
    pub(super) fn in_flight_wait(&self) -> Duration {
        match self.inner.config.in_flight {
            InFlight::Reject => Duration::ZERO,
            InFlight::Wait { timeout } => timeout,
        }
    }

    /// Where the claims of this function live: the idempotency namespace, or, for a cached
    /// function with [single flight](DurableBuilder::single_flight), the cache's.
    fn claim_ns(&self) -> Namespace {
        match self.inner.config.idempotent {
            true => Namespace::Idempotency,
            false => Namespace::Cache,
        }
    }

    /// The result of a completed record, as a replay (or as joined, when the call waited for it).
    pub(super) async fn replay_completed(
        &self,
        key: String,
        fingerprint: Option<&str>,
        record: &Record,
        joined: bool,
    ) -> Served<Traced<R>, E> {
        check_fingerprint(&key, fingerprint, record)?;
        if record.state != RecordState::Completed {
            return Err(Error::decode(&key, "record is not completed"));
        }
        let bytes = record.value.as_deref().unwrap_or_default();
        let value = match (bytes.first(), &self.inner.store_errors) {
            (Some(&TAG_JSON_ERROR), Some(s)) => return Ok(Err((s.decode)(&key, &bytes[1..])?)),
            (Some(&TAG_JSON_ERROR), None) => {
                let why = "the stored result is an error, but this function does not replay \
                           stored errors";
                return Err(Error::decode(&key, why));
            }
            _ => decode_value(&key, bytes)?,
        };
        let c = &self.inner.config;
        if c.cached && c.idempotent {
            self.cache_store(&key, bytes, fingerprint, record.expires_at)
                .await?;
        }
        let status = match (joined, c.idempotent) {
            (true, _) => Status::Joined,
            (false, true) => Status::Replayed,
            (false, false) => Status::CacheHit,
        };
        Ok(Ok(Traced::new(value, status, record.attempt, key)))
    }

    /// Another caller holds `key`: how long to sleep before claiming again, or the
    /// [`ErrorKind::InFlight`] error once the in-flight policy's wait is over.
    pub(super) fn wait_or_reject(
        &self,
        key: &str,
        fingerprint: Option<&str>,
        record: &Record,
        started: Instant,
        joined: &mut bool,
    ) -> Result<Duration> {
        check_fingerprint(key, fingerprint, record)?;
        let (timeout, waited) = (self.in_flight_wait(), started.elapsed());
        if waited >= timeout {
            let waited = (!timeout.is_zero()).then_some(waited);
            return Err(in_flight(key, record, waited));
        }
        if !std::mem::replace(joined, true) {
            observe::in_flight_wait(&self.inner.config.name);
        }
        // Wake up no later than the holder's lease lapses, to take over promptly.
        Ok((until_lapse(record) + Duration::from_millis(2)).min(timeout - waited))
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
    ) -> Served<R, E> {
        let (c, started) = (&self.inner.config, Instant::now());
        let (shared_key, store) = (Arc::<str>::from(key), Arc::clone(&self.inner.store));
        let guard = HeldClaim::new(store, self.claim_ns(), Arc::clone(&shared_key), token);
        if attempt > 1 {
            tracing::info!(attempt, "taking over after a lapsed lease");
        }
        let work = self.execute(shared_key, attempt, |x| (self.inner.func)(args, x));
        let work = AssertUnwindSafe(work).catch_unwind();
        let result = match guard.renewing(c.lease(), work).await {
            Ok(Ok(result)) => result,
            Ok(Err(timed_out)) => {
                guard.release().await;
                return Err(timed_out);
            }
            Err(panic) => {
                guard.release().await;
                std::panic::resume_unwind(panic);
            }
        };
        let bytes = match &result {
            Ok(value) => Some(self.encode(value, started.elapsed())),
            Err(e) => self.stored_error(e),
        };
        let Some(bytes) = bytes else {
            guard.release().await;
            return Ok(result);
        };
        let recorded = match bytes {
            Ok(bytes) => (self.complete(key, guard.token(), &bytes).await).map(|()| bytes),
            unencoded => unencoded,
        };
        match recorded {
            Ok(bytes) if c.cached && c.idempotent => {
                guard.keep(());
                self.cache_store(key, &bytes, fingerprint, None).await?;
            }
            Ok(_) => guard.keep(()),
            // Nothing was written: the key is free for the next caller at once.
            Err(e) if matches!(e.kind(), ErrorKind::ValueTooLarge | ErrorKind::Encode) => {
                guard.release().await;
                return Err(e);
            }
            // A single-flight claim is replaced by the value a refresh (early or stale)
            // stored meanwhile: the cache holds a value, and this one is as fresh.
            Err(e) if e.kind() == ErrorKind::LeaseLost && !c.idempotent => {
                tracing::debug!("a refresh stored a value over the single-flight claim");
                guard.keep(());
            }
            // A cache that fails open returns the value it could not store, and frees the
            // key for the callers waiting on it.
            Err(e) if c.fails_open() => {
                tracing::warn!(error = %e, "cache write failed; result returned uncached");
                guard.release().await;
            }
            // Leave the claim: a lost lease belongs to someone else now, and after
            // a store outage the lease lapses and the next caller takes over.
            Err(e) => return Err(guard.keep(e)),
        }
        Ok(result)
    }

    /// Records the result, retrying transient store errors for up to one lease: the work
    /// is done, so recording it is worth some patience.
    async fn complete(&self, key: &str, token: &LeaseToken, bytes: &[u8]) -> Result<()> {
        let (c, ns) = (&self.inner.config, self.claim_ns());
        let store = self.inner.store.as_ref();
        // Completed records are kept for the retention, or as long as a cached value.
        let kept = match c.idempotent {
            true => c.retention,
            false => c.cache_kept_for(),
        };
        // A cache that fails open does not wait for the store: the value is returned anyway.
        let patience = if c.fails_open() {
            Duration::ZERO
        } else {
            c.lease()
        };
        let deadline = Instant::now() + patience;
        let (mut backoff, mut retried) = (Duration::from_millis(10), false);
        loop {
            match store.complete(ns, key, token, bytes, kept).await {
                Err(e) if e.is_retryable() && Instant::now() + backoff < deadline => {
                    tracing::warn!(error = %e, "recording the result failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    retried = true;
                }
                // An attempt whose reply was lost may have been applied: if the record now
                // holds exactly this result, it was ours.
                Err(e) if retried && e.kind() == ErrorKind::LeaseLost => {
                    return match store.get(ns, key).await {
                        Ok(Some(r))
                            if r.state == RecordState::Completed
                                && r.value.as_deref() == Some(bytes) =>
                        {
                            Ok(())
                        }
                        Ok(_) => Err(e),
                        // Whether the lost attempt was applied is unknown: a later call
                        // replays the result if it was, and runs again if it was not.
                        Err(read) => Err(Error::new(
                            ErrorKind::Unavailable,
                            "the result may have been recorded: a reply was lost and \
                             reading the record back failed; call again",
                        )
                        .with_key(key)
                        .with_source(read)),
                    };
                }
                other => return other,
            }
        }
    }
}

/// How long until the lease on `record` lapses.
fn until_lapse(record: &Record) -> Duration {
    let at = record.lease_expires_at;
    at.map(|at| at.since(Timestamp::now())).unwrap_or_default()
}

/// The [`ErrorKind::InFlight`] error of a key another caller is executing, after this
/// caller `waited` (if it waited at all).
pub(super) fn in_flight(key: &str, record: &Record, waited: Option<Duration>) -> Error {
    let gave_up = waited.map_or_else(String::new, |w| format!("; gave up after waiting {w:?}"));
    let attempt = record.attempt;
    let message = format!("another caller is executing this key (attempt {attempt}){gave_up}");
    Error::new(ErrorKind::InFlight, message)
        .with_key(key)
        .with_retry_after(until_lapse(record).max(Duration::from_millis(1)))
}

/// A claim this process holds on a key: [`renewing`](Self::renewing) runs work while renewing
/// the lease; the claim is released by [`release`](Self::release) on error or panic, or, if
/// dropped (the caller's future was cancelled), by a release spawned on the runtime;
/// [`keep`](Self::keep) leaves it completed, or to lapse with its lease. The wrapper holds its
/// claims through it, as can other layers over a [`ResultStore`] (HTTP, a queue consumer).
#[derive(Debug)]
pub struct HeldClaim {
    store: Arc<dyn ResultStore>,
    ns: Namespace,
    key: Arc<str>,
    token: LeaseToken,
    armed: bool,
}

impl HeldClaim {
    /// The claim `token` holds on `key` in `ns`, as [`ResultStore::claim`] acquired it.
    pub fn new(
        store: Arc<dyn ResultStore>,
        ns: Namespace,
        key: Arc<str>,
        token: LeaseToken,
    ) -> Self {
        HeldClaim {
            store,
            ns,
            key,
            token,
            armed: true,
        }
    }

    /// The key the claim is on.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The token that holds the claim (to [`complete`](ResultStore::complete) it).
    pub fn token(&self) -> &LeaseToken {
        &self.token
    }

    /// Runs `work` while renewing the lease at a fixed rate, every third of `lease`. A
    /// renewal that fails is retried at the next tick; once the lease is lost, renewal stops
    /// (the result will not be recorded) and `work` runs on.
    pub async fn renewing<F: Future>(&self, lease: Duration, work: F) -> F::Output {
        let renew = async {
            // Fixed rate: a slow renewal does not push the next one later, so the lease
            // keeps two thirds of its length as margin however slow the store is.
            let every = lease / 3;
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticks.tick().await;
                let renewed = self.store.renew(self.ns, &self.key, &self.token, lease);
                match renewed.await {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::LeaseLost => {
                        tracing::warn!("lease lost while running; the result will not be recorded");
                        return std::future::pending::<()>().await;
                    }
                    Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
                }
            }
        };
        tokio::select! {
            biased;
            r = work => r,
            () = renew => unreachable!("the renewal loop never ends"),
        }
    }

    /// Releases the claim now, so the next caller runs at once; a failure is logged and the
    /// claim lapses with its lease.
    pub async fn release(mut self) {
        self.armed = false;
        if let Err(e) = self.store.release(self.ns, &self.key, &self.token).await {
            tracing::warn!(error = %e, "releasing the claim failed; it will lapse with its lease");
        }
    }

    /// Leaves the claim as it stands (completed, or to lapse with its lease); returns `through`.
    pub fn keep<T>(mut self, through: T) -> T {
        self.armed = false;
        through
    }
}

impl Drop for HeldClaim {
    fn drop(&mut self) {
        if self.armed
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let (store, ns, key) = (Arc::clone(&self.store), self.ns, Arc::clone(&self.key));
            let token = self.token.clone();
            handle.spawn(async move {
                if let Err(e) = store.release(ns, &key, &token).await {
                    tracing::warn!(error = %e, "releasing a cancelled claim failed; it will lapse");
                }
            });
        }
    }
}
