//! Alerts: the list and the rules.

use axum::Json;
use axum::extract::State;

use super::error::{ApiError, Problem};
use super::extract::ApiJson;
use crate::alerts::{AlertList, PutRules, RulesView};
use crate::state::AppState;

/// Active alerts and the most recently cleared (listAlerts).
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", operation_id = "listAlerts",
    responses((status = 200, body = AlertList)))]
pub async fn list_alerts(State(state): State<AppState>) -> Result<Json<AlertList>, ApiError> {
    Ok(Json(state.alerts.list().await?))
}

/// The alert rules in force and where they come from (getAlertRules).
#[utoipa::path(get, path = "/api/v1/alerts/rules", tag = "alerts", operation_id = "getAlertRules",
    responses((status = 200, body = RulesView)))]
pub async fn get_rules(State(state): State<AppState>) -> Json<RulesView> {
    Json(state.alerts.rules())
}

/// Replaces the alert rules (configureAlertRules); stored, they replace the file's from now on,
/// also after a restart. Checked as the file's are.
#[utoipa::path(put, path = "/api/v1/alerts/rules", tag = "alerts", operation_id = "configureAlertRules",
    request_body = PutRules,
    responses((status = 200, body = RulesView),
        (status = 422, description = "A rule is not valid; the problem names the field, e.g. rules[0].condition.percent", body = Problem, content_type = "application/problem+json")))]
pub async fn put_rules(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<PutRules>,
) -> Result<Json<RulesView>, ApiError> {
    Ok(Json(state.alerts.set_rules(body).await?))
}
