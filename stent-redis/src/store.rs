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
    Record, RecordMeta, Result, ResultStore, Timestamp,
};

use crate::ENV_URL;
use crate::config::{RedisStoreBuilder, Target, Timeouts};
use crate::conn::{Conn, Scan};
use crate::error::{from_redis, unexpected, wrong_type};
use crate::layout::{Stored, decode, encode_meta, is_record, key_base};
use crate::scripts::{self, Lua, Reply};

/// Durations are clamped to this many milliseconds (about 317 years), so that timestamps
/// stay exact in Lua's double-precision numbers.
const MAX_MS: i64 = 10_000_000_000_000;

/// Records fetched per round of a `list`.
const LIST_BATCH: usize = 64;

/// A [`ResultStore`] in Redis, standalone or Redis Cluster.
///
/// Each record is one Redis string at `{prefix}:{namespace}:{key}` (with `%` and `:` in the
/// prefix written `%25` and `%3A`, so that no two prefixes share keys), and every operation
/// one atomic step on that one key, so it is cluster-safe by construction: a read is one
/// `GET` (with a `PTTL` in the same round trip when an expiry grace is set), and every
/// other operation on a record is one Lua script, the same on every call (the crate's
/// README lists what each operation sends). Leases and expiry are decided by the server's
/// clock, in milliseconds; expired records are deleted by Redis itself (native TTL). Clones
/// share one connection, which reconnects by
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
    /// `{escaped prefix}:{namespace}:` of each namespace (see [`key_base`]), in the order
    /// of [`Namespace::ALL`], built once: every call starts its key with one.
    bases: [String; 3],
    caps: Capabilities,
    /// The expiry grace in milliseconds, and as the text the scripts take.
    grace: i64,
    grace_ms: String,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.inner.conn {
            Conn::Standalone(_) => "standalone",
            Conn::Cluster(..) => "cluster",
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
                bases: Namespace::ALL.map(|ns| key_base(&prefix, ns)),
                prefix,
                caps,
                grace: clamp_ms(grace),
                grace_ms: clamp_ms(grace).to_string(),
            }),
        })
    }

    /// `{escaped prefix}:{namespace}:`, the start of every key of the namespace.
    fn base(&self, ns: Namespace) -> &str {
        match ns {
            Namespace::Idempotency => &self.inner.bases[0],
            Namespace::Cache => &self.inner.bases[1],
            Namespace::Progress => &self.inner.bases[2],
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

    /// Reads one record; `include_expired` keeps records past their expiry.
    ///
    /// One round trip to the key's own node, no script. Expiry is judged by the server's
    /// clock. A record Redis deletes before it expires (`purge_ms` before `expires_ms`, as
    /// written without a grace) needs no clock at all: Redis never returns a key past its
    /// `PEXPIREAT`, so a record that is there is live, and the read is a lone `GET`. With a
    /// grace, the read pipelines the key's `PTTL`: the server's time is `purge_ms` less the
    /// `PTTL` (a `TIME` only for a key someone stripped of its expiry).
    async fn fetch(&self, ns: Namespace, key: &str, include_expired: bool) -> Result<Found> {
        let rk = self.redis_key(ns, key);
        let mut conn = self.inner.conn.clone();
        let (reply, pttl) = if self.inner.grace == 0 || include_expired {
            let reply = redis::cmd("GET").arg(&rk).query_async(&mut conn).await;
            (reply, None)
        } else {
            let mut pipe = redis::pipe();
            pipe.ignore_errors()
                .cmd("GET")
                .arg(&rk)
                .cmd("PTTL")
                .arg(&rk);
            let replies: Vec<redis::RedisResult<Value>> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| from_redis(e, "get", Some(key)))?;
            let mut replies = replies.into_iter();
            let (Some(reply), Some(pttl)) = (replies.next(), replies.next()) else {
                return Err(unexpected("get", Some(key), "fewer than two replies"));
            };
            (reply, Some(pttl))
        };
        let stored = match found(&mut conn, reply, &rk, "get", key).await? {
            Found::Record(stored) => stored,
            other => return Ok(other),
        };
        if include_expired || stored.live_while_present() {
            return Ok(Found::Record(stored));
        }
        let pttl = pttl
            .and_then(|r| r.ok())
            .and_then(|v| redis::from_redis_value::<i64>(v).ok());
        let now = match (stored.purge_ms, pttl) {
            (Some(purge_ms), Some(pttl)) if pttl >= 0 => Timestamp::from_millis(purge_ms - pttl),
            _ => {
                let time = redis::cmd("TIME").query_async(&mut conn).await;
                server_time(time).map_err(|e| from_redis(e, "get", Some(key)))?
            }
        };
        Ok(live(stored, now))
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
        let deleted = try_join_all(keys.iter().map(|key| async move {
            let rk = self.redis_key(ns, key);
            let mut conn = self.inner.conn.clone();
            let value = scripts::DELETE
                .invoke(&mut conn, &rk, &[flag])
                .await
                .map_err(|e| from_redis(e, "delete", Some(key)))?;
            let reply = parsed("delete", key, value)?;
            if skip_foreign && reply.tag == "wrongtype" {
                return Ok(0);
            }
            let reply = check(&rk, key, reply)?;
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
    check(redis_key, key, parsed(op, key, value)?)
}

/// A script's reply, of any tag.
fn parsed(op: &str, key: &str, value: Value) -> Result<Reply> {
    Reply::parse(value).map_err(|other| unexpected(op, Some(key), &format!("{other:?}")))
}

/// `reply`, with the foreign-type and corrupt-record replies turned into errors.
fn check(redis_key: &[u8], key: &str, reply: Reply) -> Result<Reply> {
    match reply.tag.as_str() {
        "wrongtype" => Err(wrong_type(key, redis_key, reply.text(0).unwrap_or("value"))),
        "corrupt" => Err(Error::decode(
            key,
            format!(
                "Redis key {:?} holds a broken stent record (`{}`); it was left untouched",
                String::from_utf8_lossy(redis_key),
                reply.text(0).unwrap_or("?")
            ),
        )),
        _ => Ok(reply),
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

/// `stored` if it is live at `now`, by the server's clock.
fn live(stored: Stored, now: Timestamp) -> Found {
    if stored.record.is_expired(now) {
        Found::Absent
    } else {
        Found::Record(stored)
    }
}

/// Reads the reply of a `GET` of a record's key (a `SET … GET` too).
async fn found(
    conn: &mut Conn,
    reply: redis::RedisResult<Value>,
    redis_key: &[u8],
    op: &str,
    key: &str,
) -> Result<Found> {
    match reply {
        Ok(Value::Nil) => Ok(Found::Absent),
        Ok(Value::BulkString(bytes)) if is_record(&bytes) => {
            Ok(Found::Record(decode(key, &bytes)?))
        }
        Ok(Value::BulkString(_)) => Ok(Found::Foreign("string".to_owned())),
        Ok(other) => Err(unexpected(op, Some(key), &format!("{other:?}"))),
        Err(e) if e.code() == Some("WRONGTYPE") => {
            let found: String = redis::cmd("TYPE")
                .arg(redis_key)
                .query_async(conn)
                .await
                .map_err(|e| from_redis(e, op, Some(key)))?;
            Ok(Found::Foreign(found))
        }
        Err(e) => Err(from_redis(e, op, Some(key))),
    }
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
        match self.fetch(ns, key, false).await? {
            Found::Absent => Ok(None),
            Found::Record(stored) => Ok(Some(stored.record)),
            Found::Foreign(found) => Err(wrong_type(key, &self.redis_key(ns, key), &found)),
        }
    }

    async fn claim(&self, ns: Namespace, key: &str, claim: &Claim<'_>) -> Result<ClaimOutcome> {
        check_key_len(&self.inner.caps, key)?;
        if claim.token.as_str().contains('|') {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "a lease token containing `|` cannot be stored in a Redis record",
            )
            .with_key(key));
        }
        let rk = self.redis_key(ns, key);
        let lease = clamp_ms(claim.lease).to_string();
        let meta = encode_meta(&claim.meta);
        let args: [&[u8]; 3] = [claim.token.as_str().as_bytes(), lease.as_bytes(), &meta];
        let reply = self.run("claim", &scripts::CLAIM, &rk, key, &args).await?;
        match (reply.tag.as_str(), reply.rest.first()) {
            ("acquired", _) => match (reply.int(0), reply.int(1)) {
                (Some(attempt), Some(until)) => Ok(ClaimOutcome::Acquired {
                    attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                    lease_expires_at: Timestamp::from_millis(until),
                }),
                _ => Err(unexpected("claim", Some(key), "malformed acquired reply")),
            },
            ("completed", Some(raw)) => Ok(ClaimOutcome::Completed(decode(key, raw)?.record)),
            ("in_flight", Some(raw)) => Ok(ClaimOutcome::InFlight(decode(key, raw)?.record)),
            (other, _) => Err(unexpected("claim", Some(key), other)),
        }
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
        let meta = encode_meta(&meta);
        let meta_len = meta.len().to_string();
        let args: [&[u8]; 5] = [
            value,
            ttl.as_bytes(),
            self.inner.grace_ms.as_bytes(),
            &meta,
            meta_len.as_bytes(),
        ];
        let reply = self.run("put", &scripts::PUT, &rk, key, &args).await?;
        match reply.tag.as_str() {
            "stored" => Ok(()),
            other => Err(unexpected("put", Some(key), other)),
        }
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool> {
        Ok(self
            .delete_many(ns, &[key.to_owned()], false, false)
            .await?
            == 1)
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
            records.extend(fetched.into_iter().filter_map(|found| match found {
                Found::Record(stored) => Some(stored.record),
                Found::Absent | Found::Foreign(_) => None,
            }));
            if records.len() > limit {
                break;
            }
        }
        Ok(Page::from_fetched(records, limit))
    }

    async fn clear(&self, ns: Namespace) -> Result<u64> {
        let mut pages = self.pages(ns, "").await?;
        let mut deleted = 0;
        while let Some(keys) = pages.next().await? {
            deleted += self.delete_many(ns, &keys, false, true).await?;
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
                    .delete_many(ns, &chunk[..chunk.len().min(room)], true, true)
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
