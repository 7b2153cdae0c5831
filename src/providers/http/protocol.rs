//! The provider protocol: what an external service behind an `http` strategy answers. The
//! calls carry the typed contract's own values ([`CreateRequest`], [`StatusReport`], …), so
//! the document `openapi/provider-protocol.json` is generated from the same types the
//! strategy layer passes, and cannot drift from them.

use std::borrow::Cow;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, OpenApi, PathItem, Ref, Required,
    ResponseBuilder, Type,
};
use utoipa::{OpenApi as _, ToSchema};

use crate::domain::{LaunchSpec, OperationType, ProviderErrorKind};
use crate::providers::contract::{
    CreateRequest, Created, HealthReport, OfferedTemplate, StatusQuery, StatusReport,
    TerminateReport, TerminateRequest, ValidationReport,
};

/// Sent with every create; the same key twice creates once (the first answer is given again).
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// The strategy's configured region, when it has one, so that one service can serve several.
pub const REGION: &str = "X-Ohfp-Region";

/// One call of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Create,
    Status,
    Terminate,
    Validate,
    Health,
    Capabilities,
}

impl Call {
    pub const ALL: [Call; 6] = [
        Call::Create,
        Call::Status,
        Call::Terminate,
        Call::Validate,
        Call::Health,
        Call::Capabilities,
    ];

    /// The operation id in the document; also how the conformance kit names the call.
    pub fn name(self) -> &'static str {
        match self {
            Call::Create => "createInstances",
            Call::Status => "getInstanceStatus",
            Call::Terminate => "terminateInstances",
            Call::Validate => "validateLaunchSpec",
            Call::Health => "getHealth",
            Call::Capabilities => "getCapabilities",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Call::Create => "/instances",
            Call::Status => "/instances/status",
            Call::Terminate => "/instances/terminate",
            Call::Validate => "/validate",
            Call::Health => "/health",
            Call::Capabilities => "/capabilities",
        }
    }

    pub fn method(self) -> Method {
        match self {
            Call::Health | Call::Capabilities => Method::GET,
            _ => Method::POST,
        }
    }

    /// (request body, answer) schema names.
    fn schemas(self) -> (Option<Cow<'static, str>>, Cow<'static, str>) {
        match self {
            Call::Create => (Some(CreateRequest::name()), Created::name()),
            Call::Status => (Some(StatusQuery::name()), StatusReport::name()),
            Call::Terminate => (Some(TerminateRequest::name()), TerminateReport::name()),
            Call::Validate => (Some(LaunchSpec::name()), ValidationReport::name()),
            Call::Health => (None, HealthReport::name()),
            Call::Capabilities => (None, ServiceCapabilities::name()),
        }
    }

    fn summary(self) -> &'static str {
        match self {
            Call::Create => {
                "Start instances of a launch spec covering `units` (1 or more) capacity units, each \
                 tagged with the request id. Idempotent by the Idempotency-Key header: a key seen before answers \
                 what its first call made and starts nothing. Instances may answer `pending` and \
                 boot later."
            }
            Call::Status => {
                "Instances by id and by the request they were made for, in one batch. Asked-for ids \
                 the service does not know are listed in `not_found`, never an error."
            }
            Call::Terminate => {
                "Give instances back. Ids the service does not know are listed in `not_found`; \
                 instances already on their way out in `already_terminating`."
            }
            Call::Validate => {
                "Check a launch spec against what the service can start; problems are in the \
                 answer (`valid: false`), each naming its field. A spec without a template id or \
                 an instance type is invalid."
            }
            Call::Health => {
                "A cheap real check. An unhealthy service answers `is_healthy: false` or an error."
            }
            Call::Capabilities => "What the service can do, and the templates it offers.",
        }
    }
}

/// What an error is, in the terms ohfp acts on: throttling and transient errors are retried
/// (with backoff, or after Retry-After); the others are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Slow down (429); retried.
    Throttling,
    /// No capacity for this request (409); another strategy may have some.
    Capacity,
    /// Missing or wrong API key, or not allowed (401).
    Auth,
    /// The request is wrong (400); neither retried nor failed over.
    Validation,
    /// A passing fault (503); retried.
    Transient,
    /// What the call names does not exist (404); counted as the caller's mistake.
    NotFound,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 6] = [
        ErrorClass::Throttling,
        ErrorClass::Capacity,
        ErrorClass::Auth,
        ErrorClass::Validation,
        ErrorClass::Transient,
        ErrorClass::NotFound,
    ];

    /// The kind ohfp's strategy layer acts on. There is no not-found kind: a call naming
    /// something absent is the caller's mistake, as a validation error is.
    pub fn kind(self) -> ProviderErrorKind {
        match self {
            ErrorClass::Throttling => ProviderErrorKind::Throttling,
            ErrorClass::Capacity => ProviderErrorKind::Capacity,
            ErrorClass::Auth => ProviderErrorKind::Auth,
            ErrorClass::Validation | ErrorClass::NotFound => ProviderErrorKind::Validation,
            ErrorClass::Transient => ProviderErrorKind::Transient,
        }
    }

    /// The HTTP status a service answers this class with.
    pub fn status(self) -> u16 {
        match self {
            ErrorClass::Throttling => 429,
            ErrorClass::Capacity => 409,
            ErrorClass::Auth => 401,
            ErrorClass::Validation => 400,
            ErrorClass::Transient => 503,
            ErrorClass::NotFound => 404,
        }
    }

    /// The class of an error answer without a protocol body (a proxy's, a framework's). A bare
    /// 404 has none: it more likely means a wrong endpoint_url than an absent instance.
    pub fn of_status(status: u16) -> Option<ErrorClass> {
        match status {
            400 | 422 => Some(ErrorClass::Validation),
            401 | 403 => Some(ErrorClass::Auth),
            409 => Some(ErrorClass::Capacity),
            429 => Some(ErrorClass::Throttling),
            500..=599 => Some(ErrorClass::Transient),
            _ => None,
        }
    }
}

/// Every error answer's body. A `Retry-After` header (seconds) may come with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"class": "capacity", "code": "INSUFFICIENT_CAPACITY",
    "message": "room for 2 more instances, 5 requested"}))]
pub struct ProtocolError {
    pub class: ErrorClass,
    /// A stable code of the service's own, shown to operators.
    pub code: String,
    pub message: String,
}

/// getCapabilities' answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"supported_operations": ["CREATE_INSTANCES", "GET_INSTANCE_STATUS",
    "TERMINATE_INSTANCES", "VALIDATE_TEMPLATE", "GET_AVAILABLE_TEMPLATES", "HEALTH_CHECK"],
    "features": {"instances": true, "spot_instances": false}, "limitations": {"max_instances_per_request": 100},
    "templates": [{"template_id": "standard", "instance_type": "m1.small", "region": "dc-1"}]}))]
pub struct ServiceCapabilities {
    /// The operations ohfp may route to the service.
    pub supported_operations: Vec<OperationType>,
    /// Feature flags and facts, shown with the strategy and matched by capability-based
    /// selection.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub features: Map<String, Value>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub limitations: Map<String, Value>,
    /// Templates the service offers of itself (GET_AVAILABLE_TEMPLATES).
    #[serde(default)]
    pub templates: Vec<OfferedTemplate>,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "ohfp provider protocol",
        description = "What an external service implements to serve an `http` strategy of ohfp. \
            ohfp calls `endpoint_url` + each path below with JSON bodies; with an `api_key` \
            configured, every call carries `Authorization: Bearer <api_key>`, and a service \
            with a key answers 401 (class `auth`) to a call without it. Errors are a \
            `ProtocolError` with a class; `throttling` and `transient` are retried up to \
            `max_retries` times with exponential backoff and jitter, or after the `Retry-After` \
            header's seconds; `capacity` fails over to another strategy; `validation` and \
            `not_found` are the caller's mistake. Unknown enum values and missing required \
            fields in an answer are errors. A body that is not the call's request is answered \
            400 with class `validation`. `examples/provider.py` implements every call; \
            `ohfp provider-check URL` checks an implementation.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(
        CreateRequest,
        Created,
        StatusQuery,
        StatusReport,
        TerminateRequest,
        TerminateReport,
        LaunchSpec,
        ValidationReport,
        HealthReport,
        ServiceCapabilities,
        ProtocolError
    ))
)]
struct ProtocolDoc;

fn json_of(schema: &str) -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(schema)))
        .build()
}

/// The protocol's OpenAPI document, as committed in `openapi/provider-protocol.json`.
pub fn openapi() -> OpenApi {
    let mut doc = ProtocolDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let retry_after = HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::Number))
        .description(Some("Seconds to wait before trying again."))
        .build();
    let error_text: Vec<String> = ErrorClass::ALL
        .iter()
        .map(|c| {
            let class = serde_json::to_value(c).unwrap_or_default();
            format!("{} `{}`", c.status(), class.as_str().unwrap_or_default())
        })
        .collect();
    let error = ResponseBuilder::new()
        .description(format!(
            "An error; the status follows the class ({}).",
            error_text.join(", ")
        ))
        .content("application/json", json_of(&ProtocolError::name()))
        .header("Retry-After", retry_after)
        .build();
    for call in Call::ALL {
        let (request, answer) = call.schemas();
        let mut op = OperationBuilder::new()
            .operation_id(Some(call.name()))
            .summary(Some(call.summary()))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("Done.")
                    .content("application/json", json_of(&answer))
                    .build(),
            )
            .response("default", error.clone())
            .security(SecurityRequirement::new::<_, [&str; 0], &str>(
                "api_key",
                [],
            ));
        if let Some(request) = request {
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .content("application/json", json_of(&request))
                    .required(Some(Required::True))
                    .build(),
            ));
        }
        if call == Call::Create {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(IDEMPOTENCY_KEY)
                    .parameter_in(ParameterIn::Header)
                    .required(Required::True)
                    .description(Some(
                        "One key per create; ohfp repeats it on every retry of that create.",
                    ))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
        op = op.parameter(
            ParameterBuilder::new()
                .name(REGION)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some("The strategy's configured region, when it has one."))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
        );
        let method = if call.method() == Method::GET {
            HttpMethod::Get
        } else {
            HttpMethod::Post
        };
        doc.paths
            .paths
            .insert(call.path().to_string(), PathItem::new(method, op));
    }
    if let Some(components) = doc.components.as_mut() {
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The strategy's api_key, when it has one."))
                    .build(),
            ),
        );
    }
    doc
}

/// The document as committed.
pub fn openapi_json() -> String {
    openapi()
        .to_pretty_json()
        .expect("the protocol document serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_maps_back_from_its_status_except_not_found() {
        for class in ErrorClass::ALL {
            let back = ErrorClass::of_status(class.status());
            if class == ErrorClass::NotFound {
                assert_eq!(back, None);
            } else {
                assert_eq!(back, Some(class));
            }
        }
        assert_eq!(ErrorClass::NotFound.kind(), ProviderErrorKind::Validation);
        assert!(ErrorClass::Throttling.kind().is_retryable());
        assert!(!ErrorClass::Capacity.kind().is_retryable());
    }

    #[test]
    fn the_document_has_every_call_and_the_contract_types() {
        let doc: Value = serde_json::from_str(&openapi_json()).unwrap();
        for call in Call::ALL {
            let method = call.method().as_str().to_ascii_lowercase();
            assert_eq!(
                doc["paths"][call.path()][&method]["operationId"],
                call.name(),
                "{call:?}"
            );
        }
        for schema in ["LaunchSpec", "Machine", "ProvisioningApi", "ErrorClass"] {
            assert!(
                doc["components"]["schemas"][schema].is_object(),
                "{schema} missing"
            );
        }
    }
}
