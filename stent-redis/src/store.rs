//! [`RedisStore`]: the [`ResultStore`] implementation.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::try_join_all;
use redis::{FromRedisValue, RedisResult, Script, Value};
use stent_core::broadcast::{Broadcast, Invalidations};
use stent_core::store::check_value_len;
use stent_core::{
    Capabilities, Claim, ClaimOutcome, Error, ErrorKind, LeaseToken, ListQuery, Namespace, Page,
    Record, RecordMeta, RecordState, Result, ResultStore, Timestamp,
};

use crate::ENV_URL;
use crate::broadcast::Listener;
use crate::config::{RedisStoreBuilder, Target};
use crate::conn::{Conn, Scan};
use crate::error::{from_redis, unexpected, wrong_type};
use crate::layout::{HORIZON_MS, Stored, claim_record, decode, encode_meta, owner};
use crate::scripts::{CLAIM, COMPLETE, DELETE, PUT, RELEASE, RENEW};

/// Durations are clamped to this many milliseconds (about 317 years), so that timestamps
/// stay exact in Lua's double-precision numbers.
const MAX_MS: i64 = 10_000_000_000_000;

/// Records read per round of a `list`, or deleted per round of a `purge_expired`.
const BATCH: usize = 64;

/// A [`ResultStore`] in Redis, standalone or Redis Cluster, on the server's clock: one string
/// per record, every operation one atomic step on its key (the crate's README lists what each
/// sends). Clones share one connection, which reconnects by itself.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    shown: String,
    prefix: String,
    caps: Capabilities,
    /// The expiry grace in milliseconds, and how long after its expiry Redis deletes a
    /// record, as the scripts take it (`-1` without a grace: see `common.lua`).
    grace: i64,
    purge_offset: String,
    /// The key bases, and where deletes and overwrites are announced.
    listener: Listener,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cluster = matches!(self.inner.conn, Conn::Cluster(..));
        f.debug_struct("RedisStore")
            .field("target", &self.inner.shown)
            .field("mode", &if cluster { "cluster" } else { "standalone" })
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to `url` with the default settings (see [`RedisStoreBuilder::url`] for
    /// the URL forms, including `redis+cluster://`).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder().url(url).build().await
    }

    /// Connects to the URL in [`STENT_REDIS_URL`](crate::ENV_URL).
    pub async fn from_env() -> Result<Self> {
        match std::env::var(ENV_URL) {
            Ok(url) if !url.trim().is_empty() => Self::connect(url.trim()).await,
            _ => Err(Error::config(format!(
                "{ENV_URL} is not set; set it to a URL such as redis://127.0.0.1:6379"
            ))),
        }
    }

    /// Connects to one server through a client the caller built, with the default settings
    /// (see [`RedisStoreBuilder::client`]).
    pub async fn from_client(client: redis::Client) -> Result<Self> {
        Self::builder().client(client).build().await
    }

    /// A builder, for a prefix, timeouts or a cluster.
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder::new()
    }

    /// The key prefix, as given: every record lives at `{prefix}:{namespace}:{key}`, with
    /// `%` and `:` in the prefix written `%25` and `%3A`.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    pub(crate) async fn open(clients: Vec<redis::Client>, b: RedisStoreBuilder) -> Result<Self> {
        let cluster = matches!(b.target, Some(Target::Cluster(_)));
        let conn = Conn::open(&clients, cluster, b.timeouts).await;
        let conn = conn.map_err(|e| from_redis(e, &format!("connecting to {}", b.shown), None))?;
        let grace = clamp_ms(b.expiry_grace);
        let (caps, max) = (Capabilities::new(), Some(b.max_value_len));
        let caps = caps.native_ttl(true).server_clock(true).shared(true);
        let inner = Arc::new(Inner {
            conn,
            listener: Listener::new(clients, &b),
            shown: b.shown,
            prefix: b.prefix,
            caps: caps.durable(true).max_value_len(max),
            grace,
            purge_offset: (if grace == 0 { -1 } else { grace }).to_string(),
        });
        Ok(RedisStore { inner })
    }

    /// The operation `op` on the record of `key` in `ns`.
    fn call<'a>(&self, op: &'a str, ns: Namespace, key: &'a str) -> Call<'a> {
        let base = self.inner.listener.bases[ns as usize].as_bytes();
        let rk = [base, key.as_bytes()].concat();
        let conn = self.inner.conn.clone();
        Call { op, key, rk, conn }
    }

    /// Reads one record (`include_expired` keeps expired ones): a lone `GET`, or, with a grace
    /// or for times `GET` cannot tell, `GET`, `PEXPIRETIME` and `TIME` in one transaction.
    async fn fetch(&self, ns: Namespace, key: &str, include_expired: bool) -> Result<Found> {
        let mut call = self.call("get", ns, key);
        if self.inner.grace == 0 || include_expired {
            let reply = call.send("GET", &[]).await;
            match call.found(reply).await? {
                Ok(Some(s))
                    if s.unsettled.is_some() || !(include_expired || s.live_while_present()) => {}
                found => return Ok(found),
            }
        }
        let mut pipe = redis::pipe();
        pipe.atomic().get(&call.rk);
        pipe.cmd("PEXPIRETIME").arg(&call.rk).cmd("TIME");
        let read: RedisResult<(Value, i64, (i64, i64))> = pipe.query_async(&mut call.conn).await;
        let (reply, at, now) = match read {
            Ok((reply, at, (secs, micros))) => (Ok(reply), at, secs * 1000 + micros / 1000),
            Err(e) => (Err(e), 0, 0),
        };
        let found = call.found(reply).await?;
        let Ok(Some(mut stored)) = found else {
            return Ok(found);
        };
        stored.settle(at);
        let expired = stored.record.is_expired(Timestamp::from_millis(now));
        Ok(Ok((include_expired || !expired).then_some(stored)))
    }

    /// A `SCAN` of the keys of `ns` that start with `prefix` (on every master of a cluster).
    async fn scan(&self, ns: Namespace, prefix: &str) -> Result<Scan> {
        let base = &self.inner.listener.bases[ns as usize];
        let pattern = [glob_escape(base), glob_escape(prefix), b"*".to_vec()].concat();
        self.inner.conn.scan(pattern, base).await
    }

    /// Deletes up to `limit` records of `ns`: every one a page at once, or only expired ones,
    /// [`BATCH`] at most at once, so that a call that ends short of `limit` saw every key.
    async fn sweep(&self, ns: Namespace, expired_only: bool, limit: usize) -> Result<u64> {
        let flag: &[u8] = if expired_only { b"1" } else { b"0" };
        let batch = if expired_only { BATCH } else { usize::MAX };
        let channel = self.inner.listener.channel.as_bytes();
        let (mut scan, mut deleted) = (self.scan(ns, "").await?, 0);
        while let Some(mut keys) = scan.next_page().await? {
            while !keys.is_empty() {
                let room = limit.saturating_sub(usize::try_from(deleted).unwrap_or(usize::MAX));
                if room == 0 {
                    return Ok(deleted);
                }
                let n = keys.len().min(room).min(batch);
                let deletes = keys.drain(..n).map(|key| async move {
                    let call = self.call("delete", ns, &key);
                    call.delete(flag, channel, true).await
                });
                deleted += try_join_all(deletes).await?.into_iter().sum::<u64>();
            }
        }
        Ok(deleted)
    }
}

/// What a read found: `None` for no key; the inner error for a key holding something other
/// than a record, for the caller to fail with or to pass over.
type Found = std::result::Result<Option<Stored>, Error>;

/// One operation on the record of one key: what its commands need and its errors name.
struct Call<'a> {
    op: &'a str,
    key: &'a str,
    /// The Redis key: the namespace's key base, then `key`.
    rk: Vec<u8>,
    conn: Conn,
}

impl Call<'_> {
    /// Sends `command` with the record's key, then `args`.
    async fn send<T: FromRedisValue>(&mut self, command: &str, args: &[&[u8]]) -> RedisResult<T> {
        let mut cmd = redis::cmd(command);
        cmd.arg(&self.rk).arg(args);
        cmd.query_async(&mut self.conn).await
    }

    /// Runs `script` on the record; a key of another type is the error naming it.
    async fn run(&mut self, script: &Script, args: &[&[u8]]) -> Result<Value> {
        let mut invocation = script.key(&self.rk);
        let reply = invocation.arg(args).invoke_async(&mut self.conn).await;
        self.typed(reply).await?
    }

    /// Runs a script whose first argument is [`owner`]: its number when the token owns the
    /// record, else `None`. A key holding no record, or a broken one, is an error.
    async fn owned(mut self, script: &Script, args: &[&[u8]]) -> Result<Option<i64>> {
        match self.run(script, args).await? {
            Value::Int(n) => Ok(Some(n)),
            Value::Nil => Ok(None),
            Value::BulkString(bytes) => self.stored(&bytes)?.map(|_| None),
            other => Err(unexpected(self.op, self.key, other)),
        }
    }

    /// Deletes the record (`flag` `1`: only if expired), announced on `channel`: how many went.
    /// A key holding no record is an error, unless `sweep` passes over what is not its own.
    async fn delete(mut self, flag: &[u8], channel: &[u8], sweep: bool) -> Result<u64> {
        match self.run(&DELETE, &[flag, channel]).await {
            Ok(Value::Int(n)) if n >= 0 => Ok(n.unsigned_abs()),
            Ok(Value::Int(_)) if !sweep => Err(wrong_type(self.key, &self.rk, "string")),
            Err(e) if !sweep || e.kind() != ErrorKind::Decode => Err(e),
            Ok(Value::Int(_)) | Err(_) => Ok(0),
            Ok(other) => Err(unexpected(self.op, self.key, other)),
        }
    }

    /// `reply`; for a key of a type the command cannot work on (`WRONGTYPE`), the inner error
    /// naming that type, which `TYPE` tells.
    async fn typed(&mut self, reply: RedisResult<Value>) -> Result<Result<Value>> {
        let reply = match reply {
            Err(e) if e.code() == Some("WRONGTYPE") => {
                let found: RedisResult<String> = self.send("TYPE", &[]).await;
                found.map(|found| Err(wrong_type(self.key, &self.rk, &found)))
            }
            reply => reply.map(Ok),
        };
        reply.map_err(|e| from_redis(e, self.op, Some(self.key)))
    }

    /// Reads the reply of a `GET` (or `SET … GET`) of the record's key.
    async fn found(&mut self, reply: RedisResult<Value>) -> Result<Found> {
        match self.typed(reply).await? {
            Ok(Value::Nil) => Ok(Ok(None)),
            Ok(Value::BulkString(bytes)) => Ok(self.stored(&bytes)?.map(Some)),
            Ok(other) => Err(unexpected(self.op, self.key, other)),
            Err(foreign) => Ok(Err(foreign)),
        }
    }

    /// The record in `bytes`; the inner error for a string that is not one.
    fn stored(&self, bytes: &[u8]) -> Result<Result<Stored>> {
        let stored = decode(self.key, bytes)?;
        Ok(stored.ok_or_else(|| wrong_type(self.key, &self.rk, "string")))
    }
}

/// Milliseconds in `d`, rounded up and clamped to [`MAX_MS`].
fn clamp_ms(d: Duration) -> i64 {
    stent_core::record::duration_millis(d).min(MAX_MS)
}

fn ttl_arg(ttl: Option<Duration>) -> String {
    ttl.map(|t| clamp_ms(t).to_string()).unwrap_or_default()
}

/// `s` with the glob characters of `SCAN MATCH` escaped, so it matches literally.
fn glob_escape(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    for b in s.bytes() {
        if b"*?[]\\".contains(&b) {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

#[async_trait]
impl ResultStore for RedisStore {
    fn capabilities(&self) -> Capabilities {
        self.inner.caps
    }

    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Record>> {
        Ok(self.fetch(ns, key, false).await??.map(|s| s.record))
    }

    /// A claim by the native `SET` reports its lease as ending `lease` after the client sent
    /// it, by the client's clock; the server decides when it lapses (the crate's README).
    async fn claim(&self, ns: Namespace, key: &str, claim: &Claim<'_>) -> Result<ClaimOutcome> {
        if claim.token.as_str().contains('|') {
            let message = "a lease token containing `|` cannot be stored in a Redis record";
            return Err(Error::new(ErrorKind::Unsupported, message).with_key(key));
        }
        let mut call = self.call("claim", ns, key);
        let lease = clamp_ms(claim.lease);
        let claimed = claim_record(claim.token, lease, &encode_meta(&claim.meta));
        let (px, lease) = ((lease + HORIZON_MS).to_string(), lease.to_string());
        // First one native command, `SET key claimed NX GET PX {lease + horizon}`, whose reply
        // alone decides most claims (the crate's README says how and why).
        let sent = Timestamp::now();
        let set: [&[u8]; 5] = [&claimed, b"NX", b"GET", b"PX", px.as_bytes()];
        let reply = call.send("SET", &set).await;
        match call.found(reply).await?? {
            None => {
                return Ok(ClaimOutcome::Acquired {
                    attempt: 1,
                    lease_expires_at: sent + claim.lease,
                });
            }
            Some(s) if s.record.state == RecordState::Completed && s.live_while_present() => {
                return Ok(ClaimOutcome::Completed(s.record));
            }
            Some(_) => {}
        }
        let n = owner(claim.token).len();
        let (head, tail) = (&claimed[..n], &claimed[n + 1..]);
        let args: [&[u8]; 4] = [head, tail, px.as_bytes(), lease.as_bytes()];
        let reply = call.run(&CLAIM, &args).await?;
        match reply.as_sequence() {
            Some([Value::Int(attempt), Value::Int(until)]) => Ok(ClaimOutcome::Acquired {
                attempt: u32::try_from(*attempt).unwrap_or(u32::MAX),
                lease_expires_at: Timestamp::from_millis(*until),
            }),
            Some([Value::BulkString(bytes), Value::Int(at)]) => {
                let mut found = call.stored(bytes)??;
                found.settle(*at);
                Ok(match found.record.state {
                    RecordState::InProgress => ClaimOutcome::InFlight(found.record),
                    RecordState::Completed => ClaimOutcome::Completed(found.record),
                })
            }
            _ => Err(unexpected("claim", key, &reply)),
        }
    }

    async fn renew(
        &self,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        lease: Duration,
    ) -> Result<Timestamp> {
        let (lease, horizon) = (clamp_ms(lease).to_string(), HORIZON_MS.to_string());
        let args: [&[u8]; 3] = [&owner(token), lease.as_bytes(), horizon.as_bytes()];
        let until = self.call("renew", ns, key).owned(&RENEW, &args).await?;
        let until = until.ok_or_else(|| Error::lease_lost(key))?;
        Ok(Timestamp::from_millis(until))
    }

    async fn complete(
        &self,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()> {
        check_value_len(&self.inner.caps, key, value)?;
        let (ttl, purge) = (ttl_arg(ttl), self.inner.purge_offset.as_bytes());
        let args: [&[u8]; 4] = [&owner(token), value, ttl.as_bytes(), purge];
        let done = self.call("complete", ns, key).owned(&COMPLETE, &args);
        done.await?.map(drop).ok_or_else(|| Error::lease_lost(key))
    }

    async fn release(&self, ns: Namespace, key: &str, token: &LeaseToken) -> Result<bool> {
        let args: [&[u8]; 1] = [&owner(token)];
        let released = self.call("release", ns, key).owned(&RELEASE, &args);
        Ok(released.await?.is_some())
    }

    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        meta: RecordMeta<'_>,
    ) -> Result<()> {
        check_value_len(&self.inner.caps, key, value)?;
        let (ttl, meta) = (ttl_arg(ttl), encode_meta(&meta));
        let purge = self.inner.purge_offset.as_bytes();
        let channel = self.inner.listener.channel.as_bytes();
        let args: [&[u8]; 5] = [value, ttl.as_bytes(), purge, &meta, channel];
        let mut call = self.call("put", ns, key);
        match call.run(&PUT, &args).await? {
            Value::Int(1) => Ok(()),
            Value::Int(_) => Err(wrong_type(key, &call.rk, "string")),
            other => Err(unexpected("put", key, other)),
        }
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool> {
        let channel = self.inner.listener.channel.as_bytes();
        let deleted = self.call("delete", ns, key).delete(b"0", channel, false);
        Ok(deleted.await? == 1)
    }

    /// Collects and sorts the matching keys, then reads records from the cursor on: an admin
    /// operation whose cost grows with the number of matching keys.
    async fn list(&self, ns: Namespace, query: &ListQuery) -> Result<Page> {
        let mut scan = self.scan(ns, &query.prefix).await?;
        let mut keys = Vec::new();
        while let Some(page) = scan.next_page().await? {
            keys.extend(page.into_iter().filter(|k| query.matches(k)));
        }
        keys.sort_unstable();
        keys.dedup();
        let (limit, include_expired) = (query.limit.max(1), query.include_expired);
        let mut records = Vec::with_capacity(limit + 1);
        for batch in keys.chunks(BATCH) {
            let reads = batch.iter().map(|k| self.fetch(ns, k, include_expired));
            let found = try_join_all(reads).await?.into_iter();
            records.extend(found.filter_map(|found| Some(found.ok()??.record)));
            if records.len() > limit {
                break;
            }
        }
        Ok(Page::from_fetched(records, limit))
    }

    async fn clear(&self, ns: Namespace) -> Result<u64> {
        self.sweep(ns, false, usize::MAX).await
    }

    async fn purge_expired(&self, ns: Namespace, limit: usize) -> Result<u64> {
        self.sweep(ns, true, limit).await
    }
}

/// Every delete and every `put` that replaces a record is announced by its script: `PUBLISH`
/// of the record's Redis key on `{escaped prefix}:invalidations`. The crate's README says how
/// the stream subscribes, tells a lost subscription and subscribes again.
impl Broadcast for RedisStore {
    fn invalidations(&self) -> Invalidations {
        Invalidations::reconnecting(self.inner.listener.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(
            glob_escape("a*b?[c]\\d:e"),
            b"a\\*b\\?\\[c\\]\\\\d:e".to_vec()
        );
    }

    #[test]
    fn durations_are_clamped_for_lua() {
        assert_eq!(clamp_ms(Duration::from_micros(1)), 1);
        assert_eq!(clamp_ms(Duration::MAX), MAX_MS);
        assert_eq!(ttl_arg(None), "");
    }
}
