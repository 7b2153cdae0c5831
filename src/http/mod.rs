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
pub mod rate_limit;
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
            them (401 without a known token, 403 for the wrong scope, 429 with Retry-After over \
            the token's rate limit); reads need one only with server.auth.protect_reads.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "providers", description = "Provider strategies: selection, execution, registration, health, metrics"),
        (name = "hostfactory", description = "HostFactory's five provider calls in its own wire format (camelCase); the shims in config/hostfactory/scripts post to these"),
        (name = "requests", description = "The same request lifecycle for operators (snake_case)"),
        (name = "alerts", description = "Alert rules and the alerts they raised"),
        (name = "service", description = "Liveness, readiness, Prometheus metrics"),
    ),
    components(schemas(error::Problem)),
    // Routed apart from the others, ahead of the layers (see `router`).
    paths(service::health)
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
        .routes(routes!(service::list_audit))
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
        .routes(routes!(hostfactory::plan_request))
        .routes(routes!(hostfactory::request_status))
        .routes(routes!(hostfactory::request_events))
        .routes(routes!(hostfactory::create_return, hostfactory::reclaims))
        .routes(routes!(service::ready))
        .routes(routes!(prometheus::metrics))
        .split_for_parts()
}

/// The OpenAPI document as committed in `openapi/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = routes().1;
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    document_auth(&mut doc);
    document_failures(&mut doc);
    document_optional_bodies(&mut doc);
    doc
}

/// The answer a route gives for a failure: `{"message"}` on HostFactory's calls (it reads
/// that from every failure), problem+json elsewhere.
fn failure_answer(path: &str, description: &str) -> utoipa::openapi::ResponseBuilder {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let (content_type, schema) = if path.starts_with("/api/v1/hostfactory/") {
        ("application/json", "WireMessage")
    } else {
        (error::PROBLEM_JSON, "Problem")
    };
    ResponseBuilder::new().description(description).content(
        content_type,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(schema)))
            .build(),
    )
}

/// Each operation of `doc` with its path.
fn operations(
    doc: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = (&String, &mut utoipa::openapi::path::Operation)> {
    doc.paths.paths.iter_mut().flat_map(|(path, item)| {
        [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        .map(move |op| (path, op))
    })
}

/// HostFactory calls whose input may be left out altogether (getAvailableTemplates usually
/// gets `{}`, getReturnRequests may get nothing). The annotation cannot say "optional but not
/// null" (`Option<T>` makes the schema nullable, and `null` is refused), so it is said here.
const OPTIONAL_BODIES: [&str; 2] = [
    "/api/v1/hostfactory/getAvailableTemplates",
    "/api/v1/hostfactory/getReturnRequests",
];

fn document_optional_bodies(doc: &mut utoipa::openapi::OpenApi) {
    for path in OPTIONAL_BODIES {
        let body = doc
            .paths
            .paths
            .get_mut(path)
            .and_then(|item| item.post.as_mut())
            .and_then(|op| op.request_body.as_mut());
        if let Some(body) = body {
            body.required = Some(utoipa::openapi::Required::False);
        }
    }
}

/// The bearer scheme and the 401/403/429 answers of [`middleware::require_token`], added to
/// every route it guards here, next to the middleware, rather than to each handler's
/// annotation. The requirement is optional (`{}` first): auth may be off, and reads are open
/// by default.
fn document_auth(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::security::{
        HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
    };
    use utoipa::openapi::{ObjectBuilder, Type};
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
    for (path, op) in operations(doc) {
        if !(path.starts_with("/api/v1/") || path == "/metrics") {
            continue;
        }
        op.security = Some(vec![
            SecurityRequirement::default(),
            SecurityRequirement::new("bearer", Vec::<String>::new()),
        ]);
        for (status, description) in [
            ("401", "No known bearer token; `WWW-Authenticate: Bearer`"),
            ("403", "The token's scope does not allow this route"),
            (
                "429",
                "The token is over its rate limit (server.auth.tokens[].rate_limit); `Retry-After` says when to call again",
            ),
        ] {
            op.responses
                .responses
                .entry(status.to_string())
                .or_insert_with(|| {
                    let answer = failure_answer(path, description);
                    let answer = if status == "429" {
                        answer.header(
                            "Retry-After",
                            HeaderBuilder::new()
                                .schema(ObjectBuilder::new().schema_type(Type::Integer))
                                .description(Some("Whole seconds until the token may call again"))
                                .build(),
                        )
                    } else {
                        answer
                    };
                    answer.build().into()
                });
        }
    }
}

/// The failures any route of the kind may answer, from the layers around the handlers rather
/// than the handlers themselves, so documented here once: a body that is not JSON (400), too
/// large (413, `server.max_body_bytes`) or wrong in a field (422); a path parameter that does
/// not parse (400); and for every route under /api/v1 a time-out or a service going away (503,
/// `server.request_timeout_seconds`) and a failure of the service itself (500).
fn document_failures(doc: &mut utoipa::openapi::OpenApi) {
    for (path, op) in operations(doc) {
        let mut answers = Vec::new();
        if op.request_body.is_some() {
            answers.extend([
                ("400", "The body is not JSON"),
                ("413", "The body is larger than server.max_body_bytes"),
                ("422", "A field is not valid; the answer names it"),
            ]);
        }
        if path.contains('{') {
            answers.push(("400", "A path parameter is not valid"));
        }
        let has_query = op
            .parameters
            .iter()
            .flatten()
            .any(|p| matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query));
        if has_query {
            answers.push((
                "422",
                "A query parameter is not valid, or not one this operation knows; the answer names it",
            ));
        }
        if path.starts_with("/api/v1/") {
            answers.extend([
                ("500", "The service failed; the log has the details under the request id"),
                ("503", "The request took longer than server.request_timeout_seconds, or the service is stopping"),
            ]);
        }
        for (status, description) in answers {
            op.responses
                .responses
                .entry(status.to_string())
                .or_insert_with(|| failure_answer(path, description).build().into());
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
        // The liveness probe, added after the layers so that none of them wraps it: it takes no
        // token, body or time, and a probe every few seconds needs no request id, span or
        // HTTP series. Measured, the layers cost more than half of its answer's CPU time.
        .route("/health", axum::routing::get(service::health))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::config;
    use crate::hostfactory::error::MAX_MACHINE_COUNT;
    use crate::strategy::balancing::MAX_WEIGHT;
    use crate::strategy::selection::MAX_RESPONSE_TIME_MS;

    /// The schema's bounds are literals (utoipa takes no constants): each is checked against
    /// the constant the validation uses, so the two cannot drift apart.
    #[test]
    fn documented_bounds_are_the_validated_ones() {
        let doc = serde_json::to_value(super::openapi()).unwrap();
        let field = |schema: &str, name: &str, bound: &str| -> f64 {
            doc["components"]["schemas"][schema]["properties"][name][bound]
                .as_f64()
                .unwrap_or_else(|| panic!("{schema}.{name} has no {bound}"))
        };
        let cases = [
            (
                "SettingsPatch",
                "health_check_interval",
                "minimum",
                config::MIN_HEALTH_CHECK_INTERVAL_SECONDS,
            ),
            (
                "SettingsPatch",
                "health_check_interval",
                "maximum",
                config::MAX_INTERVAL_SECONDS,
            ),
            (
                "SettingsPatch",
                "health_check_timeout",
                "maximum",
                config::MAX_TIMEOUT_SECONDS,
            ),
            (
                "SettingsPatch",
                "health_check_retries",
                "maximum",
                f64::from(config::MAX_HEALTH_CHECK_RETRIES),
            ),
            (
                "SettingsPatch",
                "fallback_strategies",
                "maxItems",
                config::MAX_FALLBACK_STRATEGIES as f64,
            ),
            (
                "BreakerPatch",
                "failure_threshold",
                "maximum",
                f64::from(config::MAX_FAILURE_THRESHOLD),
            ),
            (
                "BreakerPatch",
                "recovery_timeout",
                "maximum",
                config::MAX_RECOVERY_TIMEOUT_SECONDS,
            ),
            (
                "BreakerPatch",
                "half_open_max_calls",
                "maximum",
                f64::from(config::MAX_HALF_OPEN_MAX_CALLS),
            ),
            (
                "SelectionCriteria",
                "max_response_time_ms",
                "maximum",
                MAX_RESPONSE_TIME_MS,
            ),
            ("SetWeightCommand", "weight", "maximum", MAX_WEIGHT),
            ("RegisterCommand", "weight", "maximum", MAX_WEIGHT),
            (
                "RequestMachinesCommand",
                "machine_count",
                "maximum",
                MAX_MACHINE_COUNT as f64,
            ),
        ];
        for (schema, name, bound, expected) in cases {
            assert_eq!(
                field(schema, name, bound),
                expected,
                "{schema}.{name}.{bound}"
            );
        }
        let policy = &doc["components"]["schemas"]["SettingsPatch"]["properties"]["default_selection_policy"];
        assert!(policy.to_string().contains("SelectionPolicy"), "{policy}");
        let data = &doc["components"]["schemas"]["OperationResult"]["properties"]["data"];
        assert!(
            data["type"]
                .as_array()
                .is_some_and(|t| t.contains(&Value::from("null"))),
            "{data}"
        );
    }

    #[test]
    fn every_operation_documents_its_failures() {
        let doc = serde_json::to_value(super::openapi()).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let codes = op["responses"].as_object().unwrap();
                let mut expected = Vec::new();
                if op.get("requestBody").is_some() {
                    expected.extend(["400", "413", "422"]);
                }
                if path.starts_with("/api/v1/") {
                    expected.extend(["401", "403", "500", "503"]);
                }
                for code in expected {
                    assert!(codes.contains_key(code), "{method} {path} lacks {code}");
                }
            }
        }
    }
}
