//! `/status`: the live status page. One self-contained HTML file (inline style and script, no
//! other assets) that renders `GET /api/v1/status` and refetches it as events arrive on
//! `/api/v1/events/stream`.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("status.html");

/// Nothing but the page's own inline style and script, and requests back to this service.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The live status page (HTML): strategies with health, breaker, in flight, success rate, p95
/// and last error; active alerts; HostFactory requests in flight. It renders getStatus and
/// follows the event stream to stay current. With `server.auth.protect_reads` it can show
/// nothing (a browser's EventSource sends no bearer token) and says so.
#[utoipa::path(get, path = "/status", tag = "service", operation_id = "statusPage",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
pub async fn status_page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}
