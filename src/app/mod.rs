//! The application layer: the strategy engine and the CQRS commands and queries the routes and
//! the CLI call. The engine is made of parts: the settings (`settings`), the registry of
//! strategies (`registry`), the executor that runs operations with breakers and failover
//! (`executor`), and start-up reconciliation of file and stored strategies (`startup`). Health
//! monitoring is the background task's, in `crate::monitor`.

pub mod audit_log;
pub mod commands;
mod engine;
mod error;
pub mod event_log;
pub mod events;
pub mod executor;
pub mod metrics;
pub mod prometheus;
pub mod queries;
pub mod registry;
pub mod settings;
mod startup;
pub mod status;
pub mod views;

pub use crate::domain::Attempt;
pub use engine::Engine;
pub use error::{AppError, AppResult, FieldError};
pub use executor::{ExecutionOutcome, Executor, Route};
pub use registry::StrategyEntry;
pub use settings::ConfigurationView;
