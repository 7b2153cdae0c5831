//! Reading the audit trail of cloud-changing calls (`GET /api/v1/audit`): its query parameters,
//! checked here once, and the page answered.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::event_log::{done, page_params, time_param};
use super::{AppResult, Engine, FieldError};
use crate::domain::AuditRecord;
use crate::store::{AuditQuery, AuditRepo};

/// Filters of `GET /api/v1/audit`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// RFC 3339 time: calls at or after it.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// RFC 3339 time: calls before it (an `until` at or before `since` answers none).
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// Only calls made for this HostFactory request (acquire or return).
    #[param(min_length = 1, max_length = 200)]
    pub request_id: Option<String>,
    /// Calls with an id above this one (to page forward, pass `next_after`).
    pub after: Option<u64>,
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// One page of the audit trail, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub records: Vec<AuditRecord>,
    pub count: usize,
    /// `after` for the next page; absent on the last one.
    pub next_after: Option<u64>,
}

impl AuditParams {
    fn into_query(self) -> AppResult<AuditQuery> {
        let mut errors = Vec::new();
        let since = time_param("since", self.since.as_deref(), &mut errors);
        let until = time_param("until", self.until.as_deref(), &mut errors);
        if self
            .request_id
            .as_deref()
            .is_some_and(|r| r.is_empty() || r.chars().count() > 200)
        {
            errors.push(FieldError::new("request_id", "must be 1 to 200 characters"));
        }
        let limit = page_params(self.limit, self.after, &mut errors);
        let query = AuditQuery {
            since,
            until,
            request_id: self.request_id,
            after: self.after,
            limit,
        };
        done(query, errors)
    }
}

impl Engine {
    /// listAudit: one page of the audit trail.
    pub async fn list_audit(&self, params: AuditParams) -> AppResult<AuditList> {
        let query = params.into_query()?;
        let records = self.store.audit(&query).await?;
        let full = records.len() == query.limit as usize;
        Ok(AuditList {
            count: records.len(),
            next_after: records.last().filter(|_| full).map(|r| r.id),
            records,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::AppError;

    #[test]
    fn every_bad_parameter_is_named() {
        let q = AuditParams {
            since: None,
            until: Some("tomorrow".into()),
            request_id: Some(String::new()),
            after: Some(u64::MAX),
            limit: Some(5000),
        };
        let Err(AppError::Validation(errors)) = q.into_query() else {
            panic!("expected a validation error");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(fields, ["until", "request_id", "limit", "after"]);
        let bad_time = AuditParams {
            since: Some("yesterday".into()),
            ..AuditParams::default()
        };
        let Err(AppError::Validation(errors)) = bad_time.into_query() else {
            panic!("expected a validation error");
        };
        assert_eq!(errors[0].path, "since");
    }
}
