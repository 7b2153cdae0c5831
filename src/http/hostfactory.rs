//! HostFactory's five calls in its own wire format (`/api/v1/hostfactory/{call}`), and the
//! operator routes over the same lifecycle in snake_case.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use std::convert::Infallible;

use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;

use super::error::{ApiError, Problem, hostfactory_status};
use super::extract::{ApiJson, ApiPath};
use super::service::{Until, follow_events, last_event_id};
use crate::app::AppError;
use crate::domain::Event;
use crate::hostfactory::HfError;
use crate::hostfactory::ends_request;
use crate::hostfactory::error::check_machine_count;
use crate::hostfactory::model::Caller;
use crate::hostfactory::plan::RequestPlan;
use crate::hostfactory::status::RequestStatus;
use crate::hostfactory::views::{
    ReclaimList, RequestAccepted, RequestMachinesCommand, RequestView, ReturnMachinesCommand,
    TemplateList,
};
use crate::hostfactory::wire::inputs;
use crate::hostfactory::wire::{
    self, Host, WireMessage, WireRequestId, WireReturnsAnswer, WireStatusAnswer,
    WireTemplatesAnswer,
};
use crate::state::AppState;
use crate::store::EventFilter;

/// HostFactory reads `{"message": …}` on failure; the status tells the shim to exit non-zero.
pub struct HfReject(HfError);

impl IntoResponse for HfReject {
    fn into_response(self) -> Response {
        (
            hostfactory_status(&self.0),
            Json(WireMessage {
                message: self.0.to_string(),
            }),
        )
            .into_response()
    }
}

/// A body that is not HostFactory's format.
impl From<String> for HfReject {
    fn from(message: String) -> Self {
        HfReject(HfError::Malformed(message))
    }
}

impl From<HfError> for HfReject {
    fn from(e: HfError) -> Self {
        HfReject(e)
    }
}

pub type HfAnswer<T> = Result<Json<T>, HfReject>;

const REJECTED: &str = "Rejected; `message` says why (no requestId)";

/// getAvailableTemplates: the templates with the admin's attributes in typed-array form.
#[utoipa::path(post, path = "/api/v1/hostfactory/getAvailableTemplates", tag = "hostfactory",
    operation_id = "hfGetAvailableTemplates",
    request_body(content = inputs::TemplatesInput, description = "What HostFactory wrote into the -f file (usually `{}`; no body is fine)"),
    responses((status = 200, body = WireTemplatesAnswer), (status = 400, description = REJECTED, body = WireMessage)))]
pub async fn get_available_templates(
    State(state): State<AppState>,
    body: Bytes,
) -> HfAnswer<WireTemplatesAnswer> {
    wire::parse_empty(&body)?;
    Ok(Json(WireTemplatesAnswer {
        message: "Get available templates success.".into(),
        templates: state.hostfactory.wire_templates().await?,
    }))
}

/// requestMachines: recorded before the answer; provisioning continues in the service.
#[utoipa::path(post, path = "/api/v1/hostfactory/requestMachines", tag = "hostfactory",
    operation_id = "hfRequestMachines",
    request_body(content = inputs::RequestMachinesInput, description = "`{\"template\": {\"templateId\": \"…\", \"machineCount\": 3}}`"),
    responses((status = 200, body = WireRequestId),
        (status = 400, description = REJECTED, body = WireMessage),
        (status = 422, description = "machineCount out of range (1 to 10000)", body = WireMessage),
        (status = 404, description = "Unknown template", body = WireMessage),
        (status = 409, description = "Template disabled or maxNumber would be exceeded", body = WireMessage)))]
pub async fn request_machines(
    State(state): State<AppState>,
    body: Bytes,
) -> HfAnswer<WireRequestId> {
    let (template_id, count) = wire::parse_request_machines(&body)?;
    let count = check_machine_count("machineCount", count)?;
    Ok(Json(
        state
            .hostfactory
            .request_machines(&template_id, count, Caller::HostFactory)
            .await?,
    ))
}

/// requestReturnMachines: one requestId for all the machines given, by `name` or `machineId`.
#[utoipa::path(post, path = "/api/v1/hostfactory/requestReturnMachines", tag = "hostfactory",
    operation_id = "hfRequestReturnMachines",
    request_body(content = inputs::HostsInput, description = "`{\"machines\": [{\"name\": \"…\", \"machineId\": \"…\"}]}`"),
    responses((status = 200, body = WireRequestId), (status = 400, description = REJECTED, body = WireMessage)))]
pub async fn request_return_machines(
    State(state): State<AppState>,
    body: Bytes,
) -> HfAnswer<WireRequestId> {
    let hosts = wire::parse_hosts(&body, true)?;
    Ok(Json(state.hostfactory.return_machines(&hosts).await?))
}

/// getRequestStatus: acquire and return ids, each answered on its own, from the store.
#[utoipa::path(post, path = "/api/v1/hostfactory/getRequestStatus", tag = "hostfactory",
    operation_id = "hfGetRequestStatus",
    request_body(content = inputs::RequestStatusInput, description = "`{\"requests\": [{\"requestId\": \"…\"}]}` (a single object is accepted too)"),
    responses((status = 200, body = WireStatusAnswer), (status = 400, description = REJECTED, body = WireMessage)))]
pub async fn get_request_status(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, HfReject> {
    let ids = wire::parse_request_ids(&body)?;
    let json = state.hostfactory.request_status(&ids).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// getReturnRequests: which of the listed hosts the cloud is taking back, with grace periods.
#[utoipa::path(post, path = "/api/v1/hostfactory/getReturnRequests", tag = "hostfactory",
    operation_id = "hfGetReturnRequests",
    request_body(content = inputs::HeldHostsInput, description = "`{\"machines\": [{\"name\": \"…\", \"machineId\": \"…\"}]}`"),
    responses((status = 200, body = WireReturnsAnswer), (status = 400, description = REJECTED, body = WireMessage)))]
pub async fn get_return_requests(
    State(state): State<AppState>,
    body: Bytes,
) -> HfAnswer<WireReturnsAnswer> {
    let hosts = wire::parse_hosts(&body, false)?;
    Ok(Json(WireReturnsAnswer {
        status: "complete".into(),
        message: "Instances marked for termination retrieved successfully.".into(),
        requests: state.hostfactory.reclaimed(&hosts).await?,
    }))
}

impl From<HfError> for ApiError {
    fn from(e: HfError) -> Self {
        ApiError(AppError::HostFactory(e))
    }
}

/// getAvailableTemplates for operators.
#[utoipa::path(get, path = "/api/v1/templates", tag = "requests", operation_id = "getAvailableTemplates",
    responses((status = 200, body = TemplateList)))]
pub async fn templates(State(state): State<AppState>) -> Result<Json<TemplateList>, ApiError> {
    Ok(Json(state.hostfactory.template_list().await?))
}

/// requestMachines for operators: 202 with the request id; provisioning goes on in the service.
#[utoipa::path(post, path = "/api/v1/requests", tag = "requests", operation_id = "requestMachines",
    request_body = RequestMachinesCommand,
    responses((status = 202, body = RequestAccepted),
        (status = 404, description = "Unknown template", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Template disabled or maxNumber would be exceeded", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_request(
    State(state): State<AppState>,
    ApiJson(cmd): ApiJson<RequestMachinesCommand>,
) -> Result<(StatusCode, Json<RequestAccepted>), ApiError> {
    let count = check_machine_count("machine_count", cmd.machine_count)?;
    let ok = state
        .hostfactory
        .request_machines(&cmd.template_id, count, Caller::Operator)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RequestAccepted {
            request_id: ok.request_id,
            message: ok.message,
        }),
    ))
}

/// Plan a requestMachines (planRequestMachines): which strategy would serve it and why, which
/// API, instance types, subnets and pools, and the exact request its provider would send, with
/// the cloud's own dry run where the API has one (RunInstances, CreateFleet). Nothing is
/// launched and nothing is stored as a request; a refusal requestMachines would answer
/// (disabled template, maxNumber) is reported, not raised.
#[utoipa::path(post, path = "/api/v1/requests/plan", tag = "requests", operation_id = "planRequestMachines",
    request_body = RequestMachinesCommand,
    responses((status = 200, body = RequestPlan),
        (status = 404, description = "Unknown template", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn plan_request(
    State(state): State<AppState>,
    ApiJson(cmd): ApiJson<RequestMachinesCommand>,
) -> Result<Json<RequestPlan>, ApiError> {
    let count = check_machine_count("machine_count", cmd.machine_count)?;
    Ok(Json(
        state
            .hostfactory
            .plan_machines(&cmd.template_id, count)
            .await?,
    ))
}

/// getRequestStatus for operators: one acquire or return request.
#[utoipa::path(get, path = "/api/v1/requests/{id}", tag = "requests", operation_id = "getRequestStatus",
    params(("id" = String, Path, description = "req-… or ret-…")),
    responses((status = 200, body = RequestView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn request_status(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RequestView>, ApiError> {
    let r = state
        .hostfactory
        .known_requests(std::slice::from_ref(&id), Caller::Operator)
        .await?
        .pop()
        .flatten()
        .ok_or_else(|| {
            ApiError(AppError::NotFound {
                what: "request",
                name: id.clone(),
            })
        })?;
    Ok(Json(RequestView {
        request_id: r.request_id,
        status: r.status,
        message: r.message,
        machines: r.machines.into_iter().map(Into::into).collect(),
    }))
}

/// Follow one request (server-sent events, as `GET /api/v1/events/stream`): its kept events
/// from the first (or after `Last-Event-ID`), then live ones: `request_state` as it moves on,
/// `machine_state` as its machines do, until `request_completed` or `request_failed`, with
/// which the stream closes. For a request that has already ended the kept events come at once
/// and the stream closes after them.
#[utoipa::path(get, path = "/api/v1/requests/{id}/events", tag = "requests", operation_id = "streamRequestEvents",
    params(("id" = String, Path, description = "req-… or ret-…"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id")),
    responses((status = 200, description = "text/event-stream of `Event` objects (SSE event `provider`, id = the event id)",
        content_type = "text/event-stream", body = Event),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`Last-Event-ID` is not an event id", body = Problem, content_type = "application/problem+json")))]
pub async fn request_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let after = last_event_id(&headers)?;
    let Some(now) = state
        .hostfactory
        .known_requests(std::slice::from_ref(&id), Caller::Operator)
        .await?
        .pop()
        .flatten()
    else {
        return Err(ApiError(AppError::NotFound {
            what: "request",
            name: id,
        }));
    };
    let ended = now.status != RequestStatus::Running;
    let filter = EventFilter {
        request_id: Some(id.clone()),
        ..EventFilter::default()
    };
    // The state is read before following: an end stored since comes live, as the last event.
    let until = if ended {
        Until::Now
    } else {
        Until::Last(move |e: &Event| ends_request(e, &id))
    };
    let stream = follow_events(&state, filter, Some(after.unwrap_or(0)), until);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// requestReturnMachines for operators: instance ids or host names.
#[utoipa::path(post, path = "/api/v1/returns", tag = "requests", operation_id = "requestReturnMachines",
    request_body = ReturnMachinesCommand,
    responses((status = 202, body = RequestAccepted), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_return(
    State(state): State<AppState>,
    ApiJson(cmd): ApiJson<ReturnMachinesCommand>,
) -> Result<(StatusCode, Json<RequestAccepted>), ApiError> {
    let hosts: Vec<Host> = cmd
        .machine_ids
        .into_iter()
        .map(|k| Host {
            name: Some(k.clone()),
            machine_id: Some(k),
        })
        .collect();
    let ok = state.hostfactory.return_machines(&hosts).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RequestAccepted {
            request_id: ok.request_id,
            message: ok.message,
        }),
    ))
}

/// getReturnRequests for operators: every machine the cloud took back that was not returned.
#[utoipa::path(get, path = "/api/v1/returns", tag = "requests", operation_id = "getReturnRequests",
    responses((status = 200, body = ReclaimList)))]
pub async fn reclaims(State(state): State<AppState>) -> Result<Json<ReclaimList>, ApiError> {
    Ok(Json(state.hostfactory.reclaim_list().await?))
}
