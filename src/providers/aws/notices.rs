//! The optional interruption-notice queue (`interruption_queue_url`): an SQS queue that an
//! EventBridge rule feeds with EC2's events, long-polled by a background task so that a spot
//! two-minute warning reaches getReturnRequests in seconds, without DescribeInstances sweeps.
//! Each message is parsed once into a [`QueuedEvent`], turned into a [`ReclaimNotice`] (or only
//! an event), kept for the HostFactory reconciler ([`super::AwsProvider`]'s
//! `take_reclaim_notices`) and then deleted from the queue.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_types::date_time::Format;
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::config::RebalanceMode;
use super::errors::classify;
use super::status::SPOT_WARNING_MILLIS;
use crate::app::events::{EventBus, EventKind};
use crate::domain::{EpochMillis, rfc3339};
use crate::providers::ReclaimNotice;

/// Longest wait of one ReceiveMessage (SQS's limit).
const LONG_POLL_SECONDS: i32 = 20;
/// Most messages one ReceiveMessage answers (SQS's limit).
const BATCH: i32 = 10;
/// The pause after a failed receive, doubling up to [`BACKOFF_MAX`] while it keeps failing.
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// What an EC2 event on the queue says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// "EC2 Spot Instance Interruption Warning": taken two minutes after the event.
    SpotInterruption,
    /// "EC2 Instance Rebalance Recommendation": at elevated risk of interruption.
    Rebalance,
    /// "EC2 Instance State-change Notification" to shutting-down: being taken now.
    ShuttingDown,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::SpotInterruption => "spot_interruption",
            EventType::Rebalance => "rebalance_recommendation",
            EventType::ShuttingDown => "shutting_down",
        }
    }
}

/// One EC2 event of the queue, as EventBridge delivers it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedEvent {
    pub event_type: EventType,
    pub instance_id: String,
    /// The event's time (epoch ms).
    pub at: EpochMillis,
    /// The spot warning's `instance-action` (terminate, stop, hibernate).
    pub action: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "detail-type")]
    detail_type: String,
    source: String,
    time: String,
    detail: Detail,
}

#[derive(Deserialize)]
struct Detail {
    #[serde(rename = "instance-id")]
    instance_id: String,
    #[serde(rename = "instance-action", default)]
    instance_action: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

/// A message body as an EC2 event this queue acts on; `Ok(None)` for any other event (another
/// state change, another source), `Err` for a body that is no EventBridge event.
pub fn parse_event(body: &str) -> Result<Option<QueuedEvent>, String> {
    let e: Envelope = serde_json::from_str(body).map_err(|e| format!("not an EC2 event: {e}"))?;
    if e.source != "aws.ec2" {
        return Ok(None);
    }
    let event_type = match e.detail_type.as_str() {
        "EC2 Spot Instance Interruption Warning" => EventType::SpotInterruption,
        "EC2 Instance Rebalance Recommendation" => EventType::Rebalance,
        "EC2 Instance State-change Notification"
            if e.detail.state.as_deref() == Some("shutting-down") =>
        {
            EventType::ShuttingDown
        }
        _ => return Ok(None),
    };
    let at = aws_smithy_types::DateTime::from_str(&e.time, Format::DateTime)
        .ok()
        .and_then(|t| t.to_millis().ok())
        .ok_or_else(|| format!("event time '{}' is not an RFC 3339 time", e.time))?;
    Ok(Some(QueuedEvent {
        event_type,
        instance_id: e.detail.instance_id,
        at,
        action: e.detail.instance_action,
    }))
}

/// The notice an event gives HostFactory; `None` for a rebalance recommendation that is only
/// evented.
pub fn notice_of(e: &QueuedEvent, rebalance: RebalanceMode) -> Option<ReclaimNotice> {
    let (notice, deadline) = match e.event_type {
        EventType::SpotInterruption => (
            format!(
                "spot interruption warning: {} at {}",
                e.action.as_deref().unwrap_or("terminate"),
                rfc3339(e.at + SPOT_WARNING_MILLIS)
            ),
            Some(e.at + SPOT_WARNING_MILLIS),
        ),
        EventType::ShuttingDown => ("shutting-down outside HostFactory".into(), Some(e.at)),
        EventType::Rebalance if rebalance == RebalanceMode::Report => {
            ("spot rebalance recommendation".into(), None)
        }
        EventType::Rebalance => return None,
    };
    Some(ReclaimNotice {
        instance_id: e.instance_id.clone(),
        notice,
        deadline,
    })
}

/// Notices received and not yet handed to the reconciler.
#[derive(Default)]
pub struct NoticeBook {
    fresh: Mutex<Vec<ReclaimNotice>>,
}

impl NoticeBook {
    fn add(&self, notice: ReclaimNotice) {
        self.fresh.lock().expect("notice lock").push(notice);
    }

    pub fn take(&self) -> Vec<ReclaimNotice> {
        std::mem::take(&mut *self.fresh.lock().expect("notice lock"))
    }
}

/// What the queue task needs; it ends when `stop` is cancelled (the provider is dropped).
pub struct NoticeQueue {
    pub strategy: String,
    pub queue_url: String,
    pub rebalance: RebalanceMode,
    pub sqs: aws_sdk_sqs::Client,
    pub book: Arc<NoticeBook>,
    pub events: Arc<EventBus>,
    /// Seconds one receive may wait: under the operation timeout.
    pub wait_seconds: i32,
    /// Replicas: the leader alone reads the queue, since its reconciler applies what it read.
    pub leadership: crate::replica::Leadership,
}

impl NoticeQueue {
    pub fn wait_for(operation_timeout_seconds: f64) -> i32 {
        // Whole seconds under the timeout, so the long poll itself never times out.
        (operation_timeout_seconds.ceil() as i32 - 1).clamp(0, LONG_POLL_SECONDS)
    }

    /// Receives until stopped. A failure is logged and evented and retried after a backoff;
    /// nothing ends the loop but `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = BACKOFF_START;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.leadership.until_leader() => {}
            }
            let received = tokio::select! {
                _ = stop.cancelled() => break,
                r = self.receive_once() => r,
            };
            match received {
                Ok(()) => backoff = BACKOFF_START,
                Err(e) => {
                    tracing::warn!(strategy = %self.strategy, queue = %self.queue_url, error = %e, retry_in = ?backoff, "interruption notice queue failed");
                    self.events.emit(
                        EventKind::NoticeQueueFailed,
                        Some(&self.strategy),
                        json!({"queue_url": self.queue_url, "error": e, "retry_in_seconds": backoff.as_secs()}),
                    );
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        tracing::debug!(strategy = %self.strategy, "interruption notice queue stopped");
    }

    /// One long poll: each message applied (or found to be nothing to act on), then deleted.
    async fn receive_once(&self) -> Result<(), String> {
        let answer = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(BATCH)
            .wait_time_seconds(self.wait_seconds)
            .send()
            .await
            .map_err(|e| classify("ReceiveMessage", e).to_string())?;
        for message in answer.messages() {
            self.apply(message.body().unwrap_or_default());
            if let Some(handle) = message.receipt_handle() {
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .map_err(|e| classify("DeleteMessage", e).to_string())?;
            }
        }
        Ok(())
    }

    fn apply(&self, body: &str) {
        let event = match parse_event(body) {
            Ok(Some(e)) => e,
            Ok(None) => return,
            // Deleted all the same: a body that is no event never becomes one.
            Err(e) => {
                return tracing::warn!(strategy = %self.strategy, error = %e, "unreadable message on the interruption notice queue");
            }
        };
        let notice = notice_of(&event, self.rebalance);
        self.events.emit(
            EventKind::ReclaimNotice,
            Some(&self.strategy),
            json!({
                "instance_id": event.instance_id,
                "type": event.event_type.as_str(),
                "at": rfc3339(event.at),
                "deadline": notice.as_ref().and_then(|n| n.deadline).map(rfc3339),
                "reported": notice.is_some(),
            }),
        );
        if let Some(notice) = notice {
            self.book.add(notice);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape AWS documents for the spot two-minute warning.
    const WARNING: &str = r#"{"version": "0", "id": "1e5527d7-bb36-4607-3370-4164db56a40e",
        "detail-type": "EC2 Spot Instance Interruption Warning", "source": "aws.ec2",
        "account": "123456789012", "time": "2026-11-30T21:04:10Z", "region": "eu-west-1",
        "resources": ["arn:aws:ec2:eu-west-1a:instance/i-0a1b2c3d4e5f60718"],
        "detail": {"instance-id": "i-0a1b2c3d4e5f60718", "instance-action": "terminate"}}"#;

    #[test]
    fn a_spot_warning_gives_two_minutes_from_its_time() {
        let e = parse_event(WARNING).unwrap().unwrap();
        assert_eq!(e.event_type, EventType::SpotInterruption);
        assert_eq!(e.instance_id, "i-0a1b2c3d4e5f60718");
        let n = notice_of(&e, RebalanceMode::Event).unwrap();
        assert_eq!(n.deadline, Some(1_796_072_650_000 + 120_000));
    }

    #[test]
    fn rebalance_is_reported_or_only_evented_and_other_events_are_nothing() {
        let rebalance = WARNING.replace(
            "Spot Instance Interruption Warning",
            "Instance Rebalance Recommendation",
        );
        let e = parse_event(&rebalance).unwrap().unwrap();
        assert_eq!(notice_of(&e, RebalanceMode::Event), None);
        assert_eq!(notice_of(&e, RebalanceMode::Report).unwrap().deadline, None);
        let running = WARNING
            .replace(
                "Spot Instance Interruption Warning",
                "Instance State-change Notification",
            )
            .replace(r#""instance-action": "terminate""#, r#""state": "running""#);
        assert_eq!(parse_event(&running), Ok(None));
        let stopping = running.replace("running", "shutting-down");
        let e = parse_event(&stopping).unwrap().unwrap();
        assert_eq!(
            notice_of(&e, RebalanceMode::Event).unwrap().deadline,
            Some(e.at)
        );
        assert!(parse_event("hello").is_err());
    }
}
