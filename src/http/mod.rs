//! HTTP: routes, extractors, the error mapping and the OpenAPI document. Thin: handlers turn
//! requests into commands and queries and their answers into JSON.

mod alerts;
pub mod error;
pub mod extract;
mod hostfactory;
mod middleware;
mod operation;
pub mod prometheus;
mod providers;
pub mod serve;
mod service;
mod status_page;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ohfp",
        description = "HostFactory provider service with a multi-provider strategy layer \
            (selection policies, circuit breakers, failover, health checks, metrics). \
            Errors are application/problem+json (RFC 9457). With server.auth enabled, POST, PUT \
            and DELETE under /api/v1 need `Authorization: Bearer <token>` of a scope that allows \
            them (401 without a known token, 403 for the wrong scope); reads need one only with \
            server.auth.protect_reads.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "providers", description = "Provider strategies: selection, execution, registration, health, metrics"),
        (name = "hostfactory", description = "HostFactory's five provider calls in its own wire format (camelCase); the shims in config/hostfactory/scripts post to these"),
        (name = "requests", description = "The same request lifecycle for operators (snake_case)"),
        (name = "alerts", description = "Alert rules and the alerts they raised"),
        (name = "service", description = "Liveness, readiness, Prometheus metrics"),
    ),
    components(schemas(error::Problem))
)]
struct ApiDoc;

/// All routes with their OpenAPI document.
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(providers::execute_operation))
        .routes(routes!(providers::select_strategy))
        .routes(routes!(
            providers::register_strategy,
            providers::list_providers
        ))
        .routes(routes!(providers::configure, providers::get_configuration))
        .routes(routes!(providers::health_all))
        .routes(routes!(providers::metrics_all))
        .routes(routes!(
            providers::get_strategy,
            providers::update_strategy,
            providers::unregister_strategy
        ))
        .routes(routes!(providers::health_one, providers::update_health))
        .routes(routes!(providers::check_health))
        .routes(routes!(providers::metrics_one))
        .routes(routes!(providers::capabilities))
        .routes(routes!(providers::parked_pools))
        .routes(routes!(providers::set_weight))
        .routes(routes!(providers::set_circuit))
        .routes(routes!(service::status))
        .routes(routes!(status_page::status_page))
        .routes(routes!(service::list_events))
        .routes(routes!(service::stream_events))
        .routes(routes!(alerts::list_alerts))
        .routes(routes!(alerts::get_rules, alerts::put_rules))
        .routes(routes!(hostfactory::get_available_templates))
        .routes(routes!(hostfactory::request_machines))
        .routes(routes!(hostfactory::request_return_machines))
        .routes(routes!(hostfactory::get_request_status))
        .routes(routes!(hostfactory::get_return_requests))
        .routes(routes!(hostfactory::templates))
        .routes(routes!(hostfactory::create_request))
        .routes(routes!(hostfactory::request_status))
        .routes(routes!(hostfactory::create_return, hostfactory::reclaims))
        .routes(routes!(service::health))
        .routes(routes!(service::ready))
        .routes(routes!(prometheus::metrics))
        .split_for_parts()
}

/// The OpenAPI document as committed in `openapi/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = routes().1;
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    document_auth(&mut doc);
    doc
}

/// The bearer scheme and the 401/403 answers of [`middleware::require_token`], added to every
/// route it guards here, next to the middleware, rather than to each handler's annotation.
/// The requirement is optional (`{}` first): auth may be off, and reads are open by default.
fn document_auth(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{
        HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
    };
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    doc.components.get_or_insert_with(Default::default).add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "A token of server.auth; its scope (read-only, read-write, hostfactory) decides what it may call",
                ))
                .build(),
        ),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        if !(path.starts_with("/api/v1/") || path == "/metrics") {
            continue;
        }
        // HostFactory reads {"message"} from every failure of its calls.
        let (content_type, schema) = if path.starts_with("/api/v1/hostfactory/") {
            ("application/json", "WireMessage")
        } else {
            (error::PROBLEM_JSON, "Problem")
        };
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for op in operations.into_iter().flatten() {
            op.security = Some(vec![
                SecurityRequirement::default(),
                SecurityRequirement::new("bearer", Vec::<String>::new()),
            ]);
            for (status, description) in [
                ("401", "No known bearer token; `WWW-Authenticate: Bearer`"),
                ("403", "The token's scope does not allow this route"),
            ] {
                let response = ResponseBuilder::new()
                    .description(description)
                    .content(
                        content_type,
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(schema)))
                            .build(),
                    )
                    .build();
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| response.into());
            }
        }
    }
}

pub fn router(state: AppState) -> Router {
    let (api, _) = routes();
    let doc = openapi();
    let request_id = HeaderName::from_static(middleware::REQUEST_ID);
    let body_limit = state.config.server.max_body_bytes;
    api.merge(SwaggerUi::new("/docs").url("/openapi.json", doc))
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::require_token))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::deadline))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(middleware::hostfactory_messages))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                    let id = req
                        .headers()
                        .get(middleware::REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id, token = tracing::field::Empty)
                }))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(axum::middleware::from_fn(middleware::problem_request_id))
                .layer(CatchPanicLayer::custom(middleware::panic_response)),
        )
        // Outermost, so that it counts what the client got (401s, timeouts, panics as 500).
        .layer(axum::middleware::from_fn_with_state(state.clone(), prometheus::track))
        .with_state(state)
}
