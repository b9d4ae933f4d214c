//! Identical calls in one process share one trip to the store: the first caller of a key
//! leads, later ones follow and get its result.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// A result one call obtained, handed to identical calls that waited on it.
pub(super) struct Landed {
    pub(super) bytes: Vec<u8>,
    pub(super) attempt: u32,
}

/// One call in flight that others wait on: where its leader leaves the result for them.
/// Made by the first follower; a leader nobody joins never allocates one.
#[derive(Default)]
pub(super) struct Slot {
    landed: OnceLock<Landed>,
    done: tokio::sync::Notify,
    closed: AtomicBool,
}

impl Slot {
    /// Waits until the leader's call has ended; its result, if it landed one.
    pub(super) async fn wait(&self) -> Option<&Landed> {
        // Created before the check, so a `notify_waiters` after the check still wakes it.
        let done = self.done.notified();
        if !self.closed.load(Ordering::Acquire) {
            done.await;
        }
        self.landed.get()
    }
}

/// Calls in flight in this process, by key, with the slot their followers wait on once
/// there is one.
#[derive(Default)]
pub(super) struct Flights(Mutex<BTreeMap<Arc<str>, Option<Arc<Slot>>>>);

pub(super) enum Flight<'a> {
    Leader(LeaderGuard<'a>),
    Follower(Arc<Slot>),
}

impl Flights {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Arc<str>, Option<Arc<Slot>>>> {
        // Every update is one insert or remove: a poisoned map is still consistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn join(&self, key: &str) -> Flight<'_> {
        let mut map = self.map();
        if let Some(slot) = map.get_mut(key) {
            let slot = slot.get_or_insert_with(Arc::default);
            return Flight::Follower(Arc::clone(slot));
        }
        let key: Arc<str> = Arc::from(key);
        map.insert(Arc::clone(&key), None);
        Flight::Leader(LeaderGuard {
            flights: self,
            key,
            done: false,
        })
    }
}

/// Removes the flight when the leader's call ends, however it ends; followers of a
/// leader that never landed a result find no result and go to the store themselves.
pub(super) struct LeaderGuard<'a> {
    flights: &'a Flights,
    key: Arc<str>,
    done: bool,
}

impl LeaderGuard<'_> {
    /// Ends the flight: no one joins it from now on, and whoever joined is woken with what
    /// `landed` makes (called only if someone did) or with nothing, to go to the store.
    pub(super) fn finish(mut self, landed: impl FnOnce() -> Option<Landed>) {
        self.leave(landed);
    }

    fn leave(&mut self, landed: impl FnOnce() -> Option<Landed>) {
        self.done = true;
        // The entry is this leader's: a key has one leader until its entry is removed.
        let slot = self.flights.map().remove(&self.key).flatten();
        // No follower can join once the entry is gone.
        if let Some(slot) = slot {
            if let Some(landed) = landed() {
                // Only the leader sets it, once.
                let _ = slot.landed.set(landed);
            }
            slot.closed.store(true, Ordering::Release);
            slot.done.notify_waiters();
        }
    }
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.leave(|| None);
        }
    }
}
