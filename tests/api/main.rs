//! The integration tests: the real app on port 0 with a temporary database, driven over HTTP
//! (and, for the CLI, through the built binary). Built twice (Cargo.toml): `api` on SQLite,
//! `api_pg` on PostgreSQL (`helpers::on_postgres`).

mod helpers;
mod support;

mod alerts;
mod audit;
mod auth;
mod aws;
mod aws_fields;
mod aws_hostfactory;
mod aws_notices;
mod aws_quotas;
mod backup;
mod cli;
mod composites;
mod events;
mod failover;
mod guides;
mod hardening;
mod health_checks;
mod hostfactory;
mod http_provider;
mod openapi;
mod packaging;
mod plan;
mod postgres_cluster;
mod prometheus;
mod providers;
mod reliability;
mod replicas;
mod resilience;
mod restart;
mod secrets;
mod service;
mod status;
mod status_page;
mod unclaimed;
