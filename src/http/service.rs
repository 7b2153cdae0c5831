//! Service routes outside /api/v1 (liveness, readiness), the status snapshot and the events (kept
//! and live); `/metrics` is in `prometheus.rs`.

use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::ApiQuery;
use crate::app::AppError;
use crate::app::audit_log::{AuditList, AuditParams};
use crate::app::event_log::{EventList, EventsQuery, FollowQuery};
use crate::app::status::StatusSnapshot;
use crate::domain::Event;
use crate::state::AppState;
use crate::store::{EventFilter, EventQuery, EventRepo, Store};
use crate::tasks::TaskRestart;

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ok", "version": "0.1.0", "uptime_seconds": 3600}))]
pub struct Liveness {
    status: &'static str,
    version: &'static str,
    uptime_seconds: u64,
}

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/health", tag = "service", responses((status = 200, body = Liveness)))]
pub async fn health(State(state): State<AppState>) -> Json<Liveness> {
    Json(Liveness {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    status: &'static str,
    database: String,
    strategies: usize,
    /// Background tasks that panicked and were started again.
    restarted: Vec<TaskRestart>,
}

/// Readiness: the database answers and every migration is applied.
#[utoipa::path(get, path = "/ready", tag = "service",
    responses((status = 200, body = Readiness), (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Readiness>, Problem> {
    let mut dead = state.tasks.dead();
    let restarted = state.tasks.restarts();
    dead.extend(
        restarted
            .iter()
            .filter(|r| r.down)
            .map(|r| format!("{} panicked ({}), starting again", r.task, r.last_reason)),
    );
    if !dead.is_empty() {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "Not ready",
            format!("background task gone: {}", dead.join("; ")),
        ));
    }
    match state.engine.store().ready().await {
        Ok(()) => Ok(Json(Readiness {
            status: "ready",
            database: "ok".into(),
            strategies: state.engine.entries().len(),
            restarted,
        })),
        Err(e) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "Not ready",
            e,
        )),
    }
}

/// Everything at a glance (getStatus): each registered strategy's health, circuit, in-flight
/// operations and numbers over the last 24 hours (getProviderMetrics' `totals`), the active
/// alerts and the HostFactory requests still running. `last_event_id` is where to follow
/// `/api/v1/events/stream` from (`Last-Event-ID`) to keep it current; `/status` renders it.
#[utoipa::path(get, path = "/api/v1/status", tag = "service", operation_id = "getStatus",
    responses((status = 200, body = StatusSnapshot)))]
pub async fn status(State(state): State<AppState>) -> Result<Json<StatusSnapshot>, ApiError> {
    Ok(Json(state.engine.status(&state.hostfactory).await?))
}

/// Kept events, filtered (listProviderEvents): selections, operations, health changes, circuit
/// transitions, registrations, configuration changes and HostFactory requests accepted,
/// completed and failed. Events are stored a moment after they happen (batched off the request
/// path); `GET /api/v1/events/stream` follows them live.
#[utoipa::path(get, path = "/api/v1/events", tag = "providers", operation_id = "listProviderEvents",
    params(EventsQuery),
    responses((status = 200, body = EventList),
        (status = 422, description = "A parameter is not valid; the problem names it", body = Problem, content_type = "application/problem+json")))]
pub async fn list_events(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<EventList>, ApiError> {
    Ok(Json(state.engine.list_events(q).await?))
}

/// The audit trail (listAudit): every cloud-changing call a provider made (RunInstances,
/// CreateFleet, RequestSpotFleet, Create/UpdateAutoScalingGroup, TerminateInstances, fleet and
/// group changes and deletions, launch template changes), failed ones too, with what caused
/// it: the HostFactory request ids, the operator route and the name of its token. Oldest
/// first, a page at a time (`after` = the previous page's `next_after`).
#[utoipa::path(get, path = "/api/v1/audit", tag = "providers", operation_id = "listAudit",
    params(AuditParams),
    responses((status = 200, body = AuditList),
        (status = 422, description = "A parameter is not valid; the problem names it", body = Problem, content_type = "application/problem+json")))]
pub async fn list_audit(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AuditParams>,
) -> Result<Json<AuditList>, ApiError> {
    Ok(Json(state.engine.list_audit(q).await?))
}

/// Events stored in pages of this many while a reconnecting follower catches up.
const REPLAY_PAGE: u32 = 500;

/// The `Last-Event-ID` a reconnecting follower sends.
pub(super) fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(raw) = headers.get("last-event-id") else {
        return Ok(None);
    };
    raw.to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|id| *id <= i64::MAX as u64)
        .map(Some)
        .ok_or_else(|| {
            ApiError(AppError::field(
                "Last-Event-ID",
                "must be an event id (a non-negative integer)",
            ))
        })
}

/// Stored events of `filter` with ids from `after` (exclusive) to `before` (exclusive), page by
/// page. A store error is logged and yields `None`, on which the caller ends the stream: going
/// on would skip events; the follower reconnects with the last id it got.
fn replay(
    store: Store,
    filter: EventFilter,
    after: u64,
    before: u64,
) -> impl Stream<Item = Option<Event>> + Send {
    futures::stream::unfold(Some(after), move |cursor| {
        let (store, filter) = (store.clone(), filter.clone());
        async move {
            let after = cursor?;
            if after + 1 >= before {
                return None;
            }
            let query = EventQuery {
                filter,
                since: None,
                after: Some(after),
                before: Some(before),
                limit: REPLAY_PAGE,
            };
            match store.events(&query).await {
                Ok(page) if page.is_empty() => None,
                Ok(page) => {
                    let next = page.last().map(|e| e.id);
                    let items: Vec<Option<Event>> = page.into_iter().map(Some).collect();
                    Some((futures::stream::iter(items), next))
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read stored events for a follower; its stream ends");
                    Some((futures::stream::iter(vec![None]), None))
                }
            }
        }
    })
    .flatten()
}

/// Where a follower's stream ends, besides at shutdown or when the follower falls behind.
pub(super) enum Until<L> {
    /// Never: the main stream.
    Shutdown,
    /// With the first event `L` says is the last (a request's end).
    Last(L),
    /// With the events there are now (what followed something that has already ended).
    Now,
}

/// The SSE stream of the events of `filter` after `after` (`None`: from now on): the kept ones
/// (from the store, then from memory), then the live ones, until `until`.
pub(super) fn follow_events<L>(
    state: &AppState,
    filter: EventFilter,
    after: Option<u64>,
    until: Until<L>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send + use<L>
where
    L: Fn(&Event) -> bool + Send + 'static,
{
    let follow = state.engine.events().follow(after);
    let stored = replay(
        state.engine.store().clone(),
        filter.clone(),
        // Nothing kept before now for a follower from now on.
        after.unwrap_or(follow.first_in_memory),
        follow.first_in_memory,
    );
    let live = futures::stream::unfold(follow.live, |mut rx| async move {
        match rx.recv().await {
            Ok(event) => Some((event, rx)),
            Err(RecvError::Lagged(n)) => {
                tracing::debug!(
                    missed = n,
                    "an event follower fell behind; it is disconnected to catch up"
                );
                None
            }
            Err(RecvError::Closed) => None,
        }
    });
    let kept = stored.chain(futures::stream::iter(follow.missed.into_iter().map(Some)));
    let (events, last): (
        futures::stream::BoxStream<'static, Option<Event>>,
        Option<L>,
    ) = match until {
        Until::Shutdown => (kept.chain(live.map(Some)).boxed(), None),
        Until::Last(last) => (kept.chain(live.map(Some)).boxed(), Some(last)),
        Until::Now => (kept.boxed(), None),
    };
    // `None` from the store: it failed; the follower reconnects from the last id it got.
    let events = events
        .filter(move |e| std::future::ready(e.as_ref().is_none_or(|e| filter.matches(e))))
        .take_while(|e| std::future::ready(e.is_some()))
        .filter_map(std::future::ready);
    // Ends right after the last event, without waiting for one more (which may never come).
    futures::stream::unfold(Some((events, last)), |rest| async move {
        let (mut events, last) = rest?;
        let e = events.next().await?;
        let ended = last.as_ref().is_some_and(|last| last(&e));
        Some((e, (!ended).then_some((events, last))))
    })
    .filter_map(|e| async move {
        SseEvent::default()
            .id(e.id.to_string())
            .event("provider")
            .json_data(&e)
            .ok()
            .map(Ok)
    })
    .take_until(state.shutdown.clone().cancelled_owned())
}

/// Follow events live (server-sent events, each with its id). A follower that reconnects with
/// `Last-Event-ID` first gets every kept event after that id, then the live ones. A follower
/// too slow to keep up is disconnected, so that its reconnect catches up from the store.
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "providers", operation_id = "streamProviderEvents",
    params(FollowQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id")),
    responses((status = 200, description = "text/event-stream of `Event` objects (SSE event `provider`, id = the event id)",
        content_type = "text/event-stream", body = Event),
        (status = 422, description = "A parameter is not valid; the problem names it", body = Problem, content_type = "application/problem+json")))]
pub async fn stream_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<FollowQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let filter = q.into_filter()?;
    let after = last_event_id(&headers)?;
    let stream = follow_events(&state, filter, after, Until::<fn(&Event) -> bool>::Shutdown);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
