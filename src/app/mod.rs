//! The application layer: the strategy engine (registry, selection, execution with breakers
//! and failover, health checks) and the CQRS commands and queries the routes and the CLI call.

pub mod commands;
mod engine;
mod error;
pub mod events;
pub mod metrics;
pub mod queries;
mod registry;
pub mod settings;
pub mod views;

pub use engine::{Attempt, Engine, ExecutionOutcome, Route};
pub use error::{AppError, AppResult, FieldError};
pub use registry::StrategyEntry;
pub use settings::ConfigurationView;
