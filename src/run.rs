//! What the binary's subcommands do, kept out of `main` so that they are testable.

use std::path::Path;

use crate::cli::ServeArgs;
use crate::hostfactory::{self, templates::TemplateCatalog};
use crate::server::{App, shutdown_signal};
use crate::{config, http, telemetry};

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut cfg = config::load(args.config.as_deref())?;
    if let Some(bind) = args.bind {
        cfg.server.bind = bind;
    }
    let _log_guard = telemetry::init(&cfg.logging, args.log_format.map(Into::into))?;
    let app = App::build(cfg).await?;
    app.run(shutdown_signal()).await
}

/// Prints what is wrong, or a short summary; returns the exit code.
pub fn check_config(file: &Path) -> i32 {
    match config::load(Some(file)) {
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
            println!(
                "{}: ok; {} strategies: {}; policy {}; database {}; {templates}",
                file.display(),
                names.len(),
                names.join(", "),
                cfg.strategy.selection_policy,
                cfg.database.path
            );
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

pub fn openapi_json() -> String {
    http::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
}
