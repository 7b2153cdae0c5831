use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// The operations a provider strategy can be asked to perform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationType {
    CreateInstances,
    TerminateInstances,
    GetInstanceStatus,
    ValidateTemplate,
    GetAvailableTemplates,
    HealthCheck,
}

impl OperationType {
    pub const ALL: [OperationType; 6] = [
        OperationType::CreateInstances,
        OperationType::TerminateInstances,
        OperationType::GetInstanceStatus,
        OperationType::ValidateTemplate,
        OperationType::GetAvailableTemplates,
        OperationType::HealthCheck,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OperationType::CreateInstances => "CREATE_INSTANCES",
            OperationType::TerminateInstances => "TERMINATE_INSTANCES",
            OperationType::GetInstanceStatus => "GET_INSTANCE_STATUS",
            OperationType::ValidateTemplate => "VALIDATE_TEMPLATE",
            OperationType::GetAvailableTemplates => "GET_AVAILABLE_TEMPLATES",
            OperationType::HealthCheck => "HEALTH_CHECK",
        }
    }

    /// Status polls and terminations: operations on machines a strategy already made. A
    /// disabled strategy takes no new work, but still runs these when it is named (a
    /// `strategy_override`, a composite's member), and they pass a circuit that opened on its
    /// own, so that its machines are not stranded.
    pub fn tends_existing_machines(self) -> bool {
        matches!(
            self,
            OperationType::GetInstanceStatus | OperationType::TerminateInstances
        )
    }
}

impl fmt::Display for OperationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OperationType {
    type Err = String;

    /// Accepts any case (`create_instances` as the reference's enum values are written).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        OperationType::ALL
            .into_iter()
            .find(|op| op.as_str() == upper)
            .ok_or_else(|| {
                format!(
                    "unknown operation type '{s}', expected one of {}",
                    OperationType::ALL.map(|o| o.as_str()).join(", ")
                )
            })
    }
}

impl<'de> Deserialize<'de> for OperationType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What went wrong, in the terms the strategy layer acts on (retry, fail over, fail fast).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderErrorKind {
    /// The API asked us to slow down; retry with backoff, never "no capacity".
    Throttling,
    /// The provider has no capacity for this request; another strategy may.
    Capacity,
    /// A passing fault (5xx, connection reset, injected failure); retry or fail over.
    Transient,
    /// The call took longer than allowed.
    Timeout,
    /// Credentials or permissions; retrying does not help.
    Auth,
    /// The request itself is wrong; retrying does not help.
    Validation,
    /// The strategy cannot do this operation.
    Unsupported,
    /// The circuit breaker refused the call without touching the provider.
    CircuitOpen,
    /// Anything else.
    Internal,
}

impl ProviderErrorKind {
    /// Worth trying the same strategy again after a pause.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ProviderErrorKind::Throttling
                | ProviderErrorKind::Transient
                | ProviderErrorKind::Timeout
        )
    }

    /// Worth trying another strategy.
    pub fn allows_failover(self) -> bool {
        !matches!(self, ProviderErrorKind::Validation)
    }

    /// Counts against the strategy's circuit breaker.
    pub fn counts_as_failure(self) -> bool {
        !matches!(
            self,
            ProviderErrorKind::Validation
                | ProviderErrorKind::Unsupported
                | ProviderErrorKind::CircuitOpen
        )
    }
}

/// How one operation's result counts in a strategy's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Success,
    /// The provider failed: counts against its success rate.
    Failure,
    /// The caller's mistake (invalid parameters or template, an operation the strategy does
    /// not do): says nothing of the provider.
    CallerError,
    /// Refused by the circuit breaker without reaching the provider.
    Rejected,
}

impl Outcome {
    pub fn of<T>(result: &Result<T, ProviderError>) -> Self {
        match result {
            Ok(_) => Outcome::Success,
            Err(e) => match e.kind {
                ProviderErrorKind::CircuitOpen => Outcome::Rejected,
                ProviderErrorKind::Validation | ProviderErrorKind::Unsupported => {
                    Outcome::CallerError
                }
                _ => Outcome::Failure,
            },
        }
    }

    /// Whether it says how the provider did: only these count in success rates, latencies
    /// and the performance policies.
    pub fn judges_provider(self) -> bool {
        matches!(self, Outcome::Success | Outcome::Failure)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::CallerError => "caller_error",
            Outcome::Rejected => "rejected",
        }
    }
}

/// A failed provider call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProviderError {
    pub kind: ProviderErrorKind,
    /// A stable code such as `INSUFFICIENT_CAPACITY` or the cloud's own error code.
    pub code: String,
    pub message: String,
}

impl ProviderError {
    pub fn new(
        kind: ProviderErrorKind,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ProviderErrorKind::Validation, "INVALID_PARAMETERS", message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_types_parse_in_any_case() {
        assert_eq!(
            "create_instances".parse::<OperationType>().unwrap(),
            OperationType::CreateInstances
        );
        assert_eq!(
            " Health_Check ".parse::<OperationType>().unwrap(),
            OperationType::HealthCheck
        );
        let err = "CREATE".parse::<OperationType>().unwrap_err();
        assert!(err.contains("CREATE_INSTANCES"), "{err}");
    }

    #[test]
    fn error_kinds_drive_retry_and_failover() {
        assert!(ProviderErrorKind::Throttling.is_retryable());
        assert!(!ProviderErrorKind::Capacity.is_retryable());
        assert!(ProviderErrorKind::Capacity.allows_failover());
        assert!(!ProviderErrorKind::Auth.is_retryable());
        assert!(!ProviderErrorKind::Validation.allows_failover());
        assert!(!ProviderErrorKind::Validation.counts_as_failure());
    }

    #[test]
    fn only_successes_and_provider_failures_judge_the_provider() {
        let err = |kind| Err::<(), _>(ProviderError::new(kind, "X", "x"));
        assert_eq!(Outcome::of(&Ok::<(), ProviderError>(())), Outcome::Success);
        assert_eq!(
            Outcome::of(&err(ProviderErrorKind::Timeout)),
            Outcome::Failure
        );
        assert_eq!(
            Outcome::of(&err(ProviderErrorKind::Validation)),
            Outcome::CallerError
        );
        assert_eq!(
            Outcome::of(&err(ProviderErrorKind::CircuitOpen)),
            Outcome::Rejected
        );
        // The breaker and the statistics agree on what the provider is to blame for.
        for kind in [
            ProviderErrorKind::Capacity,
            ProviderErrorKind::Validation,
            ProviderErrorKind::Unsupported,
            ProviderErrorKind::CircuitOpen,
            ProviderErrorKind::Internal,
        ] {
            assert_eq!(
                Outcome::of(&err(kind)) == Outcome::Failure,
                kind.counts_as_failure()
            );
        }
    }
}

/// One try of one strategy. A composite strategy lists the calls it made to its members.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Attempt {
    pub strategy: String,
    pub success: bool,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    #[schema(value_type = Option<String>)]
    pub error_kind: Option<ProviderErrorKind>,
    pub response_time_ms: f64,
    /// Calls to member strategies, in member order (composite types only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion)]
    pub members: Vec<Attempt>,
    /// Members whose answers a composite combined; shown in the answer's data, not here.
    #[serde(skip)]
    pub contributors: Vec<String>,
}

impl Attempt {
    pub fn of<T>(strategy: &str, result: &Result<T, ProviderError>, ms: f64) -> Self {
        Attempt {
            strategy: strategy.to_string(),
            success: result.is_ok(),
            error_code: result.as_ref().err().map(|e| e.code.clone()),
            error_message: result.as_ref().err().map(|e| e.message.clone()),
            error_kind: result.as_ref().err().map(|e| e.kind),
            response_time_ms: ms,
            members: Vec::new(),
            contributors: Vec::new(),
        }
    }
}
