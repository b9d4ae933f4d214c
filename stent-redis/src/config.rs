//! The builder: connection targets, URL parsing, the key prefix and its validation.

use std::fmt;
use std::time::Duration;

use stent_core::store::{percent_decode, redact, take_url_params};
use stent_core::{Error, Result};

use crate::store::RedisStore;
use crate::{DEFAULT_EXPIRY_GRACE, DEFAULT_MAX_VALUE_LEN, DEFAULT_PREFIX, MAX_VALUE_LEN_LIMIT};

/// Where the store connects: one server, by URL or through the caller's client, or the
/// seed nodes of a Redis Cluster.
#[derive(Clone)]
pub(crate) enum Target {
    Standalone(String),
    Client(redis::Client),
    Cluster(Vec<String>),
}

/// Connection settings shared by both targets.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) response: Option<Duration>,
    pub(crate) retries: usize,
}

/// Configures and connects a [`RedisStore`] (the crate's README shows one).
#[derive(Clone)]
#[must_use = "a builder does nothing until `build` is awaited"]
pub struct RedisStoreBuilder {
    pub(crate) target: Option<Target>,
    /// The target as given, with any password masked: what `Debug` and errors show.
    pub(crate) shown: String,
    pub(crate) prefix: String,
    pub(crate) timeouts: Timeouts,
    pub(crate) max_value_len: usize,
    pub(crate) expiry_grace: Duration,
}

impl Default for RedisStoreBuilder {
    fn default() -> Self {
        RedisStoreBuilder {
            target: None,
            shown: String::from("<no URL>"),
            prefix: DEFAULT_PREFIX.to_owned(),
            timeouts: Timeouts {
                connect: Duration::from_secs(5),
                response: Some(Duration::from_secs(10)),
                retries: 3,
            },
            max_value_len: DEFAULT_MAX_VALUE_LEN,
            expiry_grace: DEFAULT_EXPIRY_GRACE,
        }
    }
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("target", &self.shown)
            .field("prefix", &self.prefix)
            .field("timeouts", &self.timeouts)
            .field("max_value_len", &self.max_value_len)
            .field("expiry_grace", &self.expiry_grace)
            .finish()
    }
}

impl RedisStoreBuilder {
    /// A builder with the defaults each setter states.
    pub fn new() -> Self {
        Self::default()
    }

    /// Connects to the server or cluster at `url`, in a form of the crate's README; its
    /// `prefix=` sets the key prefix as [`prefix`](Self::prefix) does, whichever is called last.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        let (url, taken) = take_url_params(&url.into(), &["prefix"]);
        if let Some((_, prefix)) = taken.last() {
            // Percent-decoded; what does not decode to UTF-8 is kept as written.
            let decoded = String::from_utf8(percent_decode(prefix));
            self.prefix = decoded.unwrap_or_else(|_| prefix.clone());
        }
        self.shown = redact(&url);
        let cluster = url
            .split_once("://")
            .and_then(|(scheme, rest)| Some(cluster_nodes(scheme.strip_suffix("+cluster")?, rest)));
        self.target = Some(cluster.map_or(Target::Standalone(url), Target::Cluster));
        self
    }

    /// Connects to a Redis Cluster through these seed nodes, each `host:port` or a
    /// `redis://` URL (credentials are taken from the first one).
    pub fn cluster<S: Into<String>>(mut self, nodes: impl IntoIterator<Item = S>) -> Self {
        let url = |n: String| format!("{}{n}", if n.contains("://") { "" } else { "redis://" });
        let nodes: Vec<String> = nodes.into_iter().map(|n| url(n.into())).collect();
        let shown: Vec<String> = nodes.iter().map(|n| redact(n)).collect();
        self.shown = format!("cluster {shown:?}");
        self.target = Some(Target::Cluster(nodes));
        self
    }

    /// Connects to one server through a client the caller built (its address, credentials,
    /// database and protocol), instead of a URL; this builder's timeouts and retries still
    /// apply to the connection the store keeps.
    pub fn client(mut self, client: redis::Client) -> Self {
        self.shown = redact(&format!("redis://{}", client.get_connection_info().addr()));
        self.target = Some(Target::Client(client));
        self
    }

    stent_core::builder_setters! {
        /// Puts every key under `{prefix}:` (default [`DEFAULT_PREFIX`]; `%` and `:` written `%25`
        /// and `%3A`, so that no two prefixes share a key). [`build`](Self::build) checks it:
        /// 1 to 256 bytes, without whitespace or control characters.
        prefix(prefix: impl Into<String>) => prefix = prefix.into();

        /// How long one connection attempt may take (default 5 s).
        connect_timeout(timeout: Duration) => timeouts.connect = timeout;

        /// How long one command may wait for its reply (default 10 s; `None` waits forever), then
        /// fails with the retryable [`ErrorKind::Unavailable`](stent_core::ErrorKind::Unavailable).
        response_timeout(timeout: Option<Duration>) => timeouts.response = timeout;

        /// How many times a call retries a lost connection, backing off, before it fails with
        /// `ErrorKind::Unavailable` (default 3); later calls reconnect either way.
        retries(retries: usize) => timeouts.retries = retries;

        /// The largest value `complete` and `put` accept (default [`DEFAULT_MAX_VALUE_LEN`], at
        /// most [`MAX_VALUE_LEN_LIMIT`]); larger ones fail with `ErrorKind::ValueTooLarge`
        /// before anything is sent.
        max_value_len(max: usize) => max_value_len = max;

        /// How long an expired record stays in Redis, invisible, before Redis deletes it (default
        /// [`DEFAULT_EXPIRY_GRACE`]); the crate's README says what reads and replays then cost.
        expiry_grace(grace: Duration) => expiry_grace = grace;
    }

    /// Checks the settings and connects: the crate's README lists the errors.
    pub async fn build(self) -> Result<RedisStore> {
        validate_prefix(&self.prefix)?;
        if self.max_value_len > MAX_VALUE_LEN_LIMIT {
            return Err(Error::config(format!(
                "max_value_len {} exceeds Redis's limit of {MAX_VALUE_LEN_LIMIT} bytes per value",
                self.max_value_len
            )));
        }
        // Parsed as the driver will, to refuse a malformed URL before connecting. The
        // driver's messages name the problem, never the URL.
        let parse = |url: &String| {
            redis::Client::open(url.as_str()).map_err(|e| {
                let why = e.to_string();
                Error::config(format!(
                    "invalid Redis URL {:?} ({}): expected redis://[[user]:password@]host[:port][/db], \
                     redis+unix:///path/to/socket or redis+cluster://host:port,host:port",
                    self.shown,
                    why.split(" - ").next().unwrap_or_default()
                ))
            })
        };
        let clients = match &self.target {
            None => {
                return Err(Error::config(
                    "no Redis URL: call `url(...)`, `client(...)` or `cluster(...)` on the builder",
                ));
            }
            Some(Target::Client(client)) => vec![client.clone()],
            Some(Target::Standalone(url)) => vec![parse(url)?],
            Some(Target::Cluster(nodes)) if nodes.is_empty() => {
                return Err(Error::config(format!(
                    "no cluster nodes in {}: expected redis+cluster://host:port,host:port",
                    self.shown
                )));
            }
            Some(Target::Cluster(nodes)) => nodes.iter().map(parse).collect::<Result<_>>()?,
        };
        RedisStore::open(clients, self).await
    }
}

/// Splits the node list of a `redis+cluster://` URL into one `redis://` URL per node,
/// each carrying the credentials and the query of the whole URL.
fn cluster_nodes(scheme: &str, rest: &str) -> Vec<String> {
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let (userinfo, hosts) = authority.split_at(authority.rfind('@').map_or(0, |i| i + 1));
    let hosts = hosts.split(',').map(str::trim).filter(|h| !h.is_empty());
    hosts
        .map(|h| format!("{scheme}://{userinfo}{h}{tail}"))
        .collect()
}

/// Checks a key prefix once, at build time.
pub(crate) fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() || prefix.len() > 256 {
        return Err(Error::config(format!(
            "the Redis key prefix is empty or too long ({} bytes; 1 to 256 are allowed)",
            prefix.len()
        )));
    }
    let bad = |c: &char| c.is_whitespace() || c.is_control();
    let Some((i, c)) = prefix.chars().enumerate().find(|(_, c)| bad(c)) else {
        return Ok(());
    };
    let problem = match c {
        ' ' => "a space",
        c if c.is_whitespace() => "whitespace",
        _ => "a control character",
    };
    Err(Error::config(format!(
        "invalid Redis key prefix {prefix:?}: {problem} ({c:?}) at character {}; a prefix \
         may not contain whitespace or control characters",
        i + 1
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_in_the_query_is_taken_out_of_the_url() {
        let url_and_prefix = |url: &str| {
            let b = RedisStoreBuilder::new().url(url);
            match b.target {
                Some(Target::Standalone(url)) => (url, b.prefix),
                Some(Target::Cluster(nodes)) => (nodes.join(","), b.prefix),
                _ => unreachable!(),
            }
        };
        assert_eq!(
            url_and_prefix("redis://h:6379"),
            ("redis://h:6379".into(), DEFAULT_PREFIX.into())
        );
        assert_eq!(
            url_and_prefix("redis://h:6379/0?prefix=billing"),
            ("redis://h:6379/0".into(), "billing".into())
        );
        assert_eq!(
            url_and_prefix("redis+unix:///run/r.sock?db=2&prefix=a%3Ab&protocol=resp3#x"),
            (
                "redis+unix:///run/r.sock?db=2&protocol=resp3#x".into(),
                "a:b".into()
            )
        );
        assert_eq!(
            url_and_prefix("redis+cluster://:pw@a:1,b:2/?prefix=p"),
            ("redis://:pw@a:1/,redis://:pw@b:2/".into(), "p".into())
        );
        // The last one counts; an empty one is refused by `build` (see validate_prefix).
        assert_eq!(url_and_prefix("redis://h?prefix=a&prefix=").1, "");
        assert_eq!(url_and_prefix("redis://h?prefix=a%20b%zz%").1, "a b%zz%");
        assert_eq!(url_and_prefix("redis://h?prefix=%ff").1, "%ff");
        let builder = RedisStoreBuilder::new()
            .prefix("early")
            .url("redis://h?prefix=url");
        assert_eq!(builder.prefix, "url");
        let builder = RedisStoreBuilder::new()
            .url("redis://h?prefix=url")
            .prefix("late");
        assert_eq!(builder.prefix, "late");
        assert_eq!(
            RedisStoreBuilder::new().url("redis://h").prefix,
            DEFAULT_PREFIX
        );
    }

    #[test]
    fn cluster_urls_split_into_nodes_with_credentials() {
        assert_eq!(
            cluster_nodes("redis", ":pw@a:7101, b:7102,c:7103/"),
            [
                "redis://:pw@a:7101/",
                "redis://:pw@b:7102/",
                "redis://:pw@c:7103/"
            ]
        );
        assert_eq!(cluster_nodes("redis", "a:1"), ["redis://a:1"]);
        assert!(cluster_nodes("redis", "").is_empty());
    }

    #[test]
    fn prefixes_are_validated() {
        for ok in [
            "stent",
            "app:stent",
            "c0123abc",
            "{tag}",
            "ünï",
            "a*",
            "a?",
            "a[b]",
            "a\\b",
            "%3A",
        ] {
            validate_prefix(ok).unwrap();
        }
        for (bad, says) in [
            ("", "empty"),
            ("a b", "a space"),
            ("a\tb", "whitespace"),
            ("a\u{7}", "control"),
        ] {
            let e = validate_prefix(bad).unwrap_err();
            assert_eq!(e.kind(), stent_core::ErrorKind::Config);
            assert!(e.to_string().contains(says), "{bad:?}: {e}");
        }
        assert!(validate_prefix(&"p".repeat(257)).is_err());
    }
}
