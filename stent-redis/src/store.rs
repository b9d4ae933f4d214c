//! [`RedisStore`]: the [`ResultStore`] implementation.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::try_join_all;
use redis::{RedisResult, Script, Value};
use stent_core::store::{check_key_len, check_value_len};
use stent_core::{
    Capabilities, Claim, ClaimOutcome, Error, ErrorKind, LeaseToken, ListQuery, Namespace, Page,
    Record, RecordMeta, RecordState, Result, ResultStore, Timestamp,
};

use crate::ENV_URL;
use crate::broadcast::{self, Listener};
use crate::config::{RedisStoreBuilder, Target};
use crate::conn::{Conn, Scan};
use crate::error::{from_redis, unexpected, wrong_type};
use crate::layout::{
    HORIZON_MS, Stored, claim_record, decode, encode_meta, is_record, key_base, owner,
};
use crate::scripts;

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
    /// `{escaped prefix}:{namespace}:` of each namespace ([`key_base`]), by [`Namespace`] order.
    bases: [String; Namespace::ALL.len()],
    caps: Capabilities,
    /// The expiry grace in milliseconds, and how long after its expiry Redis deletes a
    /// record, as the text the scripts take (`-1` without a grace: see `common.lua`).
    grace: i64,
    purge_offset: String,
    /// Where deletes and overwrites are announced, and how to subscribe to them.
    listener: Listener,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cluster = matches!(self.inner.conn, Conn::Cluster(..));
        let mode = if cluster { "cluster" } else { "standalone" };
        f.debug_struct("RedisStore")
            .field("target", &self.inner.shown)
            .field("mode", &mode)
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

    pub(crate) async fn open(target: &Target, b: RedisStoreBuilder) -> Result<Self> {
        let conn = Conn::open(target, b.timeouts).await;
        let conn = conn.map_err(|e| from_redis(e, &format!("connecting to {}", b.shown), None))?;
        let grace = clamp_ms(b.expiry_grace);
        let bases = Namespace::ALL.map(|ns| key_base(&b.prefix, ns));
        let listener = Listener {
            clients: target.subscribers(),
            channel: broadcast::channel(&bases),
            bases: bases.clone(),
            connect_timeout: b.timeouts.connect,
        };
        let inner = Arc::new(Inner {
            conn,
            shown: b.shown,
            listener,
            bases,
            prefix: b.prefix,
            caps: Capabilities::new()
                .native_ttl(true)
                .server_clock(true)
                .shared(true)
                .durable(true)
                .max_value_len(Some(b.max_value_len)),
            grace,
            purge_offset: (if grace == 0 { -1 } else { grace }).to_string(),
        });
        Ok(RedisStore { inner })
    }

    fn base(&self, ns: Namespace) -> &str {
        &self.inner.bases[ns as usize]
    }

    fn redis_key(&self, ns: Namespace, key: &str) -> Vec<u8> {
        [self.base(ns).as_bytes(), key.as_bytes()].concat()
    }

    /// Runs `script` on the record of `key`; a key of another type is the error naming it.
    async fn run(
        &self,
        op: &str,
        script: &Script,
        rk: &[u8],
        key: &str,
        args: &[&[u8]],
    ) -> Result<Value> {
        let mut conn = self.inner.conn.clone();
        let reply = script.key(rk).arg(args).invoke_async(&mut conn).await;
        typed(&mut conn, reply, rk, op, key)
            .await?
            .map_err(|found| wrong_type(key, rk, &found))
    }

    /// Runs the script of a token (`renew`, `complete`, `release`, whose first argument is
    /// [`owner`]): its number when the token owns the record, else `None` (someone else's
    /// record, or nothing). A key holding no record, or a broken one, is an error.
    async fn run_owned(
        &self,
        op: &str,
        script: &Script,
        ns: Namespace,
        key: &str,
        args: &[&[u8]],
    ) -> Result<Option<i64>> {
        let rk = self.redis_key(ns, key);
        match self.run(op, script, &rk, key, args).await? {
            Value::Int(n) => Ok(Some(n)),
            Value::Nil => Ok(None),
            Value::BulkString(bytes) => stored(key, &rk, &bytes).map(|_| None),
            other => Err(unexpected(op, key, other)),
        }
    }

    /// Reads one record; `include_expired` keeps records past their expiry. A lone `GET`
    /// without a grace; with one (or for a record that `GET` finds in progress, or with an
    /// expiry but no `purge_ms`), `GET`, `PEXPIRETIME` and `TIME` in one transaction.
    async fn fetch(&self, ns: Namespace, key: &str, include_expired: bool) -> Result<Found> {
        let rk = self.redis_key(ns, key);
        let mut conn = self.inner.conn.clone();
        if self.inner.grace == 0 || include_expired {
            let reply = redis::cmd("GET").arg(&rk).query_async(&mut conn).await;
            match found(&mut conn, reply, &rk, "get", key).await? {
                Found::Record(s)
                    if s.unsettled.is_some() || !(include_expired || s.live_while_present()) => {}
                found => return Ok(found),
            }
        }
        let mut pipe = redis::pipe();
        pipe.atomic().get(&rk);
        pipe.cmd("PEXPIRETIME").arg(&rk).cmd("TIME");
        let read: RedisResult<(Value, i64, (i64, i64))> = pipe.query_async(&mut conn).await;
        let (reply, at, now) = match read {
            Ok((reply, at, (secs, micros))) => (Ok(reply), at, secs * 1000 + micros / 1000),
            Err(e) => (Err(e), 0, 0),
        };
        let mut stored = match found(&mut conn, reply, &rk, "get", key).await? {
            Found::Record(stored) => stored,
            found => return Ok(found),
        };
        stored.settle(at);
        if !include_expired && stored.record.is_expired(Timestamp::from_millis(now)) {
            return Ok(Found::Absent);
        }
        Ok(Found::Record(stored))
    }

    /// A `SCAN` of the keys of `ns` that start with `prefix` (on every master of a cluster).
    async fn scan(&self, ns: Namespace, prefix: &str) -> Result<Scan> {
        let mut pattern = glob_escape(self.base(ns));
        pattern.extend(glob_escape(prefix));
        pattern.push(b'*');
        let scan = self.inner.conn.scan(pattern).await;
        scan.map_err(|e| from_redis(e, "scan", None))
    }

    /// The stent keys of the next page of `scan`, a scan of `ns`; `None` once it is done.
    /// Like `SCAN` itself, it may return a key twice.
    async fn next_keys(&self, ns: Namespace, scan: &mut Scan) -> Result<Option<Vec<String>>> {
        let page = scan.next_page().await;
        let page = page.map_err(|e| from_redis(e, "scan", None))?;
        let base = self.base(ns).as_bytes();
        Ok(page.map(|keys| {
            keys.into_iter()
                .filter_map(|k| String::from_utf8(k.strip_prefix(base)?.to_vec()).ok())
                .collect()
        }))
    }

    /// Deletes `keys` (only the expired ones when `expired_only`); returns how many went.
    /// A key that holds something other than a record is an error, unless `skip_foreign`
    /// (`clear` and `purge` pass over what is not theirs).
    async fn delete_many(
        &self,
        ns: Namespace,
        keys: &[String],
        expired_only: bool,
        skip_foreign: bool,
    ) -> Result<u64> {
        let flag: &[u8] = if expired_only { b"1" } else { b"0" };
        let channel = self.inner.listener.channel.as_bytes();
        let deleted = try_join_all(keys.iter().map(|key| async move {
            let rk = self.redis_key(ns, key);
            match self
                .run("delete", &scripts::DELETE, &rk, key, &[flag, channel])
                .await
            {
                Ok(Value::Int(n)) if n >= 0 => Ok(n.unsigned_abs()),
                Ok(Value::Int(_)) if !skip_foreign => Err(wrong_type(key, &rk, "string")),
                Err(e) if !skip_foreign || e.kind() != ErrorKind::Decode => Err(e),
                Ok(Value::Int(_)) | Err(_) => Ok(0),
                Ok(other) => Err(unexpected("delete", key, other)),
            }
        }))
        .await?;
        Ok(deleted.into_iter().sum())
    }
}

/// What a read found at a record's key.
#[allow(clippy::large_enum_variant)] // moved once per read; boxing would allocate on every hit
enum Found {
    Absent,
    /// Something that is not a record: a value of this type (a string without the mark
    /// is `string`), never touched.
    Foreign(String),
    Record(Stored),
}

/// `reply`, or the type the key holds when the command met a key of a type it cannot work
/// on (`WRONGTYPE`).
async fn typed(
    conn: &mut Conn,
    reply: RedisResult<Value>,
    rk: &[u8],
    op: &str,
    key: &str,
) -> Result<std::result::Result<Value, String>> {
    match reply {
        Err(e) if e.code() == Some("WRONGTYPE") => {
            let found = redis::cmd("TYPE").arg(rk).query_async(conn).await;
            Ok(Err(found.map_err(|e| from_redis(e, op, Some(key)))?))
        }
        reply => reply.map(Ok).map_err(|e| from_redis(e, op, Some(key))),
    }
}

/// Reads the reply of a `GET` (or `SET … GET`) of a record's key.
async fn found(
    conn: &mut Conn,
    reply: RedisResult<Value>,
    rk: &[u8],
    op: &str,
    key: &str,
) -> Result<Found> {
    match typed(conn, reply, rk, op, key).await? {
        Ok(Value::Nil) => Ok(Found::Absent),
        Ok(Value::BulkString(bytes)) if is_record(&bytes) => {
            Ok(Found::Record(decode(key, &bytes)?))
        }
        Ok(Value::BulkString(_)) => Ok(Found::Foreign("string".to_owned())),
        Ok(other) => Err(unexpected(op, key, other)),
        Err(found) => Ok(Found::Foreign(found)),
    }
}

/// The record in `bytes`, read from `rk`; a string that is not a record is an error.
fn stored(key: &str, rk: &[u8], bytes: &[u8]) -> Result<Stored> {
    if is_record(bytes) {
        decode(key, bytes)
    } else {
        Err(wrong_type(key, rk, "string"))
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
    for &b in s.as_bytes() {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
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
        match self.fetch(ns, key, false).await? {
            Found::Absent => Ok(None),
            Found::Record(stored) => Ok(Some(stored.record)),
            Found::Foreign(found) => Err(wrong_type(key, &self.redis_key(ns, key), &found)),
        }
    }

    /// The lease of a key claimed by the native `SET` (see the crate's README) is reported
    /// as ending `lease` after the client sent the claim, by the client's clock: the server
    /// decides when it lapses, by its own.
    async fn claim(&self, ns: Namespace, key: &str, claim: &Claim<'_>) -> Result<ClaimOutcome> {
        check_key_len(&self.inner.caps, key)?;
        if claim.token.as_str().contains('|') {
            let message = "a lease token containing `|` cannot be stored in a Redis record";
            return Err(Error::new(ErrorKind::Unsupported, message).with_key(key));
        }
        let rk = self.redis_key(ns, key);
        let lease = clamp_ms(claim.lease);
        let claimed = claim_record(claim.token, lease, &encode_meta(&claim.meta));
        // First one native command, `SET key claimed NX GET PX {lease + horizon}`, whose reply
        // alone decides most claims (the crate's README says how and why).
        let sent = Timestamp::now();
        let mut conn = self.inner.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(&rk).arg(&claimed).arg(&["NX", "GET", "PX"][..]);
        let reply = cmd.arg(lease + HORIZON_MS).query_async(&mut conn).await;
        let acquired = ClaimOutcome::Acquired {
            attempt: 1,
            lease_expires_at: sent.add(claim.lease),
        };
        match found(&mut conn, reply, &rk, "claim", key).await? {
            Found::Absent => return Ok(acquired),
            Found::Foreign(found) => return Err(wrong_type(key, &rk, &found)),
            Found::Record(s)
                if s.record.state == RecordState::Completed && s.live_while_present() =>
            {
                return Ok(ClaimOutcome::Completed(s.record));
            }
            Found::Record(_) => {}
        }
        let n = owner(claim.token).len();
        let (px, lease) = ((lease + HORIZON_MS).to_string(), lease.to_string());
        let args: [&[u8]; 4] = [
            &claimed[..n],
            &claimed[n + 1..],
            px.as_bytes(),
            lease.as_bytes(),
        ];
        match self.run("claim", &scripts::CLAIM, &rk, key, &args).await? {
            Value::Array(reply) => match reply.as_slice() {
                [Value::Int(attempt), Value::Int(until)] => Ok(ClaimOutcome::Acquired {
                    attempt: u32::try_from(*attempt).unwrap_or(u32::MAX),
                    lease_expires_at: Timestamp::from_millis(*until),
                }),
                [Value::BulkString(bytes), Value::Int(at)] => {
                    let mut found = stored(key, &rk, bytes)?;
                    found.settle(*at);
                    Ok(match found.record.state {
                        RecordState::InProgress => ClaimOutcome::InFlight(found.record),
                        RecordState::Completed => ClaimOutcome::Completed(found.record),
                    })
                }
                _ => Err(unexpected("claim", key, reply)),
            },
            other => Err(unexpected("claim", key, other)),
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
        let renewed = self.run_owned("renew", &scripts::RENEW, ns, key, &args);
        let until = renewed.await?.map(Timestamp::from_millis);
        until.ok_or_else(|| Error::lease_lost(key))
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
        let done = self.run_owned("complete", &scripts::COMPLETE, ns, key, &args);
        done.await?.map(drop).ok_or_else(|| Error::lease_lost(key))
    }

    async fn release(&self, ns: Namespace, key: &str, token: &LeaseToken) -> Result<bool> {
        let args: [&[u8]; 1] = [&owner(token)];
        let released = self.run_owned("release", &scripts::RELEASE, ns, key, &args);
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
        check_key_len(&self.inner.caps, key)?;
        check_value_len(&self.inner.caps, key, value)?;
        let rk = self.redis_key(ns, key);
        let (ttl, meta) = (ttl_arg(ttl), encode_meta(&meta));
        let purge = self.inner.purge_offset.as_bytes();
        let channel = self.inner.listener.channel.as_bytes();
        let args: [&[u8]; 5] = [value, ttl.as_bytes(), purge, &meta, channel];
        match self.run("put", &scripts::PUT, &rk, key, &args).await? {
            Value::Int(1) => Ok(()),
            Value::Int(_) => Err(wrong_type(key, &rk, "string")),
            other => Err(unexpected("put", key, other)),
        }
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool> {
        let keys = [key.to_owned()];
        Ok(self.delete_many(ns, &keys, false, false).await? == 1)
    }

    /// Collects the matching keys with `SCAN`, sorts them, then reads records from the cursor
    /// on: an admin operation whose cost grows with the number of matching keys.
    async fn list(&self, ns: Namespace, query: &ListQuery) -> Result<Page> {
        let mut scan = self.scan(ns, &query.prefix).await?;
        let mut keys = Vec::new();
        while let Some(page) = self.next_keys(ns, &mut scan).await? {
            keys.extend(page.into_iter().filter(|k| query.matches(k)));
        }
        keys.sort_unstable();
        keys.dedup();
        let (limit, include_expired) = (query.limit.max(1), query.include_expired);
        let mut records = Vec::with_capacity(limit + 1);
        for batch in keys.chunks(BATCH) {
            let reads = batch.iter().map(|k| self.fetch(ns, k, include_expired));
            for found in try_join_all(reads).await? {
                if let Found::Record(stored) = found {
                    records.push(stored.record);
                }
            }
            if records.len() > limit {
                break;
            }
        }
        Ok(Page::from_fetched(records, limit))
    }

    async fn clear(&self, ns: Namespace) -> Result<u64> {
        let mut scan = self.scan(ns, "").await?;
        let mut deleted = 0;
        while let Some(keys) = self.next_keys(ns, &mut scan).await? {
            deleted += self.delete_many(ns, &keys, false, true).await?;
        }
        Ok(deleted)
    }

    async fn purge_expired(&self, ns: Namespace, limit: usize) -> Result<u64> {
        let mut scan = self.scan(ns, "").await?;
        let mut purged = 0;
        while let Some(keys) = self.next_keys(ns, &mut scan).await? {
            // Every key of the page in turn, no more at once than may still be deleted: a
            // call that ends short of `limit` has examined every key of the sweep.
            let mut rest = &keys[..];
            while !rest.is_empty() {
                let room = limit.saturating_sub(usize::try_from(purged).unwrap_or(usize::MAX));
                if room == 0 {
                    return Ok(purged);
                }
                let (chunk, after) = rest.split_at(rest.len().min(room).min(BATCH));
                purged += self.delete_many(ns, chunk, true, true).await?;
                rest = after;
            }
        }
        Ok(purged)
    }
}

/// Every delete (so every `clear` and the CLI's `rm`) and every `put` that replaces a record
/// is announced on the channel `{escaped prefix}:invalidations` by the script that makes it,
/// in the same round trip: `PUBLISH` of the record's Redis key.
///
/// The stream subscribes with a connection of its own (`SUBSCRIBE`; on a cluster, through
/// one seed node at a time, as Redis Cluster forwards every `PUBLISH` to every node), checks
/// it with a `PING` after each second without a message, and takes it as lost when the
/// connection closes or a `PING` goes unanswered for a second; it then yields
/// [`Invalidation::Lost`](stent_core::broadcast::Invalidation::Lost) and subscribes again
/// (after 20 ms, doubling up to 1 s between failed attempts).
impl stent_core::broadcast::Broadcast for RedisStore {
    fn invalidations(&self) -> stent_core::broadcast::Invalidations {
        self.inner.listener.invalidations()
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
