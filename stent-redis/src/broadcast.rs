//! The store's announcements of deleted and replaced records: `delete.lua` and `put.lua`
//! `PUBLISH` the record's Redis key on the store's channel, and [`Listener`] turns a
//! subscription to that channel into [`Invalidation`]s.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use stent_core::Namespace;
use stent_core::broadcast::{Invalidation, Subscriber};

use crate::config::RedisStoreBuilder;
use crate::layout::key_base;

/// How often an idle subscription is checked with a `PING`, and how long its answer may take:
/// a connection that died without closing (a network partition) is noticed within twice this.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Where a subscriber subscribes, to what, and how it reads the messages.
#[derive(Clone)]
pub(crate) struct Listener {
    /// Servers to subscribe through, tried in turn from `next`: the one server, or a
    /// cluster's seed nodes (Redis Cluster forwards every `PUBLISH` to every node).
    clients: Vec<redis::Client>,
    next: usize,
    /// `{escaped prefix}:invalidations`.
    pub(crate) channel: String,
    /// [`key_base`] of each namespace, by [`Namespace`] order.
    pub(crate) bases: [String; Namespace::ALL.len()],
    connect_timeout: Duration,
}

impl Listener {
    pub(crate) fn new(clients: Vec<redis::Client>, b: &RedisStoreBuilder) -> Self {
        let bases = Namespace::ALL.map(|ns| key_base(&b.prefix, ns));
        // The escaped prefix is a key base up to its first `:`.
        let escaped = bases[0].split(':').next().unwrap_or_default();
        let channel = format!("{escaped}:invalidations");
        Listener {
            clients,
            next: 0,
            channel,
            bases,
            connect_timeout: b.timeouts.connect,
        }
    }
}

impl Subscriber for Listener {
    /// A live subscription: its sink (for `PING`) and its messages.
    type Session = (PubSubSink, PubSubStream);

    /// Subscribes through the next client; `None` when it cannot now.
    async fn subscribe(&mut self) -> Option<Self::Session> {
        let client = self.clients.get(self.next % self.clients.len().max(1))?;
        self.next = self.next.wrapping_add(1);
        let subscribed = tokio::time::timeout(self.connect_timeout, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&self.channel).await?;
            redis::RedisResult::Ok(pubsub.split())
        });
        subscribed.await.ok()?.ok()
    }

    /// The next message that carries the Redis key of a record of the store.
    async fn receive(&mut self, (sink, messages): &mut Self::Session) -> Option<Invalidation> {
        loop {
            tokio::select! {
                message = messages.next() => {
                    let message = message?;
                    let payload = message.get_payload_bytes();
                    let event = Namespace::ALL.iter().find_map(|&ns| {
                        let key = payload.strip_prefix(self.bases[ns as usize].as_bytes())?;
                        Some(Invalidation::Key(ns, String::from_utf8(key.to_vec()).ok()?))
                    });
                    if event.is_some() {
                        return event;
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
