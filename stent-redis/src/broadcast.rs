//! The store's announcements of deleted and replaced records: `delete.lua` and `put.lua`
//! `PUBLISH` the record's Redis key on the store's channel, and [`Listener`] turns a
//! subscription to that channel into [`Invalidation`]s.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use stent_core::Namespace;
use stent_core::broadcast::{Invalidation, Invalidations, Subscriber};

/// How often an idle subscription is checked with a `PING`, and how long its answer may take
/// before the subscription is taken as lost: a connection that died without closing (a
/// network partition) is noticed within twice this.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);

/// The channel of the store of this escaped prefix (the start of [`key_base`](crate::layout::key_base)
/// up to its first `:`): `{escaped prefix}:invalidations`.
pub(crate) fn channel(bases: &[String]) -> String {
    let base = bases.first().map_or("", String::as_str);
    let escaped = base.split(':').next().unwrap_or_default();
    format!("{escaped}:invalidations")
}

/// What a subscriber needs: where to subscribe, to what, and how to read the messages.
#[derive(Clone)]
pub(crate) struct Listener {
    /// Servers to subscribe through, tried in turn: the one server, or a cluster's seed
    /// nodes (Redis Cluster forwards every `PUBLISH` to every node).
    pub(crate) clients: Vec<redis::Client>,
    pub(crate) channel: String,
    /// [`key_base`](crate::layout::key_base) of each namespace, by [`Namespace`] order.
    pub(crate) bases: [String; Namespace::ALL.len()],
    pub(crate) connect_timeout: Duration,
}

/// A live subscription: its sink (for `PING`) and its messages.
type Subscription = (PubSubSink, PubSubStream);

/// The listener and the client to subscribe through next.
struct Listening {
    listener: Listener,
    next: usize,
}

impl Listener {
    /// The stream of invalidations: subscribes when first polled, and again after a loss.
    pub(crate) fn invalidations(&self) -> Invalidations {
        let listener = self.clone();
        Invalidations::reconnecting(Listening { listener, next: 0 })
    }

    /// The invalidation a message tells: the record whose Redis key it carries.
    fn decode(&self, payload: &[u8]) -> Option<Invalidation> {
        Namespace::ALL.iter().find_map(|&ns| {
            let key = payload.strip_prefix(self.bases[ns as usize].as_bytes())?;
            let key = String::from_utf8(key.to_vec()).ok()?;
            Some(Invalidation::Key(ns, key))
        })
    }
}

impl Subscriber for Listening {
    type Session = Subscription;

    /// Subscribes through the next client; `None` when it cannot now.
    async fn subscribe(&mut self) -> Option<Subscription> {
        let listener = &self.listener;
        let client = listener
            .clients
            .get(self.next % listener.clients.len().max(1))?;
        self.next = self.next.wrapping_add(1);
        let subscribed = tokio::time::timeout(listener.connect_timeout, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&listener.channel).await?;
            redis::RedisResult::Ok(pubsub.split())
        });
        subscribed.await.ok()?.ok()
    }

    async fn receive(&mut self, (sink, messages): &mut Subscription) -> Option<Invalidation> {
        loop {
            tokio::select! {
                message = messages.next() => {
                    if let Some(event) = self.listener.decode(message?.get_payload_bytes()) {
                        return Some(event);
                    }
                }
                () = tokio::time::sleep(HEARTBEAT) => {
                    let ping = tokio::time::timeout(HEARTBEAT, sink.ping::<redis::Value>());
                    ping.await.ok()?.ok()?;
                }
            }
        }
    }
}
