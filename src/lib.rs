//! ohfp: the HostFactory provider service and its multi-provider strategy layer.
//!
//! Layers, outermost first: `cli` and `http` (thin), `app` (commands, queries, the strategy
//! engine), `strategy` (pure selection and breaker logic), `providers` (clouds and the
//! simulator), `store` (SQLite), `monitor` (background task), `alerts` (rules and their
//! evaluation). `domain` holds the shared types; `objects_only` the JSON rule every input is
//! read under (structs from objects only).

pub mod alerts;
pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod hostfactory;
pub mod http;
pub mod monitor;
pub mod objects_only;
pub mod providers;
pub mod replica;
pub mod run;
pub mod server;
pub mod state;
pub mod store;
pub mod strategy;
pub mod tasks;
pub mod telemetry;
