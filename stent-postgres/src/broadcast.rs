//! The store's announcements of deleted and replaced records (`pg_notify` in `delete`, `clear`
//! and a replacing `put`), and [`Listener`], which turns a `LISTEN` into [`Invalidation`]s.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use stent_core::Namespace;
use stent_core::broadcast::{Invalidation, Subscriber};

/// How often an idle subscription is checked with a `SELECT 1`, and how long its answer may
/// take before the subscription is taken as lost.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// The listening session's `application_name` (then the channel), for `pg_stat_activity`.
pub(crate) const APPLICATION_NAME: &str = "stent listener ";

/// The channel of the tables of this schema and prefix: `stent_` and a 64-bit FNV-1a hash of
/// both, in hex (a channel name has at most 63 bytes; two stores whose names hash alike only
/// hear each other's announcements, which makes their tiers drop more, never less).
pub(crate) fn channel(schema: Option<&str>, prefix: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let schema = schema.map_or(&b"\x00"[..], str::as_bytes);
    for &b in schema.iter().chain(b"\x00").chain(prefix.as_bytes()) {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("stent_{hash:016x}")
}

/// The payload announcing `key` of `ns` is this and the key; a `clear`'s, the namespace alone.
pub(crate) fn key_payload_start(ns: Namespace) -> String {
    format!("{}:", ns.as_str())
}

/// Where to listen: the store's pool (the session holds one of its connections), the channel.
pub(crate) struct Listener {
    pub(crate) pool: PgPool,
    pub(crate) channel: String,
}

/// The invalidation a notification's payload tells.
fn decode(payload: &str) -> Option<Invalidation> {
    match payload.split_once(':') {
        Some((ns, key)) => Some(Invalidation::Key(ns.parse().ok()?, key.to_owned())),
        None => Some(Invalidation::Namespace(payload.parse().ok()?)),
    }
}

impl Subscriber for Listener {
    type Session = PgListener;

    async fn subscribe(&mut self) -> Option<PgListener> {
        let listening = async {
            let mut session = PgListener::connect_with(&self.pool).await?;
            // Only a closed connection should end the stream: never a reconnection inside.
            session.eager_reconnect(false);
            let name = format!("{APPLICATION_NAME}{}", self.channel);
            let set = sqlx::query("SELECT set_config('application_name', $1, false)").bind(name);
            set.execute(&mut session).await?;
            session.listen(&self.channel).await?;
            Ok::<_, sqlx::Error>(session)
        };
        let timeout = self.pool.options().get_acquire_timeout();
        tokio::time::timeout(timeout, listening).await.ok()?.ok()
    }

    async fn receive(&mut self, session: &mut PgListener) -> Option<Invalidation> {
        loop {
            let Ok(received) = tokio::time::timeout(HEARTBEAT, session.try_recv()).await else {
                let ping = sqlx::query("SELECT 1").execute(&mut *session);
                tokio::time::timeout(HEARTBEAT, ping).await.ok()?.ok()?;
                continue;
            };
            // `try_recv` answers `None` when the connection is lost (`recv` would reconnect
            // silently, losing what was announced meanwhile).
            if let Some(event) = decode(received.ok().flatten()?.payload()) {
                return Some(event);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_a_key_or_a_namespace() {
        assert_eq!(
            decode("cache:fx::rates|None|[\"EUR\"]"),
            Some(Invalidation::Key(
                Namespace::Cache,
                "fx::rates|None|[\"EUR\"]".into()
            ))
        );
        assert_eq!(
            decode("idempotency"),
            Some(Invalidation::Namespace(Namespace::Idempotency))
        );
        assert_eq!(decode("other:key"), None);
    }

    #[test]
    fn channels_are_short_and_apart() {
        let a = channel(None, "app_");
        assert!(a.len() < 64);
        assert_ne!(a, channel(Some("app_"), ""));
        assert_ne!(a, channel(None, "app"));
        assert_eq!(a, channel(None, "app_"));
    }
}
