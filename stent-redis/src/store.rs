//! [`RedisStore`]: the [`ResultStore`] implementation.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::try_join_all;
use redis::Value;
use stent_core::store::{check_key_len, check_value_len};
use stent_core::{
    Capabilities, Claim, ClaimOutcome, Error, ErrorKind, LeaseToken, ListQuery, Namespace, Page,
    Record, RecordMeta, RecordState, Result, ResultStore, Timestamp,
};

use crate::URL_ENV;
use crate::config::{RedisStoreBuilder, Target, Timeouts};
use crate::conn::{Conn, Scan};
use crate::error::{from_redis, unexpected, wrong_type};
use crate::hash::{decode_record, meta_args};
use crate::scripts::{self, Lua, Reply};

/// Durations are clamped to this many milliseconds (about 317 years), so that timestamps
/// stay exact in Lua's double-precision numbers.
const MAX_MS: i64 = 10_000_000_000_000;

/// Records fetched per round of a `list`.
const LIST_BATCH: usize = 64;

/// A [`ResultStore`] in Redis, standalone or Redis Cluster.
///
/// Each record is one Redis hash at `{prefix}:{namespace}:{key}`; every transition is one
/// Lua script on that one key (a read: one `HGETALL`; a claim pipelines one before its
/// script), so it is atomic, and cluster-safe by construction. Leases and expiry are decided by the server's clock, in
/// milliseconds; expired records are deleted by Redis itself (native TTL). Clones share one connection, which reconnects by
/// itself after a server restart or a failover: calls made while the server is away fail
/// with the retryable [`ErrorKind::Unavailable`](stent_core::ErrorKind::Unavailable).
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> stent_core::Result<()> {
/// use stent_core::Stent;
/// use stent_redis::RedisStore;
///
/// let stent = Stent::new(RedisStore::connect("redis://127.0.0.1:6379").await?);
/// # let _ = stent; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    shown: String,
    prefix: String,
    /// `{prefix}:{namespace}:` of the idempotency and the cache namespace, built once:
    /// every call starts its key with one.
    bases: [String; 2],
    caps: Capabilities,
    grace_ms: String,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.inner.conn {
            Conn::Standalone(_) => "standalone",
            Conn::Cluster(_) => "cluster",
        };
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
    pub async fn connect(url: impl Into<String>) -> Result<Self> {
        Self::builder().url(url).build().await
    }

    /// Connects to the URL in the `STENT_REDIS_URL` environment variable.
    pub async fn from_env() -> Result<Self> {
        match std::env::var(URL_ENV) {
            Ok(url) if !url.trim().is_empty() => Self::connect(url.trim()).await,
            _ => Err(Error::config(format!(
                "{URL_ENV} is not set; set it to a URL such as redis://127.0.0.1:6379"
            ))),
        }
    }

    /// A builder, for a prefix, timeouts or a cluster.
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder::new()
    }

    /// The key prefix: every record lives at `{prefix}:{namespace}:{key}`.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    pub(crate) async fn open(
        target: Target,
        shown: String,
        prefix: String,
        timeouts: Timeouts,
        max_value_len: usize,
        grace: Duration,
    ) -> Result<Self> {
        let conn = Conn::open(&target, timeouts)
            .await
            .map_err(|e| from_redis(e, &format!("connecting to {shown}"), None))?;
        let caps = Capabilities::new()
            .native_ttl(true)
            .server_clock(true)
            .shared(true)
            .durable(true)
            .max_value_len(Some(max_value_len));
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn,
                shown,
                bases: [Namespace::Idempotency, Namespace::Cache]
                    .map(|ns| format!("{prefix}:{}:", ns.as_str())),
                prefix,
                caps,
                grace_ms: clamp_ms(grace).to_string(),
            }),
        })
    }

    /// `{prefix}:{namespace}:`, the start of every key of the namespace.
    fn base(&self, ns: Namespace) -> &str {
        match ns {
            Namespace::Idempotency => &self.inner.bases[0],
            Namespace::Cache => &self.inner.bases[1],
        }
    }

    fn redis_key(&self, ns: Namespace, key: &str) -> Vec<u8> {
        let base = self.base(ns);
        let mut k = Vec::with_capacity(base.len() + key.len());
        k.extend_from_slice(base.as_bytes());
        k.extend_from_slice(key.as_bytes());
        k
    }

    /// Runs `script` on the record of `key`, turning a foreign type into a typed error.
    async fn run(
        &self,
        op: &str,
        script: &Lua,
        redis_key: &[u8],
        key: &str,
        args: &[&[u8]],
    ) -> Result<Reply> {
        let mut conn = self.inner.conn.clone();
        let value = script
            .invoke(&mut conn, redis_key, args)
            .await
            .map_err(|e| from_redis(e, op, Some(key)))?;
        checked(op, redis_key, key, value)
    }

    /// One round of a claim: `HGETALL` of the key, then the script, in one pipeline (one
    /// round trip, one node). The script only decides; when it finds the key completed or
    /// in flight, the record comes from the `HGETALL` reply (empty when the key was absent,
    /// as on a first call).
    async fn claim_round(
        &self,
        redis_key: &[u8],
        key: &str,
        args: &[&[u8]],
    ) -> Result<(Reply, redis::RedisResult<Value>)> {
        let mut hgetall = redis::cmd("HGETALL");
        hgetall.arg(redis_key);
        let mut conn = self.inner.conn.clone();
        let (fields, script) = scripts::CLAIM
            .invoke_after(&mut conn, hgetall, redis_key, args)
            .await
            .map_err(|e| from_redis(e, "claim", Some(key)))?;
        Ok((checked("claim", redis_key, key, script)?, fields))
    }

    /// Reads one record; `include_expired` keeps records past their expiry.
    ///
    /// One round trip to the key's own node, no script. Expiry is judged by the server's
    /// clock. A record Redis deletes before it expires (`purge_ms` before `expires_ms`, as
    /// written without a grace) needs no clock at all: Redis never returns a key past its
    /// `PEXPIREAT`, so a record that is there is live, and the read is a lone `HGETALL`.
    /// With a grace, the read pipelines the key's `PTTL`: the server's time is `purge_ms`
    /// less the `PTTL`. A record without `purge_ms` (written before it existed) costs a
    /// second trip for `TIME`.
    async fn fetch(
        &self,
        ns: Namespace,
        key: &str,
        include_expired: bool,
    ) -> Result<Option<Record>> {
        let rk = self.redis_key(ns, key);
        let mut conn = self.inner.conn.clone();
        let (fields, pttl) = if self.inner.grace_ms == "0" || include_expired {
            let fields = redis::cmd("HGETALL").arg(&rk).query_async(&mut conn).await;
            (fields, None)
        } else {
            let mut pipe = redis::pipe();
            pipe.ignore_errors()
                .cmd("HGETALL")
                .arg(&rk)
                .cmd("PTTL")
                .arg(&rk);
            let replies: Vec<redis::RedisResult<Value>> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| from_redis(e, "get", Some(key)))?;
            let mut replies = replies.into_iter();
            let (Some(fields), Some(pttl)) = (replies.next(), replies.next()) else {
                return Err(unexpected("get", Some(key), "fewer than two replies"));
            };
            (fields, Some(pttl))
        };
        let Some(pairs) = hash_pairs(&mut conn, fields, &rk, "get", key).await? else {
            return Ok(None);
        };
        let record = decode_record(key, &pairs)?;
        let Some(expires_at) = record.expires_at else {
            return Ok(Some(record));
        };
        if include_expired {
            return Ok(Some(record));
        }
        let purge_ms = pairs
            .chunks_exact(2)
            .find(|pair| pair[0] == b"purge_ms")
            .and_then(|pair| std::str::from_utf8(&pair[1]).ok()?.parse::<i64>().ok());
        if purge_ms.is_some_and(|p| p < expires_at.as_millis()) {
            return Ok(Some(record));
        }
        let pttl = pttl
            .and_then(|r| r.ok())
            .and_then(|v| redis::from_redis_value::<i64>(v).ok());
        let now = match (purge_ms, pttl) {
            (Some(purge_ms), Some(pttl)) if pttl >= 0 => Timestamp::from_millis(purge_ms - pttl),
            _ => {
                let time = redis::cmd("TIME").query_async(&mut conn).await;
                server_time(time).map_err(|e| from_redis(e, "get", Some(key)))?
            }
        };
        if record.is_expired(now) {
            return Ok(None);
        }
        Ok(Some(record))
    }

    /// Pages of the keys of `ns` that start with `prefix`, found by `SCAN` (on every
    /// master of a cluster), unsorted and possibly repeated.
    async fn pages(&self, ns: Namespace, prefix: &str) -> Result<KeyPages> {
        let base = self.base(ns).to_owned();
        let mut pattern = glob_escape(&base);
        pattern.extend(glob_escape(prefix));
        pattern.push(b'*');
        let scan = self
            .inner
            .conn
            .scan(pattern)
            .await
            .map_err(|e| from_redis(e, "scan", None))?;
        Ok(KeyPages {
            scan,
            base,
            prefix: prefix.to_owned(),
        })
    }

    /// Deletes `keys` (only the expired ones when `expired_only`); returns how many went.
    async fn delete_many(&self, ns: Namespace, keys: &[String], expired_only: bool) -> Result<u64> {
        let flag: &[u8] = if expired_only { b"1" } else { b"0" };
        let deleted = try_join_all(keys.iter().map(|key| async move {
            let rk = self.redis_key(ns, key);
            let reply = self
                .run("delete", &scripts::DELETE, &rk, key, &[flag])
                .await?;
            Ok::<_, Error>(u64::from(reply.tag == "deleted"))
        }))
        .await?;
        Ok(deleted.into_iter().sum())
    }
}

/// A scan of one namespace, yielding stent keys.
struct KeyPages {
    scan: Scan,
    base: String,
    prefix: String,
}

impl KeyPages {
    async fn next(&mut self) -> Result<Option<Vec<String>>> {
        let Some(page) = self
            .scan
            .next_page()
            .await
            .map_err(|e| from_redis(e, "scan", None))?
        else {
            return Ok(None);
        };
        Ok(Some(
            page.into_iter()
                .filter_map(|k| k.strip_prefix(self.base.as_bytes()).map(<[u8]>::to_vec))
                .filter_map(|k| String::from_utf8(k).ok())
                .filter(|k| k.starts_with(self.prefix.as_str()))
                .collect(),
        ))
    }
}

/// A script's reply, with the foreign-type and corrupt-record replies turned into errors.
fn checked(op: &str, redis_key: &[u8], key: &str, value: Value) -> Result<Reply> {
    let reply =
        Reply::parse(value).map_err(|other| unexpected(op, Some(key), &format!("{other:?}")))?;
    match reply.tag.as_str() {
        "wrongtype" => Err(wrong_type(key, redis_key, reply.text(0).unwrap_or("value"))),
        "corrupt" => Err(Error::decode(
            key,
            format!(
                "Redis hash {:?} is not a valid stent record (field `{}`); it was left untouched",
                String::from_utf8_lossy(redis_key),
                reply.text(0).unwrap_or("?")
            ),
        )),
        _ => Ok(reply),
    }
}

/// The field/value pairs of an `HGETALL` reply; `None` when the key is absent.
async fn hash_pairs(
    conn: &mut Conn,
    reply: redis::RedisResult<Value>,
    redis_key: &[u8],
    op: &str,
    key: &str,
) -> Result<Option<Vec<Vec<u8>>>> {
    let fields = match reply {
        Ok(fields) => fields,
        Err(e) if e.code() == Some("WRONGTYPE") => {
            let found: String = redis::cmd("TYPE")
                .arg(redis_key)
                .query_async(conn)
                .await
                .map_err(|e| from_redis(e, op, Some(key)))?;
            return Err(wrong_type(key, redis_key, &found));
        }
        Err(e) => return Err(from_redis(e, op, Some(key))),
    };
    let pairs = match fields {
        Value::Array(items) => items,
        Value::Map(pairs) => pairs.into_iter().flat_map(|(f, v)| [f, v]).collect(),
        other => return Err(unexpected(op, Some(key), &format!("{other:?}"))),
    };
    if pairs.is_empty() {
        return Ok(None);
    }
    pairs
        .into_iter()
        .map(|v| match v {
            Value::BulkString(b) => Ok(b),
            other => Err(unexpected(op, Some(key), &format!("{other:?}"))),
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// The reply of `TIME` (seconds and microseconds) as a timestamp.
fn server_time(reply: redis::RedisResult<Value>) -> redis::RedisResult<Timestamp> {
    let (secs, micros): (i64, i64) = redis::from_redis_value(reply?)?;
    Ok(Timestamp::from_millis(secs * 1000 + micros / 1000))
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
        self.fetch(ns, key, false).await
    }

    async fn claim(&self, ns: Namespace, key: &str, claim: &Claim<'_>) -> Result<ClaimOutcome> {
        check_key_len(&self.inner.caps, key)?;
        let rk = self.redis_key(ns, key);
        let lease = clamp_ms(claim.lease).to_string();
        let mut args: Vec<&[u8]> = vec![claim.token.as_str().as_bytes(), lease.as_bytes()];
        args.extend(meta_args(&claim.meta).into_iter().map(str::as_bytes));
        // A few rounds at most: another round is needed only when the record changed
        // between the read and the script pipelined after it, which needs another writer
        // to act in that instant.
        for _ in 0..8 {
            let (reply, fields) = self.claim_round(&rk, key, &args).await?;
            match reply.tag.as_str() {
                "acquired" => {
                    return match (reply.int(0), reply.int(1)) {
                        (Some(attempt), Some(until)) => Ok(ClaimOutcome::Acquired {
                            attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                            lease_expires_at: Timestamp::from_millis(until),
                        }),
                        _ => Err(unexpected("claim", Some(key), "malformed acquired reply")),
                    };
                }
                tag @ ("completed" | "in_flight") => {
                    let mut conn = self.inner.conn.clone();
                    let Some(pairs) = hash_pairs(&mut conn, fields, &rk, "claim", key).await?
                    else {
                        continue;
                    };
                    let record = decode_record(key, &pairs)?;
                    match record.state {
                        // The record read must be the one the script found completed.
                        RecordState::Completed
                            if tag == "completed"
                                && reply.int(0) == Some(record.created_at.as_millis())
                                && reply.int(1)
                                    == record.completed_at.map(Timestamp::as_millis) =>
                        {
                            return Ok(ClaimOutcome::Completed(record));
                        }
                        RecordState::InProgress if tag == "in_flight" => {
                            return Ok(ClaimOutcome::InFlight(record));
                        }
                        _ => continue,
                    }
                }
                other => return Err(unexpected("claim", Some(key), other)),
            }
        }
        Err(Error::new(ErrorKind::Busy, "claim kept racing with other writers").with_key(key))
    }

    async fn renew(
        &self,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        lease: Duration,
    ) -> Result<Timestamp> {
        let rk = self.redis_key(ns, key);
        let lease = clamp_ms(lease).to_string();
        let args: [&[u8]; 2] = [token.as_str().as_bytes(), lease.as_bytes()];
        let reply = self.run("renew", &scripts::RENEW, &rk, key, &args).await?;
        match (reply.tag.as_str(), reply.int(0)) {
            ("renewed", Some(until)) => Ok(Timestamp::from_millis(until)),
            ("lost", _) => Err(Error::lease_lost(key)),
            (other, _) => Err(unexpected("renew", Some(key), other)),
        }
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
        let rk = self.redis_key(ns, key);
        let ttl = ttl_arg(ttl);
        let args: [&[u8]; 4] = [
            token.as_str().as_bytes(),
            value,
            ttl.as_bytes(),
            self.inner.grace_ms.as_bytes(),
        ];
        let reply = self
            .run("complete", &scripts::COMPLETE, &rk, key, &args)
            .await?;
        match reply.tag.as_str() {
            "completed" => Ok(()),
            "lost" => Err(Error::lease_lost(key)),
            other => Err(unexpected("complete", Some(key), other)),
        }
    }

    async fn release(&self, ns: Namespace, key: &str, token: &LeaseToken) -> Result<bool> {
        let rk = self.redis_key(ns, key);
        let reply = self
            .run(
                "release",
                &scripts::RELEASE,
                &rk,
                key,
                &[token.as_str().as_bytes()],
            )
            .await?;
        match reply.tag.as_str() {
            "released" => Ok(true),
            "kept" => Ok(false),
            other => Err(unexpected("release", Some(key), other)),
        }
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
        let ttl = ttl_arg(ttl);
        let mut args: Vec<&[u8]> = vec![value, ttl.as_bytes(), self.inner.grace_ms.as_bytes()];
        args.extend(meta_args(&meta).into_iter().map(str::as_bytes));
        let reply = self.run("put", &scripts::PUT, &rk, key, &args).await?;
        match reply.tag.as_str() {
            "stored" => Ok(()),
            other => Err(unexpected("put", Some(key), other)),
        }
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool> {
        Ok(self.delete_many(ns, &[key.to_owned()], false).await? == 1)
    }

    /// Collects the matching keys of the namespace with `SCAN` (on every master of a
    /// cluster), sorts them by their UTF-8 bytes, then reads records from the cursor on:
    /// an admin operation whose cost grows with the number of matching keys.
    async fn list(&self, ns: Namespace, query: &ListQuery) -> Result<Page> {
        let mut pages = self.pages(ns, &query.prefix).await?;
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await? {
            keys.extend(page.into_iter().filter(|k| query.matches(k)));
        }
        keys.sort_unstable();
        keys.dedup();

        let limit = query.limit.max(1);
        let mut records = Vec::with_capacity(limit + 1);
        for batch in keys.chunks(LIST_BATCH) {
            let fetched = try_join_all(
                batch
                    .iter()
                    .map(|key| self.fetch(ns, key, query.include_expired)),
            )
            .await?;
            records.extend(fetched.into_iter().flatten());
            if records.len() > limit {
                break;
            }
        }
        let next_cursor = if records.len() > limit {
            records.truncate(limit);
            records.last().map(|r| r.key.clone())
        } else {
            None
        };
        Ok(Page::new(records, next_cursor))
    }

    async fn clear(&self, ns: Namespace) -> Result<u64> {
        let mut pages = self.pages(ns, "").await?;
        let mut deleted = 0;
        while let Some(keys) = pages.next().await? {
            deleted += self.delete_many(ns, &keys, false).await?;
        }
        Ok(deleted)
    }

    async fn purge_expired(&self, ns: Namespace, limit: usize) -> Result<u64> {
        let limit = limit as u64;
        let mut pages = self.pages(ns, "").await?;
        let mut purged = 0;
        while purged < limit {
            let Some(keys) = pages.next().await? else {
                break;
            };
            for chunk in keys.chunks(LIST_BATCH) {
                let room = usize::try_from(limit - purged).unwrap_or(usize::MAX);
                if room == 0 {
                    break;
                }
                purged += self
                    .delete_many(ns, &chunk[..chunk.len().min(room)], true)
                    .await?;
            }
        }
        Ok(purged)
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
