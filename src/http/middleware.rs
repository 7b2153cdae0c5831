//! Cross-cutting layers: bearer tokens with scopes and rate limits, a whole-request deadline,
//! and the request id written into every problem body.

use std::time::Duration;

use axum::body::{Body, HttpBody, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use subtle::ConstantTimeEq;

use super::error::{MAX_PROBLEM_BYTES, PROBLEM_JSON, Problem};
use super::rate_limit::Limited;
use crate::config::{AuthConfig, TokenScope};
use crate::domain::AuditCause;
use crate::state::AppState;

pub const REQUEST_ID: &str = "x-request-id";

/// What a route needs from a token; `None` for routes that never need one (`/health`,
/// `/ready`, the documentation).
#[derive(Debug, Clone, Copy)]
struct Route {
    write: bool,
    /// HostFactory's calls and the operator request routes, which the `hostfactory` scope may call.
    hostfactory: bool,
}

impl Route {
    fn of(method: &Method, path: &str) -> Option<Route> {
        let write = matches!(
            *method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        if path == "/metrics" {
            return Some(Route {
                write,
                hostfactory: false,
            });
        }
        let rest = path.strip_prefix("/api/v1/")?;
        let first = rest.split('/').next().unwrap_or_default();
        Some(Route {
            write,
            hostfactory: matches!(first, "hostfactory" | "requests" | "returns" | "templates"),
        })
    }

    fn allowed_to(self, scope: TokenScope) -> bool {
        match scope {
            TokenScope::ReadWrite => true,
            TokenScope::ReadOnly => !self.write,
            TokenScope::HostFactory => self.hostfactory,
        }
    }
}

/// The token of `Authorization: <scheme> <token>`, the scheme matched without case (RFC 9110).
fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The name and scope of the token given. Every token is compared, with `subtle`'s comparison,
/// so that neither the time taken nor an early exit tells how much of a guess was right.
fn token_of<'a>(auth: &'a AuthConfig, given: &str) -> Option<(&'a str, TokenScope)> {
    let mut found = None;
    for (name, scope, token) in auth.credentials() {
        if bool::from(token.as_bytes().ct_eq(given.as_bytes())) {
            found = Some((name, scope));
        }
    }
    found
}

/// With `server.auth.enabled`, POST/PUT/PATCH/DELETE under /api/v1 need a token whose scope
/// allows the route (401 without a known token, 403 for the wrong scope); reads need one with
/// `protect_reads`. A token over its rate limit gets 429 (every call it makes counts). The
/// token's name goes into the request's log span and the audit trail's cause, never the token.
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let auth = &state.config.server.auth;
    // What the audit trail says caused a cloud change made while serving this call.
    let mut cause = AuditCause {
        route: Some(format!("{} {}", req.method(), req.uri().path())),
        ..AuditCause::default()
    };
    let route = Route::of(req.method(), req.uri().path());
    let Some(route) = route.filter(|r| auth.enabled && (r.write || auth.protect_reads)) else {
        return cause.scope(next.run(req)).await;
    };
    let Some((name, scope)) = bearer(req.headers()).and_then(|given| token_of(auth, given)) else {
        tracing::warn!("request without a known bearer token refused");
        return Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            "this route needs 'Authorization: Bearer <token>' with one of the service's tokens (OHFP_TOKEN)",
        )
        .into_response();
    };
    tracing::Span::current().record("token", name);
    if let Err(over) = state.rate_limits.check(name) {
        return rate_limited(&state, name, &over);
    }
    if !route.allowed_to(scope) {
        tracing::warn!(
            token = name,
            scope = scope.as_str(),
            "token's scope does not allow the route"
        );
        return Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            format!(
                "token '{name}' has scope {} which does not allow {} {}",
                scope.as_str(),
                req.method(),
                req.uri().path()
            ),
        )
        .into_response();
    }
    cause.token = Some(name.to_string());
    cause.scope(next.run(req)).await
}

/// 429 for a call over its token's rate limit, with `Retry-After` in whole seconds.
fn rate_limited(state: &AppState, name: &str, over: &Limited) -> Response {
    let wait = over.retry_after_seconds();
    tracing::warn!(
        token = name,
        retry_after = wait,
        "token over its rate limit"
    );
    state.prometheus.rate_limited(name);
    let mut res = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        "Too many requests",
        format!(
            "token '{name}' is limited to {} call(s) a second in bursts of {}; retry in {wait}s",
            over.limit.per_second, over.limit.burst
        ),
    )
    .into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait));
    res
}

/// Ends a request that runs longer than `server.request_timeout_seconds` with a 503 problem.
/// Work already handed to providers carries on in its own task.
pub async fn deadline(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = Duration::from_secs_f64(state.config.server.request_timeout_seconds);
    // The event stream is long-lived by design.
    if req.uri().path() == "/api/v1/events/stream" {
        return next.run(req).await;
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "Request timed out",
            format!("the request took longer than {}s", limit.as_secs_f64()),
        )
        .into_response(),
    }
}

/// Copies the request id into problem bodies so that an operator can quote it. A body that is
/// not a whole problem of known length (at most [`MAX_PROBLEM_BYTES`]) passes as it is, never cut.
pub async fn problem_request_id(req: Request, next: Next) -> Response {
    let id = req.headers().get(REQUEST_ID).cloned();
    let res = next.run(req).await;
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    let Some(id) = id.filter(|_| is_problem) else {
        return res;
    };
    let (mut parts, body) = res.into_parts();
    let known = body.size_hint().exact();
    if known.is_none_or(|len| len > MAX_PROBLEM_BYTES as u64) {
        return Response::from_parts(parts, body);
    }
    let Ok(bytes) = to_bytes(body, MAX_PROBLEM_BYTES).await else {
        return Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the service could not read back its own problem body",
        )
        .into_response();
    };
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.insert(
                "request_id".into(),
                serde_json::Value::String(id.to_str().unwrap_or("").to_string()),
            );
            serde_json::to_vec(&map).unwrap_or_else(|_| bytes.to_vec())
        }
        _ => bytes.to_vec(),
    };
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    Response::from_parts(parts, Body::from(body))
}

/// HostFactory reads `{"message"}` from every failure of its calls; a failure made before or
/// around the call's handler (an unknown call name, a body over the limit, the deadline, a
/// missing token) is a problem or plain text, so it is rewritten: the problem's `detail` (or
/// the text) becomes the message, the status stays.
pub async fn hostfactory_messages(req: Request, next: Next) -> Response {
    let is_hostfactory = req.uri().path().starts_with("/api/v1/hostfactory/");
    let res = next.run(req).await;
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/json");
    if !is_hostfactory || res.status().is_success() || is_json {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let status = parts.status;
    let text = match to_bytes(body, MAX_PROBLEM_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|p| {
            p.get("detail")
                .or_else(|| p.get("title"))
                .and_then(|d| d.as_str().map(str::to_string))
        })
        .unwrap_or(text);
    let message = if message.trim().is_empty() {
        status.canonical_reason().unwrap_or("failed").to_string()
    } else {
        message
    };
    let body = serde_json::json!({ "message": message }).to_string();
    // Other headers (WWW-Authenticate, Retry-After) stay.
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    Response::from_parts(parts, Body::from(body))
}

/// Unknown route.
pub async fn not_found(req: Request) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        format!(
            "no route for {} {} (the API is under /api/v1; see /docs)",
            req.method(),
            req.uri().path()
        ),
    )
}

/// Known route, wrong method.
pub async fn method_not_allowed(req: Request) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!(
            "{} is not allowed on {} (see /docs)",
            req.method(),
            req.uri().path()
        ),
    )
}

/// A handler panicked: a 500 problem, never a dropped connection.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Internal error",
        "the service failed to handle this request; the log has the details",
    )
    .into_response()
}
