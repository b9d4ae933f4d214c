//! Identical calls in one process share one trip to the store: the first caller of a key
//! leads, later ones follow and get its result.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

/// A result one call obtained, handed to identical calls that waited on it.
pub(super) struct Landed {
    pub(super) bytes: Vec<u8>,
    pub(super) attempt: u32,
}

/// Where a leader leaves its result for its followers: made by the first follower, so a
/// leader nobody joins never allocates one. Dropped without a result when the leader's call
/// fails or is cancelled, which wakes the followers to go to the store themselves.
type Slot = watch::Sender<Option<Landed>>;

/// Calls in flight in this process, by key, with the slot of their followers once there is one.
#[derive(Default)]
pub(super) struct Flights(Mutex<BTreeMap<Arc<str>, Option<Slot>>>);

pub(super) enum Flight<'a> {
    Leader(LeaderGuard<'a>),
    /// Waits for the leader's result: `wait_for(Option::is_some)` fails if none lands.
    Follower(watch::Receiver<Option<Landed>>),
}

impl Flights {
    fn map(&self) -> MutexGuard<'_, BTreeMap<Arc<str>, Option<Slot>>> {
        // Every update is one insert or remove: a poisoned map is still consistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn join(&self, key: &str) -> Flight<'_> {
        let mut map = self.map();
        if let Some(slot) = map.get_mut(key) {
            let slot = slot.get_or_insert_with(|| watch::channel(None).0);
            return Flight::Follower(slot.subscribe());
        }
        let key: Arc<str> = Arc::from(key);
        map.insert(Arc::clone(&key), None);
        Flight::Leader(LeaderGuard(self, Some(key)))
    }
}

/// A leader's hold on its flight (the flights, and its key until the flight ends): removes
/// the flight when the leader's call ends, however it ends.
pub(super) struct LeaderGuard<'a>(&'a Flights, Option<Arc<str>>);

impl LeaderGuard<'_> {
    /// Ends the flight: no one joins it from now on, and whoever joined gets what `landed`
    /// makes (called only if someone did), or nothing, to go to the store.
    pub(super) fn finish(mut self, landed: impl FnOnce() -> Option<Landed>) {
        // The entry is this leader's: a key has one leader until its entry is removed.
        let key = self.1.take().expect("finished once");
        let slot = self.0.map().remove(&key).flatten();
        if let Some(slot) = slot
            && let Some(landed) = landed()
        {
            slot.send_replace(Some(landed));
        }
    }
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.1.take() {
            self.0.map().remove(&key);
        }
    }
}
