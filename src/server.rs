//! The running service: `App::build` opens the store, starts the engine and binds the listener
//! (port 0 works, for tests); `run` serves until the shutdown future resolves, then drains
//! in-flight requests, stops the background task and closes the database.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::alerts::Alerts;
use crate::app::Engine;
use crate::config::Config;
use crate::domain::EventKind;
use crate::hostfactory::{self, HostFactory, templates::TemplateCatalog};
use crate::http::prometheus::Exposition;
use crate::http::rate_limit::RateLimits;
use crate::state::{AppParts, AppState};
use crate::tasks::{TaskRestart, Tasks};
use crate::{http, monitor, replica};

/// How long shutdown waits for provisioning tasks before the store closes; an unfinished one
/// resumes at the next start (its machines are found by their request tag).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

pub struct App {
    listener: TcpListener,
    state: AppState,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let started = Instant::now();
        let addr = config
            .server
            .bind_addr()
            .map_err(|e| anyhow::anyhow!("server.bind: {e}"))?;
        let store = config.database.open().await?;
        let engine = Engine::start(&config, store).await?;
        let templates_path = hostfactory::templates_path(
            &config.hostfactory,
            std::env::var("HF_PROVIDER_CONFDIR").ok(),
        );
        let catalog = TemplateCatalog::load(templates_path).map_err(|e| anyhow::anyhow!(e))?;
        if catalog.path().is_none() {
            tracing::warn!(
                "no HostFactory templates file found; getAvailableTemplates answers with none"
            );
        }
        let shutdown = CancellationToken::new();
        let told = Arc::clone(&engine);
        let tasks = Tasks::new(
            shutdown.clone(),
            Arc::new(move |restart: &TaskRestart| {
                told.events().emit(
                    EventKind::TaskRestarted,
                    None,
                    json!({"task": restart.task, "count": restart.count, "reason": restart.last_reason}),
                );
            }),
        );
        let hostfactory = HostFactory::new(
            Arc::clone(&engine),
            catalog,
            config.hostfactory.clone(),
            tasks.clone(),
        );
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        let prometheus = Arc::new(Exposition::new(&engine, &hostfactory));
        let alerts = Alerts::start(&config.alerts, Arc::clone(&engine)).await?;
        let state = AppState::new(AppParts {
            rate_limits: Arc::new(RateLimits::new(&config.server.auth)),
            prometheus,
            alerts,
            engine,
            hostfactory,
            config: Arc::new(config),
            started,
            shutdown,
            tasks,
        });
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn engine(&self) -> Arc<Engine> {
        Arc::clone(&self.state.engine)
    }

    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let App { listener, state } = self;
        let token = state.shutdown.clone();
        let engine = Arc::clone(&state.engine);
        let tasks = state.tasks.clone();
        let (monitored, retention, stop) = (
            Arc::clone(&engine),
            state.config.database.retention.clone(),
            token.clone(),
        );
        tasks.spawn_service("background monitor", move || {
            monitor::run(Arc::clone(&monitored), retention.clone(), stop.clone())
        });
        let (writer, stop) = (Arc::clone(&engine), token.clone());
        tasks.spawn_service("event writer", move || {
            let (writer, stop) = (Arc::clone(&writer), stop.clone());
            async move { writer.events().run_writer(stop).await }
        });
        let (alerts, stop) = (Arc::clone(&state.alerts), token.clone());
        tasks.spawn_service("alert evaluator", move || {
            let (alerts, stop) = (Arc::clone(&alerts), stop.clone());
            async move { alerts.run(stop).await }
        });
        let (alerts, stop) = (Arc::clone(&state.alerts), token.clone());
        tasks.spawn_service("alert webhooks", move || {
            let (alerts, stop) = (Arc::clone(&alerts), stop.clone());
            async move { alerts.run_webhooks(stop).await }
        });
        let (hf, stop) = (Arc::clone(&state.hostfactory), token.clone());
        tasks.spawn_service("hostfactory reconciler", move || {
            hostfactory::run_reconciler(Arc::clone(&hf), stop.clone())
        });
        let (store, stop) = (engine.store().clone(), token.clone());
        let events = Arc::clone(engine.events());
        tasks.spawn_service("leader election", move || {
            replica::election::run(store.clone(), Arc::clone(&events), stop.clone())
        });
        let (hf, alerts, stop) = (
            Arc::clone(&state.hostfactory),
            Arc::clone(&state.alerts),
            token.clone(),
        );
        tasks.spawn_service("replica sync", move || {
            replica::sync::run(Arc::clone(&hf), Arc::clone(&alerts), stop.clone())
        });
        let (hf, stop) = (Arc::clone(&state.hostfactory), token.clone());
        tasks.spawn_service("templates watcher", move || {
            hostfactory::watch_templates(Arc::clone(&hf), stop.clone())
        });
        tracing::info!(
            addr = %listener.local_addr()?,
            strategies = engine.entries().len(),
            ready_ms = state.started.elapsed().as_millis() as u64,
            "ohfp serving"
        );
        let signal = token.clone();
        tokio::spawn(async move {
            shutdown.await;
            signal.cancel();
        });
        let limits = http::serve::ConnectionLimits::new(&state.config.server);
        let router = http::router(state);
        http::serve::serve(listener, router, limits, token.clone()).await;
        token.cancel();
        tasks.join(SHUTDOWN_GRACE).await;
        // Provisioning that finished during the grace period recorded metrics and events after
        // the monitor's last flush and the event writer's last write.
        monitor::metrics::flush(&engine).await;
        engine.events().flush().await;
        engine.store().close().await;
        tracing::info!("ohfp stopped");
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
