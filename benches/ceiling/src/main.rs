//! A trivial axum handler: `GET /health` answers a fixed small JSON body, with no middleware.
//! `ohfp-ceiling PORT` serves it on 127.0.0.1:PORT with tokio's multi-threaded runtime, as ohfp.

use axum::Router;
use axum::http::header;
use axum::routing::get;

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: ohfp-ceiling PORT");
    let app = Router::new().route(
        "/health",
        get(|| async {
            (
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"status":"ok","version":"0.1.0","uptime_seconds":0}"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
