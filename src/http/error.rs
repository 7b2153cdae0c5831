//! The one mapping from `AppError` to an HTTP answer: RFC 9457 problem details.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::{AppError, FieldError};
use crate::strategy::Verdict;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// `application/problem+json` body.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"type": "urn:ohfp:problem:validation", "title": "Invalid request", "status": 422,
    "detail": "1 invalid field(s)", "errors": [{"path": "selection_criteria.min_success_rate",
    "message": "must be a percentage from 0 to 100, got 120"}], "request_id": "5f0c…"}))]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Each bad field by its JSON path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Why each strategy was dropped, when no strategy could be selected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidates: Option<Vec<Verdict>>,
    /// Added to every problem by the request-id middleware.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:ohfp:problem:{slug}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            candidates: None,
            request_id: None,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut res = (status, axum::Json(&self)).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// Handlers return `Result<_, ApiError>`; `?` converts from `AppError`.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        ApiError(e)
    }
}

impl From<&AppError> for Problem {
    fn from(e: &AppError) -> Self {
        let detail = e.to_string();
        match e {
            AppError::BadRequest(_) => Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                "Malformed request",
                detail,
            ),
            AppError::Validation(errors) => {
                let summary: Vec<String> = errors
                    .iter()
                    .map(|f| format!("{}: {}", f.path, f.message))
                    .collect();
                Problem {
                    errors: errors.clone(),
                    ..Problem::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "validation",
                        "Invalid request",
                        summary.join("; "),
                    )
                }
            }
            AppError::PayloadTooLarge(_) => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Request body too large",
                detail,
            ),
            AppError::NotFound { .. } => {
                Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
            }
            AppError::Conflict(_) => {
                Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
            }
            AppError::NoCandidate(n) => Problem {
                candidates: Some(n.verdicts.clone()),
                ..Problem::new(
                    StatusCode::CONFLICT,
                    "no-candidate",
                    "No strategy available",
                    detail,
                )
            },
            AppError::Unauthorized => Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                detail,
            ),
            AppError::Unavailable(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                detail,
            ),
            AppError::Internal(_) => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "the service failed to handle this request; the log has the details (look for the request id)",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let AppError::Internal(e) = &self.0 {
            tracing::error!(error = ?e, "internal error");
        }
        Problem::from(&self.0).into_response()
    }
}
