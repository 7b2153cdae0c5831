//! Logging: level from HF_LOG_LEVEL, then RUST_LOG, then the config; to stderr and to
//! `<logging.dir>/app.YYYY-MM-DD.log`, a new file each day (UTC), the newest
//! `logging.max_files` kept; text or JSON lines.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt};

use crate::config::{LogFormat, LoggingConfig};

/// Inside an operation's span with `debug=true` (executeProviderOperation's
/// `context.debug`, see `crate::app::commands::operation_span`) everything down to debug is
/// logged, whatever the level.
const DEBUG_OPERATION: &str = "[operation{debug=true}]=debug";

/// The level (an EnvFilter directive list) plus the per-operation debug directive.
fn filter(level: &str) -> anyhow::Result<EnvFilter> {
    let filter =
        EnvFilter::try_new(level).map_err(|e| anyhow::anyhow!("bad log level '{level}': {e}"))?;
    Ok(filter.add_directive(DEBUG_OPERATION.parse()?))
}

/// The most the AWS SDK may log, whatever the level asked for: `aws_config` logs profile
/// credentials (the access key id among them) at info, and the SDK's debug and trace lines
/// print the resolved identity (endpoint resolution, signing, the request with its
/// `Authorization` header). Its warnings and errors stay. The caps are a layer of their own,
/// so no `RUST_LOG` directive lifts them.
fn aws_caps() -> Targets {
    let sdk = [
        "aws_credential_types",
        "aws_runtime",
        "aws_sigv4",
        "aws_smithy_runtime",
        "aws_smithy_runtime_api",
        "aws_smithy_http",
        "aws_smithy_http_client",
        "aws_smithy_types",
        "aws_sdk_ec2",
        "aws_sdk_autoscaling",
        "aws_sdk_ssm",
    ];
    sdk.into_iter()
        .fold(
            Targets::new().with_default(LevelFilter::TRACE),
            |caps, target| caps.with_target(target, LevelFilter::INFO),
        )
        .with_target("aws_config", LevelFilter::WARN)
}

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
    let filter = filter(&level)?;
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
        .with(aws_caps())
        .with(stderr)
        .with(file)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))?;
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::app::commands::{OperationContext, operation_span};
    use crate::domain::OperationType;

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `emit` logs under `level`, filtered as [`init`] filters.
    fn captured(level: &str, emit: impl FnOnce()) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::registry()
            .with(filter(level).unwrap())
            .with(aws_caps())
            .with(
                fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || writer.clone()),
            );
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    fn logged_under(level: &str, context: &OperationContext) -> String {
        captured(level, || {
            let _in = operation_span(OperationType::CreateInstances, context).entered();
            tracing::debug!("a step");
            tracing::info!("done");
        })
    }

    #[test]
    fn aws_credentials_stay_out_of_the_log_at_every_level() {
        for level in [
            "trace",
            "aws_config=trace,aws_smithy_runtime=trace,ohfp=debug",
        ] {
            let text = captured(level, || {
                // Where the SDK logs credentials: aws_config's profile provider at info, the
                // orchestrator's resolved identity and request at trace.
                tracing::info!(target: "aws_config::profile::credentials", creds = "AKIDPROFILE", "loaded base credentials");
                tracing::trace!(target: "aws_smithy_runtime::client::orchestrator::auth", identity = "AKIDTRACE", "resolved identity");
                tracing::debug!(target: "aws_smithy_runtime::client::orchestrator::endpoints", identity = "AKIDDEBUG", "resolving endpoint");
                tracing::warn!(target: "aws_config::imds", "no region");
                tracing::debug!(target: "ohfp::providers::aws", "own debug line");
            });
            for secret in ["AKIDPROFILE", "AKIDTRACE", "AKIDDEBUG"] {
                assert!(!text.contains(secret), "{level}: {text}");
            }
            assert!(text.contains("no region"), "{level}: {text}");
        }
    }

    #[test]
    fn an_operation_with_debug_logs_its_steps_at_debug_whatever_the_level() {
        let debug = OperationContext {
            debug: true,
            trace_id: Some("debug-123".into()),
        };
        for level in ["info", "warn"] {
            let text = logged_under(level, &debug);
            assert!(text.contains("a step"), "{level}: {text}");
            assert!(text.contains("trace_id=\"debug-123\""), "{text}");
        }
        let plain = OperationContext {
            debug: false,
            trace_id: Some("t-1".into()),
        };
        let text = logged_under("info", &plain);
        assert!(!text.contains("a step"), "{text}");
        assert!(
            text.contains("done") && text.contains("trace_id=\"t-1\""),
            "{text}"
        );
    }
}
