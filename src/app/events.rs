//! The event bus: every event gets the next id, goes to the log, to the live followers and to
//! the store. Storing is off the request path: `emit` puts the event on a bounded queue that a
//! background writer ([`EventBus::run_writer`]) drains in batches. When the queue is full (the
//! database is far behind) the event is not stored; it is still logged and followed live, and
//! the count shows in `/metrics` (`ohfp_events_not_stored_total`), with a warning.
//!
//! Followers that reconnect with the last id they saw get what they missed: from a ring of the
//! most recent events in memory (which also covers events still queued for the store), and
//! from the store before that.

use std::collections::VecDeque;
use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::domain::now_millis;
pub use crate::domain::{Event, EventKind};
use crate::store::{EventRepo, Store, StoreResult};

/// Events waiting to be stored.
const QUEUE: usize = 4096;
/// Most events one write stores.
const BATCH: usize = 256;
/// Recent events kept in memory: more than can be queued or in a write, so that an event not
/// in the ring is in the store (or was never stored because the queue was full).
const RECENT: usize = QUEUE + BATCH + 256;
/// Live followers further behind than this lose the stream and reconnect.
const FOLLOWER_BUFFER: usize = 1024;

struct Recent {
    next_id: u64,
    events: VecDeque<Event>,
}

pub struct EventBus {
    store: Store,
    recent: Mutex<Recent>,
    live: broadcast::Sender<Event>,
    queue: mpsc::Sender<Event>,
    /// The writer's end; the writer holds it while it runs, the last flush after it.
    pending: tokio::sync::Mutex<mpsc::Receiver<Event>>,
    not_stored: Counter,
}

/// A follower's start: what it missed that is still in memory, the first id memory holds, and
/// the live stream from then on (events after `missed`).
pub struct Follow {
    pub missed: Vec<Event>,
    pub first_in_memory: u64,
    pub live: broadcast::Receiver<Event>,
}

impl EventBus {
    /// Ids continue after the highest one stored.
    pub async fn start(store: Store) -> StoreResult<Self> {
        let last = store.last_event_id().await?;
        let (queue, pending) = mpsc::channel(QUEUE);
        Ok(Self {
            store,
            recent: Mutex::new(Recent {
                next_id: last + 1,
                events: VecDeque::with_capacity(RECENT),
            }),
            live: broadcast::channel(FOLLOWER_BUFFER).0,
            queue,
            pending: tokio::sync::Mutex::new(pending),
            not_stored: Counter::default(),
        })
    }

    pub fn emit(&self, kind: EventKind, strategy: Option<&str>, detail: Value) {
        let event = {
            let mut recent = self.recent.lock().expect("events lock");
            let event = Event {
                id: recent.next_id,
                at: now_millis(),
                kind,
                strategy: strategy.map(str::to_string),
                detail,
            };
            recent.next_id += 1;
            if recent.events.len() == RECENT {
                recent.events.pop_front();
            }
            recent.events.push_back(event.clone());
            // Under the lock, so that a follower starting now sees each event exactly once:
            // in its `missed` or on its live stream. No follower is not an error.
            let _ = self.live.send(event.clone());
            event
        };
        log(&event);
        if self.queue.try_send(event).is_err() {
            let n = self.not_stored.inc();
            if n.is_multiple_of(1000) {
                tracing::warn!(
                    not_stored = n + 1,
                    "the event queue is full (the database is behind); events are not stored"
                );
            }
        }
    }

    /// The id of the newest event (0 before the first): following after it misses nothing
    /// newer.
    pub fn last_id(&self) -> u64 {
        let recent = self.recent.lock().expect("events lock");
        recent.next_id.saturating_sub(1)
    }

    /// Starts following after event `after` (`None`: from now on).
    pub fn follow(&self, after: Option<u64>) -> Follow {
        let recent = self.recent.lock().expect("events lock");
        Follow {
            live: self.live.subscribe(),
            missed: recent
                .events
                .iter()
                .filter(|e| after.is_some_and(|a| e.id > a))
                .cloned()
                .collect(),
            first_in_memory: recent.events.front().map_or(recent.next_id, |e| e.id),
        }
    }

    /// Events that could not be stored (queue full or the write failed) since start.
    pub fn not_stored(&self) -> &Counter {
        &self.not_stored
    }

    /// Stores queued events in batches until shutdown.
    pub async fn run_writer(&self, shutdown: CancellationToken) {
        let mut pending = self.pending.lock().await;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                // Cancel-safe: nothing is taken off the queue unless it completes.
                n = pending.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        break;
                    }
                    self.write(&mut batch).await;
                }
                _ = shutdown.cancelled() => break,
            }
        }
    }

    /// Stores whatever is queued (at shutdown, after the writer stopped).
    pub async fn flush(&self) {
        let mut pending = self.pending.lock().await;
        let mut batch = Vec::with_capacity(BATCH);
        while let Ok(event) = pending.try_recv() {
            batch.push(event);
            if batch.len() == BATCH {
                self.write(&mut batch).await;
            }
        }
        self.write(&mut batch).await;
    }

    async fn write(&self, batch: &mut Vec<Event>) {
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.store.insert_events(batch).await {
            self.not_stored.inc_by(batch.len() as u64);
            tracing::error!(error = %e, events = batch.len(), "cannot store events");
        }
        batch.clear();
    }
}

/// Selections and successful operations happen on every call: they are kept and followed,
/// but logged at debug only. The rest is what an operator reads.
fn log(event: &Event) {
    let routine = match event.kind {
        EventKind::Selection => true,
        EventKind::Operation => event.detail["success"] == Value::Bool(true),
        _ => false,
    };
    let strategy = event.strategy.as_deref().unwrap_or("-");
    if routine {
        tracing::debug!(target: "ohfp::events", id = event.id, kind = event.kind.as_str(), strategy, detail = %event.detail, "event");
    } else {
        tracing::info!(target: "ohfp::events", id = event.id, kind = event.kind.as_str(), strategy, detail = %event.detail, "event");
    }
}
