//! Reading kept events: the query parameters of `GET /api/v1/events` and of the live stream,
//! checked here once, and the list answer.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{AppError, AppResult, Engine, FieldError};
use crate::domain::{EpochMillis, Event, EventKind};
use crate::store::{EventFilter, EventQuery, EventRepo};

/// Most events one list answers.
pub const MAX_LIMIT: u32 = 1000;
const DEFAULT_LIMIT: u32 = 100;
/// Longest strategy name accepted as a filter (longer ones cannot be registered either).
const MAX_NAME_CHARS: usize = 200;

/// Filters of `GET /api/v1/events`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events of this strategy.
    #[param(min_length = 1, max_length = 200)]
    pub strategy: Option<String>,
    /// Only events of this kind (`selection`, `operation`, `health_change`,
    /// `circuit_transition`, `circuit_control`, `registration`, `configuration`, `pool_parked`,
    /// `reclaim_notice`, `notice_queue_failed`, `quota_refresh_failed`, `request_accepted`, `request_state`, `machine_state`, `request_completed`,
    /// `request_failed`, `request_unclaimed`, `alert_raised`, `alert_cleared`).
    #[param(value_type = Option<EventKind>)]
    pub kind: Option<String>,
    /// RFC 3339 time: events at or after it, oldest first.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Events with an id above this one, oldest first (to page forward, pass the last id seen).
    pub after: Option<u64>,
    /// 1 to 1000 (default 100). Without `since` or `after`, the newest this many.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Filters of the live stream (`GET /api/v1/events/stream`).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FollowQuery {
    /// Only events of this strategy.
    #[param(min_length = 1, max_length = 200)]
    pub strategy: Option<String>,
    /// Only events of this kind.
    #[param(value_type = Option<EventKind>)]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<Event>,
    pub count: usize,
}

fn filter(
    strategy: Option<String>,
    kind: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> EventFilter {
    if let Some(s) = &strategy
        && (s.is_empty() || s.chars().count() > MAX_NAME_CHARS)
    {
        errors.push(FieldError::new(
            "strategy",
            format!("must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    let kind = kind.and_then(|k| {
        k.parse::<EventKind>()
            .map_err(|e| errors.push(FieldError::new("kind", e)))
            .ok()
    });
    EventFilter {
        strategy,
        kind,
        request_id: None,
    }
}

/// An RFC 3339 time parameter as epoch milliseconds; a bad one is a problem naming `field`.
pub(super) fn time_param(
    field: &str,
    value: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> Option<EpochMillis> {
    value.and_then(|s| {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|e| {
                errors.push(FieldError::new(
                    field,
                    format!("'{s}' is not an RFC 3339 time: {e}"),
                ))
            })
            .ok()
    })
}

/// A list's `limit` (1 to [`MAX_LIMIT`], default 100) and `after` cursor (a stored id).
pub(super) fn page_params(
    limit: Option<u32>,
    after: Option<u64>,
    errors: &mut Vec<FieldError>,
) -> u32 {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        errors.push(FieldError::new(
            "limit",
            format!("must be from 1 to {MAX_LIMIT}, got {limit}"),
        ));
    }
    if after.is_some_and(|a| a > i64::MAX as u64) {
        errors.push(FieldError::new("after", "is larger than any stored id"));
    }
    limit
}

pub(super) fn done<T>(value: T, errors: Vec<FieldError>) -> AppResult<T> {
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(AppError::Validation(errors))
    }
}

impl FollowQuery {
    pub fn into_filter(self) -> AppResult<EventFilter> {
        let mut errors = Vec::new();
        let f = filter(self.strategy, self.kind.as_deref(), &mut errors);
        done(f, errors)
    }
}

impl EventsQuery {
    fn into_query(self) -> AppResult<EventQuery> {
        let mut errors = Vec::new();
        let f = filter(self.strategy, self.kind.as_deref(), &mut errors);
        let since = time_param("since", self.since.as_deref(), &mut errors);
        let limit = page_params(self.limit, self.after, &mut errors);
        let query = EventQuery {
            filter: f,
            since,
            after: self.after,
            before: None,
            limit,
        };
        done(query, errors)
    }
}

impl Engine {
    /// listProviderEvents: kept events, filtered.
    pub async fn list_events(&self, q: EventsQuery) -> AppResult<EventList> {
        let events = self.store.events(&q.into_query()?).await?;
        Ok(EventList {
            count: events.len(),
            events,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_parameter_is_named() {
        let q = EventsQuery {
            strategy: Some(String::new()),
            kind: Some("nope".into()),
            since: Some("yesterday".into()),
            after: Some(u64::MAX),
            limit: Some(0),
        };
        let Err(AppError::Validation(errors)) = q.into_query() else {
            panic!("expected a validation error");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(fields, ["strategy", "kind", "since", "limit", "after"]);
    }

    #[test]
    fn a_good_query_reads_as_typed_values() {
        let q = EventsQuery {
            strategy: Some("sim-primary".into()),
            kind: Some("circuit_transition".into()),
            since: Some("2026-11-30T14:00:00Z".into()),
            after: None,
            limit: None,
        }
        .into_query()
        .unwrap();
        assert_eq!(q.filter.kind, Some(EventKind::CircuitTransition));
        assert_eq!(q.since, Some(1_796_047_200_000));
        assert_eq!(q.limit, DEFAULT_LIMIT);
    }
}
