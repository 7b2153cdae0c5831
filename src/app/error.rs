use serde::Serialize;
use utoipa::ToSchema;

use crate::hostfactory::HfError;
use crate::strategy::{NoCandidate, Verdict};

/// One bad field, by its JSON path in the request (`selection_criteria.min_success_rate`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// The service's one error type; `http::error` maps it to problem+json once.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("the request body is not valid: {0}")]
    BadRequest(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{} invalid field(s)", .0.len())]
    Validation(Vec<FieldError>),
    #[error("{what} '{name}' not found")]
    NotFound { what: &'static str, name: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NoCandidate(NoCandidate),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    Unavailable(String),
    /// What the HostFactory lifecycle refused, on the operator routes.
    #[error(transparent)]
    HostFactory(#[from] HfError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn field(path: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Validation(vec![FieldError::new(path, message)])
    }

    pub fn strategy_not_found(name: &str) -> Self {
        AppError::NotFound {
            what: "strategy",
            name: name.to_string(),
        }
    }

    /// Per-strategy explanation when no strategy could be chosen.
    pub fn verdicts(&self) -> Option<&[Verdict]> {
        match self {
            AppError::NoCandidate(n) => Some(&n.verdicts),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::Internal(anyhow::Error::new(e).context("database error"))
    }
}

pub type AppResult<T> = Result<T, AppError>;
