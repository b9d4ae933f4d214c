//! The call path: key, in-process coalescing, the cache, then the idempotent path.

use super::*;

/// How a call through the store ends: stent's own error outside, the function's inside.
pub(super) type Served<T, E> = Result<Result<T, E>>;

impl<A, R, E> Durable<A, R, E>
where
    A: Serialize + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
    E: Send + 'static,
{
    /// Calls the function through the store: executes it, or returns a stored result.
    pub async fn call(&self, args: A) -> Result<R, Error<E>> {
        self.call_traced(args).await.map(|t| t.value)
    }

    /// Like [`call`](Self::call), and also says how the call was served.
    pub async fn call_traced(&self, args: A) -> Result<Traced<R>, Error<E>> {
        self.observed(args, |key, args| self.run(key, args)).await
    }

    /// Deletes the cached result of the call with `args`, so the next such call runs the
    /// function; an idempotency record stays (it records what happened, not a copy to
    /// refresh). Returns whether there was one.
    pub async fn invalidate(&self, args: &A) -> Result<bool> {
        let key = self.key_for(args)?;
        self.inner.store.delete(Namespace::Cache, &key).await
    }

    /// Runs a call under the function's key, with its metrics, tracing span and progress log.
    pub(super) async fn observed<Fut>(
        &self,
        args: A,
        run: impl FnOnce(String, A) -> Fut,
    ) -> Result<Traced<R>, Error<E>>
    where
        Fut: Future<Output = Served<Traced<R>, E>>,
    {
        // Clocks are read only for what needs them: the latency histogram and the progress log.
        let started = observe::ENABLED.then(Instant::now);
        let started_at = progress::in_scope().then(Timestamp::now);
        let name = &self.inner.config.name;
        let (key, result) = match self.key_for(&args) {
            Err(e) => (String::new(), Err(e.into_call_error())),
            Ok(key) => {
                // The progress log needs the key after the call; otherwise it moves in.
                let kept = started_at.map(|_| key.clone()).unwrap_or_default();
                let span = tracing::debug_span!("stent.call", function = %name, key = %key,
                    status = tracing::field::Empty, attempt = tracing::field::Empty);
                let run = async {
                    let served = run(key, args).await.map_err(Error::into_call_error);
                    served?.map_err(Error::function)
                };
                if span.is_disabled() {
                    // No subscriber wants the span: skip entering it on every poll.
                    (kept, run.await)
                } else {
                    let result = run.instrument(span.clone()).await;
                    match &result {
                        Ok(t) => {
                            span.record("status", t.outcome.status.as_str());
                            span.record("attempt", t.outcome.attempt);
                        }
                        Err(e) => {
                            tracing::debug!(parent: &span, error.kind = %e.kind(), "call failed")
                        }
                    }
                    (kept, result)
                }
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

    async fn run(&self, key: String, args: A) -> Served<Traced<R>, E> {
        let (started, fingerprint) = (Instant::now(), self.fingerprint_of(&args)?);
        // A rejecting call is not coalesced (see `InFlight::Reject`).
        let InFlight::Wait { timeout } = self.inner.config.in_flight else {
            return self.run_alone(key, fingerprint, args, started).await;
        };
        let flight = match &fingerprint {
            Some(fp) => self.inner.flights.join(&format!("{key}\0{fp}")),
            None => self.inner.flights.join(&key),
        };
        let leader = match flight {
            Flight::Leader(leader) => leader,
            Flight::Follower(mut slot) => {
                // A follower that waited its whole timeout goes to the store with no time
                // left: it gets the error a caller in another process would. So does one
                // whose leader failed or was cancelled.
                let landed = slot.wait_for(Option::is_some);
                if let Ok(Ok(landed)) = tokio::time::timeout(timeout, landed).await
                    && let Some(Landed { bytes, attempt }) = &*landed
                    && let Ok(value) = decode_value(&key, bytes)
                {
                    return Ok(Ok(Traced::new(value, Status::Joined, *attempt, key)));
                }
                return self.run_alone(key, fingerprint, args, started).await;
            }
        };
        let served = self.run_alone(key, fingerprint, args, started).await;
        leader.finish(|| {
            let Ok(Ok(t)) = &served else { return None };
            let bytes = codec::encode_value(&t.value).ok()?;
            let attempt = t.outcome.attempt;
            Some(Landed { bytes, attempt })
        });
        served
    }

    /// The call's way through the store; `started` is when the call began, from which
    /// the in-flight policy's timeout runs.
    async fn run_alone(
        &self,
        key: String,
        fingerprint: Option<String>,
        args: A,
        started: Instant,
    ) -> Served<Traced<R>, E> {
        let (c, fingerprint) = (&self.inner.config, fingerprint.as_deref());
        let found = match c.cached {
            true => self.cache_lookup(&key, fingerprint).await?,
            false => None,
        };
        let revalidate = |past: Duration| c.stale_while_revalidate.is_some_and(|w| past < w);
        let found = match found {
            // Fresh, or stale within the stale-while-revalidate window: served, and refreshed
            // in the background when stale or drawn for an early refresh (failures are
            // logged, and the value stays).
            Some(found) if found.past_ttl.is_none_or(revalidate) => {
                if found.past_ttl.is_some() || found.refresh_early {
                    let (this, fp) = (self.clone(), fingerprint.map(str::to_owned));
                    let (refresh_key, seen) = (key.clone(), found.completed_at);
                    tokio::spawn(async move {
                        match this.refresh(refresh_key, fp.as_deref(), args, seen).await {
                            None | Some(Ok(Ok(_))) => {}
                            Some(Ok(Err(_))) => tracing::warn!("refresh: the function failed"),
                            Some(Err(e)) => tracing::warn!(error = %e, "refresh: not done"),
                        }
                    });
                }
                let status = match found.past_ttl {
                    None => Status::CacheHit,
                    Some(_) => Status::Stale,
                };
                return Ok(Ok(Traced::new(found.value, status, found.attempt, key)));
            }
            Some(found) if c.stale_if_error.is_some() => found,
            _ if c.idempotent || c.single_flight => {
                return self.idempotent(key, fingerprint, args, started).await;
            }
            _ => return self.execute_and_cache(key, fingerprint, args).await,
        };
        let seen = found.completed_at;
        let stale = Traced::new(found.value, Status::Stale, found.attempt, key.clone());
        let served = match c.single_flight {
            // Under single flight the record of the key is the stale value itself, which a
            // claim would replay: the refresh lock chooses who runs the function instead.
            true => self.refresh(key, fingerprint, args, seen).await,
            false => Some(self.execute_and_cache(key, fingerprint, args).await),
        };
        match served {
            Some(Ok(Ok(fresh))) => return Ok(Ok(fresh)),
            Some(Err(e)) if e.kind() != ErrorKind::Timeout => return Err(e),
            None => tracing::debug!("a refresh is running; returning the stale value"),
            Some(_) => tracing::warn!(
                "the function failed or timed out; returning the stale value (stale_if_error)"
            ),
        }
        Ok(Ok(stale))
    }

    /// Runs the function and stores its value under a lock key in the cache namespace
    /// (`sha256:` of `refresh\0{key}`, in the function's scope), claimed, renewed while it
    /// runs and released after; `None` when a caller in any process holds it. Under the lock
    /// it reads the value again: one stored since the caller `seen` its value is returned.
    async fn refresh(
        &self,
        key: String,
        fingerprint: Option<&str>,
        args: A,
        seen: Option<Timestamp>,
    ) -> Option<Served<Traced<R>, E>> {
        let (c, store) = (&self.inner.config, Arc::clone(&self.inner.store));
        let lock = c.scope().custom(format!("refresh\0{key}"));
        let token = LeaseToken::generate();
        let claim = self.claim(&token, fingerprint);
        match store.claim(Namespace::Cache, &lock, &claim).await {
            Ok(ClaimOutcome::Acquired { .. }) => {}
            claimed => return claimed.err().map(Err),
        }
        let guard = HeldClaim::new(store, Namespace::Cache, lock.into(), token);
        let served = match self.cache_lookup(&key, fingerprint).await {
            Ok(Some(f)) if f.past_ttl.is_none() && f.completed_at != seen => {
                Ok(Ok(Traced::new(f.value, Status::CacheHit, f.attempt, key)))
            }
            _ => {
                let refresh = self.execute_and_cache(key, fingerprint, args);
                guard.renewing(c.lease(), refresh).await
            }
        };
        guard.release().await;
        Some(served)
    }

    /// Runs the function as attempt 1 and stores its value in the cache.
    pub(super) async fn execute_and_cache(
        &self,
        key: String,
        fingerprint: Option<&str>,
        args: A,
    ) -> Served<Traced<R>, E> {
        let started = Instant::now();
        let ran = self.execute(key.as_str().into(), 1, |x| (self.inner.func)(args, x));
        let value = match ran.await? {
            Ok(value) => value,
            Err(e) => return Ok(Err(e)),
        };
        let bytes = self.encode(&value, started.elapsed())?;
        self.cache_store(&key, &bytes, fingerprint, None).await?;
        Ok(Ok(Traced::new(value, Status::Executed, 1, key)))
    }

    /// The stored form of a value the function computed in `took`: with the time, when
    /// [`early_refresh`](DurableBuilder::early_refresh) needs it.
    pub(super) fn encode(&self, value: &R, took: Duration) -> Result<Vec<u8>> {
        match self.inner.config.early_refresh {
            Some(_) => codec::encode_timed_value(value, took),
            None => codec::encode_value(value),
        }
    }

    /// Runs `work` as attempt `attempt` of `key`, counted as an execution: inside the
    /// [`Execution`] it reads, and cancelled with [`ErrorKind::Timeout`] past the timeout.
    pub(super) async fn execute<F: Future>(
        &self,
        key: Arc<str>,
        attempt: u32,
        work: impl FnOnce(Execution) -> F,
    ) -> Result<F::Output> {
        let function = Arc::clone(&self.inner.config.name);
        observe::execution(&function, attempt);
        let exec = Execution {
            function,
            key: Arc::clone(&key),
            attempt,
        };
        let work = CURRENT.scope(exec.clone(), work(exec));
        let Some(limit) = self.inner.config.timeout else {
            return Ok(work.await);
        };
        tokio::time::timeout(limit, work).await.map_err(|_| {
            let message =
                format!("the function ran longer than its timeout ({limit:?}) and was cancelled");
            Error::new(ErrorKind::Timeout, message).with_key(&*key)
        })
    }

    /// The fingerprint of `args`, when payloads are validated.
    pub(super) fn fingerprint_of(&self, args: &A) -> Result<Option<String>> {
        self.inner.fingerprint.as_ref().map(|f| f(args)).transpose()
    }

    /// The stored form of `err`, when [`store_errors_if`](Self::store_errors_if) keeps it.
    pub(super) fn stored_error(&self, err: &E) -> Option<Result<Vec<u8>>> {
        let storage = self.inner.store_errors.as_ref()?;
        (storage.pred)(err).then(|| (storage.encode)(err))
    }

    /// A claim of this function's by `token`, for its lease, with fingerprint `fp`.
    pub(super) fn claim<'a>(&'a self, token: &'a LeaseToken, fp: Option<&'a str>) -> Claim<'a> {
        let (lease, meta) = (self.inner.config.lease(), self.meta(fp));
        Claim { token, lease, meta }
    }

    pub(super) fn meta<'a>(&'a self, fingerprint: Option<&'a str>) -> RecordMeta<'a> {
        RecordMeta {
            function: Some(&self.inner.config.name),
            version: self.inner.config.version.as_deref(),
            fingerprint,
        }
    }

    /// Cache-namespace read: the value found, `None` on a miss (an undecodable value is a
    /// miss, and is overwritten by the next successful execution).
    ///
    /// With payload validation, a value stored with another fingerprint is
    /// [`ErrorKind::PayloadMismatch`], and one stored without a fingerprint is a miss:
    /// neither is revealed.
    async fn cache_lookup(&self, key: &str, fingerprint: Option<&str>) -> Result<Option<Found<R>>> {
        let c = &self.inner.config;
        let record = match self.inner.store.as_ref().get(Namespace::Cache, key).await {
            Err(e) if c.fails_open() => {
                tracing::warn!(error = %e, "cache read failed; running the function (fail_open)");
                None
            }
            read => read?,
        };
        let Some(record) = record.filter(|r| fingerprint.is_none() || r.fingerprint.is_some())
        else {
            return Ok(None);
        };
        check_fingerprint(key, fingerprint, &record)?;
        let Some(bytes) = record.value.as_deref() else {
            return Ok(None);
        };
        let value = match decode_value(key, bytes) {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!(error = %e, "cached value does not decode; treating it as a miss");
                return Ok(None);
            }
        };
        let (mut past_ttl, mut early) = (None, false);
        // Only the settings that look at a value's age read the clock.
        if let (Some(ttl), Some(at)) = (c.ttl, record.completed_at)
            && (c.stale_window().is_some() || c.early_refresh.is_some())
        {
            let (expiry, now) = (at.add(ttl), Timestamp::now());
            past_ttl = Some(now.since(expiry)).filter(|d| !d.is_zero());
            if let (Some(beta), Some(took)) = (c.early_refresh, codec::computed_in(bytes)) {
                early = refresh_early(took, beta, expiry.since(now));
            }
        }
        Ok(Some(Found {
            value,
            attempt: record.attempt,
            completed_at: record.completed_at,
            past_ttl,
            refresh_early: early,
        }))
    }

    /// Caches `bytes`; a copy of an idempotency record that expires `until` is kept no
    /// longer than the record.
    pub(super) async fn cache_store(
        &self,
        key: &str,
        bytes: &[u8],
        fingerprint: Option<&str>,
        until: Option<Timestamp>,
    ) -> Result<()> {
        let (c, meta) = (&self.inner.config, self.meta(fingerprint));
        let left = until.map(|t| t.since(Timestamp::now()));
        if left.is_some_and(|d| d.is_zero()) {
            return Ok(());
        }
        let (kept, store) = (shorter(c.cache_kept_for(), left), self.inner.store.as_ref());
        match store.put(Namespace::Cache, key, bytes, kept, meta).await {
            // With idempotency on, the idempotency record is the source of truth: a failed
            // cache write only costs a later lookup.
            Err(e) if c.fail_open || c.idempotent => {
                tracing::warn!(error = %e, "cache write failed; result returned uncached");
                Ok(())
            }
            put => put,
        }
    }
}

/// A cached value, as [`cache_lookup`](Durable::cache_lookup) found it.
struct Found<R> {
    value: R,
    attempt: u32,
    /// When the store recorded it.
    completed_at: Option<Timestamp>,
    /// How long past its TTL it is (kept for a stale window); `None` while fresh.
    past_ttl: Option<Duration>,
    /// Early refresh drew this hit to refresh the value.
    refresh_early: bool,
}

/// The XFetch rule: refresh a value computed in `took` now, `left` before it expires, when
/// `took × beta × −ln(u) ≥ left` for `u` drawn uniformly from (0, 1]. The chance rises as
/// expiry nears, and sooner for values that take long to compute.
fn refresh_early(took: Duration, beta: f64, left: Duration) -> bool {
    let draw = -(1.0 - rand::random::<f64>()).ln();
    took.as_secs_f64() * beta * draw >= left.as_secs_f64()
}

pub(super) fn decode_value<R: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<R> {
    match codec::decode::<R, serde::de::IgnoredAny>(key, bytes)? {
        codec::Stored::Value(v) => Ok(v),
        codec::Stored::Error(_) => Err(Error::decode(key, "stored value is an error")),
    }
}

/// [`ErrorKind::PayloadMismatch`] when the record was stored with another fingerprint.
pub(super) fn check_fingerprint(key: &str, ours: Option<&str>, record: &Record) -> Result<()> {
    match (ours, record.fingerprint.as_deref()) {
        (Some(ours), Some(theirs)) if ours != theirs => Err(Error::new(
            ErrorKind::PayloadMismatch,
            "this key was already used with different arguments",
        )
        .with_key(key)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::refresh_early;
    use std::time::Duration;

    #[test]
    fn early_refresh_draws_more_often_as_expiry_nears_and_never_for_instant_functions() {
        let draws = |took, left| {
            (0..10_000)
                .filter(|_| refresh_early(took, 1.0, left))
                .count()
        };
        let (took, ms) = (Duration::from_millis(100), Duration::from_millis);
        // P(refresh) = e^(−left / (took × beta)).
        assert_eq!(draws(took, Duration::ZERO), 10_000);
        let near = draws(took, ms(10)); // e^−0.1 ≈ 0.90
        let mid = draws(took, ms(100)); // e^−1 ≈ 0.37
        let far = draws(took, ms(1000)); // e^−10 ≈ 0.00005
        assert!((8_700..9_300).contains(&near), "{near}");
        assert!((3_300..4_100).contains(&mid), "{mid}");
        assert!(far < 20, "{far}");
        assert_eq!(draws(Duration::ZERO, ms(1)), 0);
    }
}
