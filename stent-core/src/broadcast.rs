//! [`Broadcast`]: stores that announce deleted and replaced records to every process.
//!
//! A process that keeps records in a [`LocalTier`](crate::local) learns of writes made
//! through that tier at once, but not of writes made by other processes. A store that can
//! broadcast (Redis pub/sub, PostgreSQL `LISTEN`/`NOTIFY`) announces each delete and each
//! overwrite of a record, whichever process or tool made it, and hands every subscriber a
//! stream of [`Invalidation`]s. The stream also says when the subscription is lost and when
//! it is live again, so that a subscriber never takes silence for "nothing changed".
//!
//! ```
//! use futures_util::StreamExt;
//! use stent_core::broadcast::{Invalidation, Invalidations};
//! use stent_core::Namespace;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // A store's stream, here made by hand: subscribed, then one record deleted elsewhere.
//! let mut events = Invalidations::new(futures_util::stream::iter([
//!     Invalidation::Subscribed,
//!     Invalidation::Key(Namespace::Cache, "fx::rates|None|[\"EUR\"]".to_owned()),
//! ]));
//! assert_eq!(events.next().await, Some(Invalidation::Subscribed));
//! # }
//! ```

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{BoxStream, Stream, StreamExt};

use crate::record::Namespace;

/// One event of a store's broadcast, as a subscriber receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalidation {
    /// The subscription is live: every delete and overwrite from now on will be announced.
    /// Whatever a subscriber kept before may have changed unannounced.
    Subscribed,
    /// The subscription is lost: deletes and overwrites may go unannounced until the next
    /// [`Subscribed`](Self::Subscribed). The stream reconnects by itself.
    Lost,
    /// The record of this key in this namespace was deleted or replaced.
    Key(Namespace, String),
    /// Every record of this namespace may have been deleted or replaced.
    Namespace(Namespace),
}

/// A store's stream of [`Invalidation`]s: it starts by subscribing, reconnects by itself
/// after a loss, and never ends while it is polled. Dropping it unsubscribes.
#[must_use = "a stream does nothing unless polled (give it to `LocalTier::broadcast`)"]
pub struct Invalidations(BoxStream<'static, Invalidation>);

impl Invalidations {
    /// Wraps a store's stream of events.
    pub fn new(events: impl Stream<Item = Invalidation> + Send + 'static) -> Self {
        Invalidations(events.boxed())
    }

    /// The stream of a store that subscribes through `subscriber`: it subscribes when first
    /// polled, yields [`Invalidation::Subscribed`] once it is live and
    /// [`Invalidation::Lost`] when the subscription is lost, then subscribes again, waiting
    /// between failed attempts from 20 ms, doubled after each, up to a second.
    pub fn reconnecting(subscriber: impl Subscriber) -> Self {
        let state = (subscriber, None);
        Invalidations::new(futures_util::stream::unfold(state, |mut s| async move {
            let (subscriber, session) = &mut s;
            if let Some(mut live) = session.take() {
                let event = subscriber.receive(&mut live).await;
                *session = event.is_some().then_some(live);
                return Some((event.unwrap_or(Invalidation::Lost), s));
            }
            let mut backoff = Duration::from_millis(20);
            loop {
                *session = subscriber.subscribe().await;
                if session.is_some() {
                    return Some((Invalidation::Subscribed, s));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }))
    }
}

/// How a store subscribes to its announcements, for [`Invalidations::reconnecting`].
pub trait Subscriber: Send + 'static {
    /// A live subscription.
    type Session: Send;

    /// Subscribes; `None` when it cannot now.
    fn subscribe(&mut self) -> impl Future<Output = Option<Self::Session>> + Send;

    /// The next invalidation `session` tells; `None` once it is lost (closed, or silent past
    /// the store's heartbeat).
    fn receive(
        &mut self,
        session: &mut Self::Session,
    ) -> impl Future<Output = Option<Invalidation>> + Send;
}

impl fmt::Debug for Invalidations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invalidations").finish_non_exhaustive()
    }
}

impl Stream for Invalidations {
    type Item = Invalidation;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Invalidation>> {
        self.0.poll_next_unpin(cx)
    }
}

/// A store that announces each delete and each overwrite of a record to every subscriber,
/// whichever process made it.
///
/// # Behavior
///
/// - A `delete` (and so a `clear`, an `invalidate`, the CLI's `rm`) made through any store
///   on the same server and prefix reaches every subscriber as an [`Invalidation::Key`] or
///   [`Invalidation::Namespace`].
/// - A `put` that replaces a record reaches every subscriber the same way.
/// - Claims, completions and releases of records in progress are not announced: no
///   subscriber keeps a record in progress.
/// - A lost subscription is an [`Invalidation::Lost`] at once, and the stream resubscribes
///   by itself, then yields [`Invalidation::Subscribed`].
pub trait Broadcast {
    /// Subscribes to this store's announcements: a stream that connects when first polled.
    fn invalidations(&self) -> Invalidations;
}
