//! Everything that touches a lease: the claim loop, renewal while the function runs,
//! fencing, the completion retry, and release on error, panic or cancellation.

use super::call::check_fingerprint;
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
    ) -> Result<Traced<R>, Error<E>> {
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

    /// Runs the function while holding the claim: renews the lease, records the result,
    /// and releases the claim on error, panic or cancellation.
    async fn execute_claimed(
        &self,
        key: &str,
        fingerprint: Option<&str>,
        token: LeaseToken,
        attempt: u32,
        args: A,
    ) -> Result<R, Error<E>> {
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
