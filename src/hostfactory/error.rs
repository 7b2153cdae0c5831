//! What the HostFactory lifecycle refuses, as values. `crate::http` gives each its status once
//! and renders it both ways: `{"message"}` on HostFactory's routes, problem+json on the
//! operator routes.

/// Most machines (or capacity units) one request may ask for.
pub const MAX_MACHINE_COUNT: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum HfError {
    /// The call's body is not HostFactory's format (not JSON, a key missing or mistyped).
    #[error("{0}")]
    Malformed(String),
    /// A value in the call is out of its range; `field` as the caller spelled it.
    #[error("{field} {message}")]
    Invalid { field: String, message: String },
    #[error("Template '{id}' is not defined. Known templates: {known}.")]
    UnknownTemplate { id: String, known: String },
    #[error("Template '{0}' is disabled (maxNumber 0).")]
    TemplateDisabled(String),
    #[error("Template '{template}' names provider '{provider}', which is not registered.")]
    UnknownProvider { template: String, provider: String },
    #[error(
        "Template '{template}' allows at most {max} {unit}: {held} are held or on their way, {asked} more requested would exceed the limit."
    )]
    OverLimit {
        template: String,
        max: i64,
        unit: &'static str,
        held: i64,
        asked: i64,
    },
    #[error(
        "Template '{template}': the AWS account's vCPU quota for its instance types has room for {room} more machine(s) on strategy '{strategy}', {asked} requested. Ask AWS for a higher quota (Service Quotas) or request fewer."
    )]
    OverQuota {
        template: String,
        strategy: String,
        room: i64,
        asked: i64,
    },
    #[error("request '{0}' is not known to this service")]
    UnknownRequest(String),
    /// The store failed; details go to the log, not to HostFactory.
    #[error("the service could not record the request; see its log")]
    Store(#[source] sqlx::Error),
}

impl From<sqlx::Error> for HfError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "hostfactory call failed");
        HfError::Store(e)
    }
}

pub type HfResult<T> = Result<T, HfError>;

/// The one check of a machine count, for HostFactory's `machineCount` and the operators'
/// `machine_count` alike (`field` names it as the caller wrote it).
pub fn check_machine_count(field: &str, count: i64) -> HfResult<i64> {
    if (1..=MAX_MACHINE_COUNT).contains(&count) {
        Ok(count)
    } else {
        Err(HfError::Invalid {
            field: field.to_string(),
            message: format!("must be a whole number from 1 to {MAX_MACHINE_COUNT}, got {count}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_counts_are_checked_once_for_both_spellings() {
        assert_eq!(check_machine_count("machineCount", 3).unwrap(), 3);
        let e = check_machine_count("machine_count", 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "machine_count must be a whole number from 1 to 10000, got 0"
        );
        assert!(check_machine_count("machineCount", i64::MAX).is_err());
    }
}
