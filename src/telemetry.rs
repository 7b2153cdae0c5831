//! Logging: level from HF_LOG_LEVEL, then RUST_LOG, then the config; to stderr and to
//! `<logging.dir>/app.YYYY-MM-DD.log`, a new file each day (UTC), the newest
//! `logging.max_files` kept; text or JSON lines.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt};

use crate::config::{LogFormat, LoggingConfig};

/// Keep the guard alive for as long as logs should reach the file.
pub fn init(cfg: &LoggingConfig, format: Option<LogFormat>) -> anyhow::Result<Option<WorkerGuard>> {
    let level = std::env::var("HF_LOG_LEVEL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.to_ascii_lowercase())
        .or_else(|| {
            std::env::var("RUST_LOG")
                .ok()
                .filter(|v| !v.trim().is_empty())
        })
        .unwrap_or_else(|| cfg.level.clone());
    let filter =
        EnvFilter::try_new(&level).map_err(|e| anyhow::anyhow!("bad log level '{level}': {e}"))?;
    let json = format.unwrap_or(cfg.format) == LogFormat::Json;
    let stderr = if json {
        fmt::layer().json().with_writer(std::io::stderr).boxed()
    } else {
        fmt::layer().with_writer(std::io::stderr).boxed()
    };
    let (file, guard) = match &cfg.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create log directory {dir}: {e}"))?;
            let appender = RollingFileAppender::builder()
                .rotation(Rotation::DAILY)
                .filename_prefix("app")
                .filename_suffix("log")
                .max_log_files(cfg.max_files)
                .build(dir)
                .map_err(|e| anyhow::anyhow!("cannot open the log file in {dir}: {e}"))?;
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = if json {
                fmt::layer()
                    .json()
                    .with_ansi(false)
                    .with_writer(writer)
                    .boxed()
            } else {
                fmt::layer().with_ansi(false).with_writer(writer).boxed()
            };
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))?;
    Ok(guard)
}
