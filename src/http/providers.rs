//! Provider strategy routes: one per command and query of the reference's CQRS names.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::error::{ApiError, Problem};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::operation::operation_from_parameters;
use crate::app::commands::{
    ConfigureView, ExecuteCommand, OperationResult, RegisterCommand, SelectCommand, SelectionView,
    SetCircuitCommand, SetWeightCommand, UnregisterView, UpdateHealthCommand,
};
use crate::app::queries::{
    CapabilitiesQuery, CapabilitiesView, HealthList, HealthQuery, ListQuery, MetricsQuery,
    MetricsReport, ProviderList, StrategyMetrics,
};
use crate::app::views::{CircuitView, HealthCheckView, HealthView, StrategyView};
use crate::app::{AppError, ConfigurationView};
use crate::state::AppState;

type ApiResult<T> = Result<Json<T>, ApiError>;

/// executeProviderOperation: run one operation through selection, breaker and failover.
///
/// A provider failure is an answer, not an HTTP error: `success` is false and `error_code`
/// says why (the status stays 200). No strategy to run it on is a 409 with each strategy's reason.
#[utoipa::path(post, path = "/api/v1/providers/operations", tag = "providers",
    operation_id = "executeProviderOperation",
    request_body = ExecuteCommand,
    responses(
        (status = 200, description = "The operation ran; see `success`", body = OperationResult),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "strategy_override names no strategy", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No strategy can take the operation", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn execute_operation(
    State(state): State<AppState>,
    ApiJson(cmd): ApiJson<ExecuteCommand>,
) -> ApiResult<OperationResult> {
    let op = operation_from_parameters(cmd.operation_type, &cmd.parameters, &state.hostfactory)
        .map_err(AppError::Validation)?;
    Ok(Json(state.engine.execute_operation(op, cmd).await?))
}

/// selectProviderStrategy: which strategy would take this operation, and why.
#[utoipa::path(post, path = "/api/v1/providers/selection", tag = "providers",
    operation_id = "selectProviderStrategy",
    request_body = SelectCommand,
    responses(
        (status = 200, body = SelectionView),
        (status = 409, description = "No strategy passes the filter; `candidates` says why", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn select_strategy(
    State(state): State<AppState>,
    ApiJson(cmd): ApiJson<SelectCommand>,
) -> ApiResult<SelectionView> {
    Ok(Json(state.engine.select_strategy(cmd)?))
}

/// registerProviderStrategy: add a strategy at run time (persisted; survives restarts).
#[utoipa::path(post, path = "/api/v1/providers", tag = "providers",
    operation_id = "registerProviderStrategy",
    request_body = RegisterCommand,
    responses(
        (status = 201, body = StrategyView),
        (status = 409, description = "The name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad name, unknown provider type or invalid strategy_config", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn register_strategy(
    State(state): State<AppState>,
    ApiJson(cmd): ApiJson<RegisterCommand>,
) -> Result<(StatusCode, Json<StrategyView>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.engine.register_strategy(cmd).await?),
    ))
}

/// listAvailableProviders.
#[utoipa::path(get, path = "/api/v1/providers", tag = "providers",
    operation_id = "listAvailableProviders",
    params(ListQuery),
    responses((status = 200, body = ProviderList)))]
pub async fn list_providers(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<ProviderList> {
    Ok(Json(state.engine.list_providers(&q)))
}

/// One registered strategy.
#[utoipa::path(get, path = "/api/v1/providers/{name}", tag = "providers",
    operation_id = "getProviderStrategy",
    params(("name" = String, Path, description = "Strategy name")),
    responses((status = 200, body = StrategyView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_strategy(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StrategyView> {
    let entry = state.engine.entry(&name)?;
    Ok(Json(StrategyView::of(&entry)))
}

/// updateProviderStrategy: replace config, capabilities, priority and weight; metrics, health
/// and circuit state are kept. A strategy defined by the configuration file takes the file's
/// definition again at the next start.
#[utoipa::path(put, path = "/api/v1/providers/{name}", tag = "providers",
    operation_id = "updateProviderStrategy",
    params(("name" = String, Path, description = "Strategy name")),
    request_body = RegisterCommand,
    responses((status = 200, body = StrategyView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn update_strategy(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(cmd): ApiJson<RegisterCommand>,
) -> ApiResult<StrategyView> {
    Ok(Json(state.engine.update_strategy(&name, cmd).await?))
}

/// setStrategyWeight: one load balancer member's weight (the guide's
/// `set_strategy_weight(member, weight)`); the other members keep theirs. Persisted like an
/// update; the balancer's statistics are kept.
#[utoipa::path(put, path = "/api/v1/providers/{name}/weights/{member}", tag = "providers",
    operation_id = "setStrategyWeight",
    params(("name" = String, Path, description = "The load balancer"),
        ("member" = String, Path, description = "One of its members")),
    request_body = SetWeightCommand,
    responses((status = 200, body = StrategyView),
        (status = 404, description = "No such strategy, or not a member of it", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The strategy is not a load balancer", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The weight is not a positive number", body = Problem, content_type = "application/problem+json")))]
pub async fn set_weight(
    State(state): State<AppState>,
    ApiPath((name, member)): ApiPath<(String, String)>,
    ApiJson(cmd): ApiJson<SetWeightCommand>,
) -> ApiResult<StrategyView> {
    Ok(Json(
        state.engine.set_member_weight(&name, &member, cmd).await?,
    ))
}

/// unregisterProviderStrategy.
#[utoipa::path(delete, path = "/api/v1/providers/{name}", tag = "providers",
    operation_id = "unregisterProviderStrategy",
    params(("name" = String, Path, description = "Strategy name")),
    responses((status = 200, body = UnregisterView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Still the active strategy or a fallback", body = Problem, content_type = "application/problem+json")))]
pub async fn unregister_strategy(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<UnregisterView> {
    Ok(Json(state.engine.unregister_strategy(&name).await?))
}

/// configureProviderStrategy: change policy, criteria, active strategy, fallbacks, health
/// interval or breaker settings at run time. Only the fields given change; they persist.
#[utoipa::path(put, path = "/api/v1/providers/configuration", tag = "providers",
    operation_id = "configureProviderStrategy",
    request_body = crate::app::settings::SettingsPatch,
    responses((status = 200, body = ConfigureView), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn configure(
    State(state): State<AppState>,
    ApiJson(patch): ApiJson<crate::app::settings::SettingsPatch>,
) -> ApiResult<ConfigureView> {
    Ok(Json(state.engine.configure(patch).await?))
}

/// getProviderStrategyConfig: the effective configuration.
#[utoipa::path(get, path = "/api/v1/providers/configuration", tag = "providers",
    operation_id = "getProviderStrategyConfig",
    responses((status = 200, body = ConfigurationView)))]
pub async fn get_configuration(State(state): State<AppState>) -> ApiResult<ConfigurationView> {
    Ok(Json(state.engine.configuration()))
}

/// getProviderHealth for every strategy.
#[utoipa::path(get, path = "/api/v1/providers/health", tag = "providers",
    operation_id = "getProviderHealth",
    responses((status = 200, body = HealthList)))]
pub async fn health_all(State(state): State<AppState>) -> ApiResult<HealthList> {
    Ok(Json(state.engine.health_all()))
}

/// getProviderHealth for one strategy.
#[utoipa::path(get, path = "/api/v1/providers/{name}/health", tag = "providers",
    operation_id = "getProviderHealthByName",
    params(("name" = String, Path, description = "Strategy name"), HealthQuery),
    responses((status = 200, body = HealthView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn health_one(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<HealthQuery>,
) -> ApiResult<HealthView> {
    Ok(Json(state.engine.health_of(&name, &q).await?))
}

/// updateProviderHealth: an external monitor's or an operator's report, effective at once and
/// recorded with its source; the next background check replaces it.
#[utoipa::path(post, path = "/api/v1/providers/{name}/health", tag = "providers",
    operation_id = "updateProviderHealth",
    params(("name" = String, Path, description = "Strategy name")),
    request_body = UpdateHealthCommand,
    responses((status = 200, body = HealthView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn update_health(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(cmd): ApiJson<UpdateHealthCommand>,
) -> ApiResult<HealthView> {
    Ok(Json(state.engine.update_health(&name, cmd).await?))
}

/// setProviderCircuit: force a strategy's circuit open or closed, or hand it back to its
/// rules (`auto`). Recorded with its `source`, persisted (survives restarts) and announced as a
/// `circuit_control` event (and a `circuit_transition` when the state changes).
#[utoipa::path(put, path = "/api/v1/providers/{name}/circuit", tag = "providers",
    operation_id = "setProviderCircuit",
    params(("name" = String, Path, description = "Strategy name")),
    request_body = SetCircuitCommand,
    responses((status = 200, body = CircuitView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn set_circuit(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(cmd): ApiJson<SetCircuitCommand>,
) -> ApiResult<CircuitView> {
    Ok(Json(state.engine.set_circuit(&name, cmd).await?))
}

/// checkProviderHealth: probe one strategy now and answer the fresh result (the GETs answer
/// the cached health and never probe). It is recorded as the strategy's health unless an
/// outside report with `retry_after` holds; `check.recorded` says which.
#[utoipa::path(post, path = "/api/v1/providers/{name}/health/check", tag = "providers",
    operation_id = "checkProviderHealth",
    params(("name" = String, Path, description = "Strategy name")),
    responses((status = 200, body = HealthCheckView),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn check_health(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<HealthCheckView> {
    Ok(Json(state.engine.check_health_now(&name).await?))
}

/// getProviderMetrics for every strategy (including unregistered ones that still have data).
#[utoipa::path(get, path = "/api/v1/providers/metrics", tag = "providers",
    operation_id = "getProviderMetrics",
    params(MetricsQuery),
    responses((status = 200, body = MetricsReport), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn metrics_all(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<MetricsQuery>,
) -> ApiResult<MetricsReport> {
    Ok(Json(state.engine.metrics(None, &q).await?))
}

/// getProviderMetrics for one strategy.
#[utoipa::path(get, path = "/api/v1/providers/{name}/metrics", tag = "providers",
    operation_id = "getProviderMetricsByName",
    params(("name" = String, Path, description = "Strategy name"), MetricsQuery),
    responses((status = 200, body = StrategyMetrics),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn metrics_one(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<MetricsQuery>,
) -> ApiResult<StrategyMetrics> {
    let mut report = state.engine.metrics(Some(&name), &q).await?;
    report
        .strategies
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError(AppError::strategy_not_found(&name)))
}

/// getProviderCapabilities.
#[utoipa::path(get, path = "/api/v1/providers/{name}/capabilities", tag = "providers",
    operation_id = "getProviderCapabilities",
    params(("name" = String, Path, description = "Strategy name"), CapabilitiesQuery),
    responses((status = 200, body = CapabilitiesView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn capabilities(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<CapabilitiesQuery>,
) -> ApiResult<CapabilitiesView> {
    Ok(Json(state.engine.capabilities_of(&name, &q).await?))
}
