//! SDK errors in the terms the strategy layer acts on. The SDK has already retried what its
//! standard retry classifies as retryable (throttling, 5xx, timeouts) by the time we see one.

use std::error::Error as StdError;

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use aws_credential_types::provider::error::CredentialsError;

use crate::domain::{ProviderError, ProviderErrorKind};

/// Error codes meaning "slow down". Never capacity: a throttled region may have room.
const THROTTLING: [&str; 8] = [
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "EC2ThrottledException",
    "PriorRequestNotComplete",
];

/// Error codes meaning "no room here for this"; another region or account may have room.
const CAPACITY: [&str; 9] = [
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
    "InsufficientFreeAddressesInSubnet",
    "MaxSpotInstanceCountExceeded",
    "MaxSpotFleetRequestCountExceeded",
    "InstanceLimitExceeded",
    "VcpuLimitExceeded",
];

const AUTH: [&str; 9] = [
    "AuthFailure",
    "UnauthorizedOperation",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "AccessDeniedException",
    "ExpiredToken",
    "ExpiredTokenException",
    "OptInRequired",
];

/// The kind of an AWS error code.
pub fn kind_of_code(code: &str) -> ProviderErrorKind {
    if THROTTLING.contains(&code) {
        ProviderErrorKind::Throttling
    } else if CAPACITY.contains(&code) || code.starts_with("Insufficient") {
        ProviderErrorKind::Capacity
    } else if AUTH.contains(&code) || code.starts_with("UnauthorizedOperation") {
        ProviderErrorKind::Auth
    } else if code.starts_with("Invalid")
        || code.starts_with("Missing")
        || code.starts_with("Unknown")
        || code.ends_with("NotFound")
        || code.ends_with(".Malformed")
        || code == "ValidationError"
        || code == "ValidationException"
        || code == "DryRunOperation"
    {
        ProviderErrorKind::Validation
    } else if code.starts_with("Unsupported") {
        ProviderErrorKind::Unsupported
    } else {
        // InternalError, ServiceUnavailable, Unavailable and anything new: worth another try.
        ProviderErrorKind::Transient
    }
}

/// Whether a credentials provider failed somewhere below `err`: no credentials in the chain,
/// an unreadable profile, a refused role. Not retried, not failed over: another try finds none
/// either.
fn credentials_failed(err: &(dyn StdError + 'static)) -> bool {
    let mut at = Some(err);
    while let Some(e) = at {
        if e.downcast_ref::<CredentialsError>().is_some() {
            return true;
        }
        at = e.source();
    }
    false
}

/// Classifies a failed call of `api`; the message names the call and never carries credentials.
pub fn classify<E>(api: &str, err: SdkError<E, HttpResponse>) -> ProviderError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let detail = DisplayErrorContext(&err).to_string();
    if credentials_failed(&err) {
        return ProviderError::new(
            ProviderErrorKind::Auth,
            "CREDENTIALS_UNAVAILABLE",
            format!("{api}: no usable AWS credentials: {detail}"),
        );
    }
    match &err {
        SdkError::TimeoutError(_) => ProviderError::new(
            ProviderErrorKind::Timeout,
            "TIMEOUT",
            format!("{api}: no answer within the operation timeout"),
        ),
        SdkError::DispatchFailure(f) if f.is_timeout() => ProviderError::new(
            ProviderErrorKind::Timeout,
            "TIMEOUT",
            format!("{api}: {detail}"),
        ),
        SdkError::DispatchFailure(_) => ProviderError::new(
            ProviderErrorKind::Transient,
            "ENDPOINT_UNREACHABLE",
            format!("{api}: {detail}"),
        ),
        SdkError::ConstructionFailure(_) => ProviderError::new(
            ProviderErrorKind::Validation,
            "REQUEST_NOT_BUILT",
            format!("{api}: {detail}"),
        ),
        _ => match err.code() {
            Some(code) => {
                let message = err.message().unwrap_or("no message").to_string();
                ProviderError::new(kind_of_code(code), code, format!("{api}: {message}"))
            }
            // An answer that is no AWS error (an HTML 500 from a proxy or an emulator).
            None => ProviderError::new(
                ProviderErrorKind::Transient,
                "UNEXPECTED_RESPONSE",
                format!(
                    "{api}: HTTP {} without an AWS error in the body",
                    err.raw_response()
                        .map_or_else(|| "answer".to_string(), |r| r.status().as_u16().to_string())
                ),
            ),
        },
    }
}

/// The AWS error code of a failed call, when it has one.
pub fn code_of<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(_) | SdkError::ResponseError(_) => err.code(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::error::ConnectorError;
    use aws_sdk_ec2::operation::describe_availability_zones::DescribeAvailabilityZonesError;

    use super::*;

    type Failure = SdkError<DescribeAvailabilityZonesError, HttpResponse>;

    #[test]
    fn missing_credentials_are_an_auth_failure_wherever_the_sdk_reports_them() {
        let not_loaded =
            || CredentialsError::not_loaded("no providers in chain provided credentials");
        for err in [
            Failure::dispatch_failure(ConnectorError::other(Box::new(not_loaded()), None)),
            Failure::construction_failure(not_loaded()),
        ] {
            let e = classify("DescribeAvailabilityZones", err);
            assert_eq!(
                (e.kind, e.code.as_str()),
                (ProviderErrorKind::Auth, "CREDENTIALS_UNAVAILABLE"),
                "{e:?}"
            );
            assert!(!e.kind.is_retryable());
        }
        // A connection that fails is still transient.
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = classify(
            "DescribeAvailabilityZones",
            Failure::dispatch_failure(ConnectorError::io(Box::new(io))),
        );
        assert_eq!(e.code, "ENDPOINT_UNREACHABLE");
    }

    #[test]
    fn throttling_is_never_capacity_and_auth_is_not_validation() {
        assert_eq!(
            kind_of_code("RequestLimitExceeded"),
            ProviderErrorKind::Throttling
        );
        assert_eq!(kind_of_code("Throttling"), ProviderErrorKind::Throttling);
        assert_eq!(
            kind_of_code("InsufficientInstanceCapacity"),
            ProviderErrorKind::Capacity
        );
        assert_eq!(
            kind_of_code("MaxSpotInstanceCountExceeded"),
            ProviderErrorKind::Capacity
        );
        assert_eq!(kind_of_code("AuthFailure"), ProviderErrorKind::Auth);
        assert_eq!(
            kind_of_code("InvalidClientTokenId"),
            ProviderErrorKind::Auth
        );
        assert_eq!(
            kind_of_code("InvalidAMIID.NotFound"),
            ProviderErrorKind::Validation
        );
        assert_eq!(
            kind_of_code("InvalidParameterValue"),
            ProviderErrorKind::Validation
        );
        assert_eq!(kind_of_code("InternalError"), ProviderErrorKind::Transient);
    }
}
