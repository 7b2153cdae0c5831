//! What the binary's subcommands do, kept out of `main` so that they are testable.

use std::path::{Path, PathBuf};

use crate::app::views::redacted;
use crate::cli::{BackupArgs, ServeArgs, print_line};
use crate::hostfactory::{self, templates::TemplateCatalog};
use crate::server::{App, shutdown_signal};
use crate::{config, http, telemetry};

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // The database holds the secrets of API-registered strategies and the logs name hosts and
    // requests: whatever the service creates is for its own user only (0600, directories 0700).
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let files: Vec<&Path> = args.config.iter().map(PathBuf::as_path).collect();
    let mut cfg = config::load(&files)?;
    if let Some(bind) = args.bind {
        cfg.server.bind = bind;
    }
    let _log_guard = telemetry::init(&cfg.logging, args.log_format.map(Into::into))?;
    let app = App::build(cfg).await?;
    app.run(shutdown_signal()).await
}

/// Prints what is wrong, or a short summary and the merged configuration (secrets redacted);
/// returns the exit code.
pub fn check_config(files: &[PathBuf]) -> i32 {
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    match config::load(&files) {
        Ok(cfg) => {
            let templates = hostfactory::templates_path(
                &cfg.hostfactory,
                std::env::var("HF_PROVIDER_CONFDIR").ok(),
            );
            let templates = match TemplateCatalog::load(templates) {
                Ok(catalog) => match catalog.path() {
                    Some(p) => format!("{} templates from {}", catalog.all().len(), p.display()),
                    None => "no templates file".to_string(),
                },
                Err(e) => {
                    eprintln!("{e}");
                    return 1;
                }
            };
            let names: Vec<String> = cfg
                .providers
                .iter()
                .map(|p| format!("{} ({})", p.name, p.provider_type))
                .collect();
            let source = if files.is_empty() {
                "embedded config/default.json".to_string()
            } else {
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" + ")
            };
            let database = match cfg.database.location() {
                Ok(location) => location.shown(),
                Err(e) => {
                    eprintln!("{e:#}");
                    return 1;
                }
            };
            let env = std::env::var("OHFP_ENV")
                .map(|e| format!(" (OHFP_ENV={e})"))
                .unwrap_or_default();
            print_line(format!(
                "{source}{env}: ok; {} strategies: {}; policy {}; database {}; {templates}",
                names.len(),
                names.join(", "),
                cfg.strategy.selection_policy,
                database
            ));
            print_line(merged_json(&cfg));
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// `ohfp backup FILE`: the configured database copied into FILE; returns the exit code.
pub async fn backup(args: BackupArgs) -> i32 {
    // The copy holds what the database holds: for its owner only, as `serve` makes it.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let files: Vec<&Path> = args.config.iter().map(PathBuf::as_path).collect();
    let cfg = match config::load(&files) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let db = &cfg.database;
    let file = match db.location() {
        Ok(crate::store::Location::SqliteFile(file)) => file,
        Ok(crate::store::Location::Postgres(_)) => {
            eprintln!(
                "ohfp backup copies a SQLite database; this configuration's database.url is PostgreSQL: back it up with pg_dump (README, \"Replicas on PostgreSQL\")"
            );
            return 1;
        }
        Err(e) => {
            eprintln!("{e:#}");
            return 1;
        }
    };
    match crate::store::backup(&file, &args.file, db.busy_timeout_ms).await {
        Ok(s) => {
            print_line(format!(
                "wrote {} ({} bytes) from {}: {} strategies, {} HostFactory requests",
                args.file.display(),
                s.bytes,
                file,
                s.strategies,
                s.hostfactory_requests
            ));
            let key = crate::store::SecretKey::source(db.secret_key_file.as_deref(), &file);
            print_line(format!(
                "the secret key is not in the copy: back up {key} separately; without it the stored strategies' secrets cannot be read"
            ));
            0
        }
        Err(e) => {
            eprintln!("ohfp backup: {e:#}");
            1
        }
    }
}

/// The configuration as the service would run it, each strategy's secrets redacted.
fn merged_json(cfg: &config::Config) -> String {
    let mut shown = cfg.clone();
    if let Ok(location) = cfg.database.location()
        && shown.database.url.is_some()
    {
        shown.database.url = Some(location.shown());
    }
    for spec in &mut shown.providers {
        spec.config = redacted(&spec.config);
    }
    serde_json::to_string_pretty(&shown).expect("the configuration serializes")
}

pub fn openapi_json() -> String {
    http::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
}
