//! The store's announcements of deleted and replaced records: `delete.lua` and `put.lua`
//! `PUBLISH` the record's Redis key on the store's channel, and [`Listener`] turns a
//! subscription to that channel into [`Invalidation`]s.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use stent_core::Namespace;
use stent_core::broadcast::{Invalidation, Invalidations};

/// How often an idle subscription is checked with a `PING`, and how long its answer may take
/// before the subscription is taken as lost: a connection that died without closing (a
/// network partition) is noticed within twice this.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);

/// The longest wait between two attempts to subscribe again.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

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

/// The listener's state between two events.
struct Listening {
    listener: Listener,
    subscription: Option<Subscription>,
    /// Whether the last event told of a live subscription: a loss is told once.
    live: bool,
    /// The client to try next.
    next: usize,
    backoff: Duration,
}

impl Listener {
    /// The stream of invalidations: subscribes when first polled, and again after a loss.
    pub(crate) fn invalidations(&self) -> Invalidations {
        let state = Listening {
            listener: self.clone(),
            subscription: None,
            live: false,
            next: 0,
            backoff: Duration::from_millis(20),
        };
        Invalidations::new(futures_util::stream::unfold(state, |mut s| async move {
            let event = s.next().await;
            Some((event, s))
        }))
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

impl Listening {
    async fn next(&mut self) -> Invalidation {
        loop {
            let Some((sink, messages)) = &mut self.subscription else {
                match self.subscribe().await {
                    Some(subscription) => {
                        self.subscription = Some(subscription);
                        self.live = true;
                        return Invalidation::Subscribed;
                    }
                    None if self.live => {
                        self.live = false;
                        return Invalidation::Lost;
                    }
                    None => {
                        tokio::time::sleep(self.backoff).await;
                        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            };
            let alive = tokio::select! {
                message = messages.next() => match message {
                    Some(message) => match self.listener.decode(message.get_payload_bytes()) {
                        Some(event) => return event,
                        None => true,
                    },
                    None => false,
                },
                () = tokio::time::sleep(HEARTBEAT) => {
                    let ping = tokio::time::timeout(HEARTBEAT, sink.ping::<redis::Value>());
                    matches!(ping.await, Ok(Ok(_)))
                }
            };
            if !alive {
                self.subscription = None;
                self.live = false;
                return Invalidation::Lost;
            }
        }
    }

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
        match subscribed.await {
            Ok(Ok(subscription)) => {
                self.backoff = Duration::from_millis(20);
                Some(subscription)
            }
            Ok(Err(_)) | Err(_) => None,
        }
    }
}
