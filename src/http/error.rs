//! The one mapping from `AppError` to an HTTP answer: RFC 9457 problem details.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::{AppError, FieldError};
use crate::hostfactory::HfError;
use crate::strategy::Verdict;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The longest problem body the service sends (before the request id is added).
pub const MAX_PROBLEM_BYTES: usize = 64 * 1024;

/// Room kept under [`MAX_PROBLEM_BYTES`] for the request id the middleware adds.
const REQUEST_ID_ROOM: usize = 1024;

/// Ends a detail that was cut to fit.
const CUT_MARK: &str = " … [cut: the problem body is limited to 64 KiB]";

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

impl Problem {
    /// The JSON body, at most `max` bytes. A detail too long for it is cut on a character
    /// boundary and marked; if that is not enough, so are the messages of the field errors and
    /// candidates; if even that is not enough, the lists are left out and the detail says so.
    /// Whatever is cut, the body stays valid JSON.
    fn to_json(&self, max: usize) -> Vec<u8> {
        let whole = to_vec(self);
        if whole.len() <= max {
            return whole;
        }
        if let Some(body) = self.with_detail_cut(max) {
            return body;
        }
        let mut short = self.clone();
        for e in &mut short.errors {
            shorten(&mut e.message, SHORT_MESSAGE);
        }
        for v in short.candidates.iter_mut().flatten() {
            shorten(&mut v.reason, SHORT_MESSAGE);
        }
        if let Some(body) = short.with_detail_cut(max) {
            return body;
        }
        let lists = self.errors.len() + self.candidates.as_ref().map_or(0, Vec::len);
        let bare = Problem {
            detail: format!(
                "{} [{lists} field error(s) and candidate(s) left out: too long]",
                self.detail
            ),
            errors: Vec::new(),
            candidates: None,
            ..self.clone()
        };
        let body = to_vec(&bare);
        if body.len() <= max {
            return body;
        }
        bare.with_detail_cut(max).unwrap_or_else(|| {
            to_vec(&Problem {
                detail: CUT_MARK.trim_start().into(),
                ..bare
            })
        })
    }

    /// The body with the longest marked prefix of the detail (cut on a character boundary)
    /// that fits in `max` bytes, or `None` when not even an empty prefix fits. Escapes make
    /// JSON longer than the text, so the cut is found by binary search on the body itself.
    fn with_detail_cut(&self, max: usize) -> Option<Vec<u8>> {
        let detail = &self.detail;
        let mut cut = self.clone();
        let mut body_of = |keep: usize| {
            cut.detail = format!("{}{CUT_MARK}", &detail[..keep]);
            to_vec(&cut)
        };
        let mut best = body_of(0);
        if best.len() > max {
            return None;
        }
        // A prefix of `lo` bytes fits; one of `hi` bytes (the whole detail) does not.
        let (mut lo, mut hi) = (0, detail.len());
        loop {
            let mut mid = lo + (hi - lo) / 2;
            while mid > lo && !detail.is_char_boundary(mid) {
                mid -= 1;
            }
            if mid == lo {
                mid = lo + 1;
                while mid < hi && !detail.is_char_boundary(mid) {
                    mid += 1;
                }
                if mid >= hi {
                    return Some(best);
                }
            }
            let body = body_of(mid);
            if body.len() <= max {
                (lo, best) = (mid, body);
            } else {
                hi = mid;
            }
        }
    }
}

/// What is left of each field error's message when the lists are too long.
const SHORT_MESSAGE: usize = 200;

/// Cuts `text` to at most `max` bytes (and a mark) on a character boundary.
fn shorten(text: &mut String, max: usize) {
    if text.len() > max {
        let mut keep = max;
        while !text.is_char_boundary(keep) {
            keep -= 1;
        }
        text.truncate(keep);
        text.push_str(" …");
    }
}

fn to_vec(problem: &Problem) -> Vec<u8> {
    serde_json::to_vec(problem).expect("a problem serializes")
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = self.to_json(MAX_PROBLEM_BYTES - REQUEST_ID_ROOM);
        let mut res = (status, body).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// The status of each HostFactory refusal, for both of its renderings (`{"message"}` on
/// HostFactory's routes, problem+json on the operator routes).
pub fn hostfactory_status(e: &HfError) -> StatusCode {
    match e {
        HfError::Malformed(_) => StatusCode::BAD_REQUEST,
        HfError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        HfError::UnknownTemplate { .. } | HfError::UnknownRequest(_) => StatusCode::NOT_FOUND,
        HfError::TemplateDisabled(_)
        | HfError::UnknownProvider { .. }
        | HfError::OverLimit { .. }
        | HfError::OverQuota { .. } => StatusCode::CONFLICT,
        HfError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn hostfactory_problem(e: &HfError) -> Problem {
    let detail = e.to_string();
    match e {
        HfError::Malformed(_) => Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            "Malformed request",
            detail,
        ),
        HfError::Invalid { field, message } => Problem {
            errors: vec![FieldError::new(field.clone(), message.clone())],
            ..Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid request",
                detail,
            )
        },
        HfError::UnknownTemplate { .. } | HfError::UnknownRequest(_) => {
            Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
        }
        HfError::TemplateDisabled(_)
        | HfError::UnknownProvider { .. }
        | HfError::OverLimit { .. }
        | HfError::OverQuota { .. } => {
            Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
        }
        HfError::Store(_) => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            detail,
        ),
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
            AppError::HostFactory(e) => hostfactory_problem(e),
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

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;
    use serde_json::Value;

    use super::*;

    async fn sent(problem: Problem) -> (usize, Option<usize>, Value) {
        let res = problem.into_response();
        let length = res
            .headers()
            .get(header::CONTENT_LENGTH)
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let bytes = to_bytes(res.into_body(), usize::MAX).await.unwrap();
        let value = serde_json::from_slice(&bytes).expect("valid JSON");
        (bytes.len(), length, value)
    }

    #[tokio::test]
    async fn a_short_problem_is_sent_whole() {
        let (len, _, v) = sent(Problem::new(
            StatusCode::CONFLICT,
            "conflict",
            "Conflict",
            "x",
        ))
        .await;
        assert!(len < 200);
        assert_eq!(v["detail"], "x");
        assert_eq!(v["status"], 409);
    }

    #[tokio::test]
    async fn a_long_detail_is_cut_inside_the_json() {
        // Quotes and multi-byte characters: escaping and char boundaries both matter.
        let detail = "é\"ü".repeat(40_000);
        let (len, length, v) = sent(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Invalid request",
            detail.clone(),
        ))
        .await;
        // The longest prefix that fits.
        let max = MAX_PROBLEM_BYTES - REQUEST_ID_ROOM;
        assert!((max - 8..=max).contains(&len), "{len}");
        assert!(length.is_none_or(|l| l == len));
        let cut = v["detail"].as_str().unwrap();
        let kept = cut.strip_suffix(CUT_MARK).expect("marked as cut");
        assert!(detail.starts_with(kept));
        assert!(kept.len() > MAX_PROBLEM_BYTES / 2, "{}", kept.len());
        assert_eq!(v["title"], "Invalid request");
    }

    #[tokio::test]
    async fn a_long_field_error_is_cut_and_kept() {
        let message = format!("unknown operation type '{}'", "X".repeat(100_000));
        let problem = Problem {
            errors: vec![FieldError::new("operation_type", message.clone())],
            ..Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid request",
                format!("operation_type: {message}"),
            )
        };
        let (len, _, v) = sent(problem).await;
        assert!(len <= MAX_PROBLEM_BYTES, "{len}");
        assert_eq!(v["errors"][0]["path"], "operation_type");
        let kept = v["errors"][0]["message"].as_str().unwrap();
        assert!(kept.starts_with("unknown operation type 'XXX") && kept.ends_with(" …"));
        assert!(v["detail"].as_str().unwrap().ends_with(CUT_MARK));
    }

    #[tokio::test]
    async fn too_many_field_errors_are_left_out_and_counted() {
        let errors = (0..5_000)
            .map(|i| {
                FieldError::new(
                    format!("items[{i}]"),
                    "must be a string of 1 to 64 characters",
                )
            })
            .collect();
        let problem = Problem {
            errors,
            ..Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid request",
                "5000 invalid field(s)",
            )
        };
        let (len, _, v) = sent(problem).await;
        assert!(len <= MAX_PROBLEM_BYTES, "{len}");
        assert!(v.get("errors").is_none(), "{v}");
        assert_eq!(
            v["detail"],
            "5000 invalid field(s) [5000 field error(s) and candidate(s) left out: too long]"
        );
    }
}
