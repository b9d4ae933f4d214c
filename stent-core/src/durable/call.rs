//! The call path: key, in-process coalescing, the cache, then the idempotent path.

use super::*;

/// How a call through the store ends: stent's own error outside, the function's inside.
pub(super) type Served<T, E> = Result<std::result::Result<T, E>>;

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
                let span = tracing::debug_span!(
                    "stent.call",
                    function = %name,
                    key = %key,
                    status = tracing::field::Empty,
                    attempt = tracing::field::Empty,
                );
                let run = async {
                    match run(key, args).await {
                        Ok(served) => served.map_err(Error::function),
                        Err(e) => Err(e.into_call_error()),
                    }
                };
                let result = if span.is_disabled() {
                    // No subscriber wants the span: skip entering it on every poll.
                    run.await
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

    async fn run(&self, key: String, args: A) -> Served<Traced<R>, E> {
        let started = Instant::now();
        let fingerprint = self.fingerprint_of(&args)?;
        // Rejecting: an identical call in this process is a conflict like one in another
        // process, met at the store, so both get the same error.
        let InFlight::Wait { timeout } = self.inner.config.in_flight else {
            return self.run_alone(key, fingerprint, args, started).await;
        };
        // Identical concurrent calls in this process share one trip to the store.
        let flight = match &fingerprint {
            Some(fp) => self.inner.flights.join(&format!("{key}\0{fp}")),
            None => self.inner.flights.join(&key),
        };
        let leader = match flight {
            Flight::Leader(leader) => leader,
            Flight::Follower(mut slot) => {
                // A follower that waited its whole timeout goes to the store with no time
                // left: it gets the error a caller in another process would.
                let landed =
                    match tokio::time::timeout(timeout, slot.wait_for(Option::is_some)).await {
                        Ok(Ok(landed)) => landed
                            .as_ref()
                            .map(|l| (decode_value(&key, &l.bytes), l.attempt)),
                        _ => None,
                    };
                if let Some((Ok(value), attempt)) = landed {
                    return Ok(Ok(Traced::new(value, Status::Joined, attempt, key)));
                }
                // The leader failed or was cancelled: go to the store like anyone else.
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
        let c = &self.inner.config;
        let fingerprint = fingerprint.as_deref();
        let mut stale = None;
        if c.cached
            && let Some((value, attempt, past_ttl)) = self.cache_lookup(&key, fingerprint).await?
        {
            let Some(past_ttl) = past_ttl else {
                return Ok(Ok(Traced::new(value, Status::CacheHit, attempt, key)));
            };
            if c.stale_while_revalidate
                .is_some_and(|window| past_ttl < window)
            {
                self.refresh_in_background(key.clone(), fingerprint.map(str::to_owned), args);
                return Ok(Ok(Traced::new(value, Status::Stale, attempt, key)));
            }
            if c.stale_if_error.is_some() {
                stale = Some((value, attempt, key.clone()));
            }
        }
        if c.idempotent || c.single_flight {
            return self.idempotent(key, fingerprint, args, started).await;
        }
        match (self.execute_and_cache(key, fingerprint, args).await?, stale) {
            (Err(_), Some((value, attempt, key))) => {
                tracing::warn!("the function failed; returning the stale value (stale_if_error)");
                Ok(Ok(Traced::new(value, Status::Stale, attempt, key)))
            }
            (served, _) => Ok(served),
        }
    }

    /// Refreshes a stale value on the runtime, unless a caller in any process already is:
    /// the refresh holds a claim on a lock key of its own in the cache namespace (the key's
    /// hashed form, `sha256:` of `refresh\0{key}`, in the function's scope), reads the value
    /// again under it (a refresh that just ended leaves it fresh), runs the function while
    /// renewing the claim, and releases it. Failures are logged; the stale value stays.
    fn refresh_in_background(&self, key: String, fingerprint: Option<String>, args: A) {
        let this = self.clone();
        tokio::spawn(async move {
            let (c, store) = (&this.inner.config, Arc::clone(&this.inner.store));
            let lock = c.scope().custom(format!("refresh\0{key}"));
            let token = LeaseToken::generate();
            let claim = this.claim(&token, fingerprint.as_deref());
            match store.claim(Namespace::Cache, &lock, &claim).await {
                Ok(ClaimOutcome::Acquired { .. }) => {}
                Ok(_) => return,
                Err(e) => return tracing::warn!(error = %e, "stale-while-revalidate: no refresh"),
            }
            let guard = HeldClaim::new(store, Namespace::Cache, lock.into(), token);
            // Another refresh may have stored a fresh value and let go of the lock since this
            // caller read the stale one.
            if let Ok(Some((_, _, None))) = this.cache_lookup(&key, fingerprint.as_deref()).await {
                return guard.release().await;
            }
            let refresh = this.execute_and_cache(key, fingerprint.as_deref(), args);
            match guard.renewing(c.lease(), refresh).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => tracing::warn!("stale-while-revalidate: the function failed"),
                Err(e) => tracing::warn!(error = %e, "stale-while-revalidate: not stored"),
            }
            guard.release().await;
        });
    }

    /// Runs the function as attempt 1 and stores its value in the cache.
    pub(super) async fn execute_and_cache(
        &self,
        key: String,
        fingerprint: Option<&str>,
        args: A,
    ) -> Served<Traced<R>, E> {
        let value = match self.execute(key.as_str().into(), 1, args).await {
            Ok(value) => value,
            Err(e) => return Ok(Err(e)),
        };
        let bytes = codec::encode_value(&value)?;
        self.cache_store(&key, &bytes, fingerprint).await?;
        Ok(Ok(Traced::new(value, Status::Executed, 1, key)))
    }

    /// Runs the function as attempt `attempt` of `key`, inside the [`Execution`] it reads.
    pub(super) fn execute(
        &self,
        key: Arc<str>,
        attempt: u32,
        args: A,
    ) -> impl Future<Output = std::result::Result<R, E>> {
        let exec = self.execution(key, attempt);
        CURRENT.scope(exec.clone(), (self.inner.func)(args, exec))
    }

    /// Attempt `attempt` of `key`, counted as an execution.
    pub(super) fn execution(&self, key: Arc<str>, attempt: u32) -> Execution {
        let name = &self.inner.config.name;
        observe::execution(name, attempt);
        Execution {
            function: Arc::clone(name),
            key,
            attempt,
        }
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

    /// A claim of this function's by `token`, for its lease.
    pub(super) fn claim<'a>(
        &'a self,
        token: &'a LeaseToken,
        fingerprint: Option<&'a str>,
    ) -> Claim<'a> {
        Claim {
            token,
            lease: self.inner.config.lease(),
            meta: self.meta(fingerprint),
        }
    }

    pub(super) fn meta<'a>(&'a self, fingerprint: Option<&'a str>) -> RecordMeta<'a> {
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
    /// The value comes with how long past its TTL it is, for a value kept past it for
    /// [`stale_if_error`](DurableBuilder::stale_if_error) or
    /// [`stale_while_revalidate`](DurableBuilder::stale_while_revalidate); `None` while fresh.
    async fn cache_lookup(
        &self,
        key: &str,
        fingerprint: Option<&str>,
    ) -> Result<Option<(R, u32, Option<Duration>)>> {
        let c = &self.inner.config;
        let record = match self.inner.store.as_ref().get(Namespace::Cache, key).await {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(None),
            Err(e) if c.fail_open && !c.idempotent => {
                tracing::warn!(error = %e, "cache read failed; running the function (fail_open)");
                return Ok(None);
            }
            Err(e) => return Err(e),
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
        let past_ttl = match (c.stale_window(), c.ttl, record.completed_at) {
            (Some(_), Some(ttl), Some(at)) => Some(Timestamp::now().since(at.add(ttl))),
            _ => None,
        };
        let past_ttl = past_ttl.filter(|d| !d.is_zero());
        match decode_value(key, bytes) {
            Ok(value) => Ok(Some((value, record.attempt, past_ttl))),
            Err(e) => {
                tracing::warn!(error = %e, "cached value does not decode; treating it as a miss");
                Ok(None)
            }
        }
    }

    pub(super) async fn cache_store(
        &self,
        key: &str,
        bytes: &[u8],
        fingerprint: Option<&str>,
    ) -> Result<()> {
        let c = &self.inner.config;
        let meta = self.meta(fingerprint);
        let store = self.inner.store.as_ref();
        let ttl = c.ttl.map(|ttl| ttl + c.stale_window().unwrap_or_default());
        match store.put(Namespace::Cache, key, bytes, ttl, meta).await {
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

    /// The result a completed record holds: a value, or a stored error to replay.
    pub(super) fn replay(&self, key: &str, record: &Record) -> Served<R, E> {
        if record.state != RecordState::Completed {
            return Err(Error::decode(key, "record is not completed"));
        }
        let bytes = record.value.as_deref().unwrap_or_default();
        if bytes.first() != Some(&TAG_JSON_ERROR) {
            return decode_value(key, bytes).map(Ok);
        }
        match &self.inner.store_errors {
            Some(s) => (s.decode)(key, &bytes[1..]).map(Err),
            None => Err(Error::decode(
                key,
                "the stored result is an error, but this function does not replay stored errors",
            )),
        }
    }
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
