use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;
use utoipa::ToSchema;

use crate::domain::{now_millis, rfc3339};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Selection,
    Operation,
    HealthChange,
    CircuitTransition,
    /// An operator forced a circuit open or closed, or handed it back to its rules.
    CircuitControl,
    Registration,
    Configuration,
    /// An AWS strategy parked an (instance type, subnet) pool that had no capacity.
    PoolParked,
}

/// Something the strategy layer did, with when.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"id": 42, "at": "2026-11-22T00:16:55.659Z", "kind": "circuit_transition",
    "strategy": "sim-primary", "detail": {"from": "closed", "to": "open", "at": "2026-11-22T00:16:55.659Z",
    "reason": "5 consecutive failures"}}))]
pub struct Event {
    pub id: u64,
    pub at: String,
    pub kind: EventKind,
    pub strategy: Option<String>,
    #[schema(value_type = Object)]
    pub detail: Value,
}

/// Events go to the log and to every follower of the stream (`GET /api/v1/events`).
pub struct EventBus {
    next_id: AtomicU64,
    sender: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            next_id: AtomicU64::new(1),
            sender: broadcast::channel(1024).0,
        }
    }
}

impl EventBus {
    pub fn emit(&self, kind: EventKind, strategy: Option<&str>, detail: Value) {
        let event = Event {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            at: rfc3339(now_millis()),
            kind,
            strategy: strategy.map(str::to_string),
            detail,
        };
        tracing::info!(
            target: "ohfp::events",
            kind = ?event.kind,
            strategy = event.strategy.as_deref().unwrap_or("-"),
            detail = %event.detail,
            "event"
        );
        // No follower is not an error.
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}
