//! Webhook delivery, off the evaluation path: raises and clears go on a bounded queue; a
//! supervised task POSTs each to every URL in a task of its own (at most
//! [`MAX_DELIVERIES`] at once), retrying with a doubling backoff. A slow or dead webhook delays
//! only its own deliveries; when the queue is full a notice is dropped with a warning.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::AlertsConfig;
use crate::domain::Alert;

pub const QUEUE: usize = 256;
const MAX_DELIVERIES: usize = 32;
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What a webhook receives.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    /// `raised` or `cleared`.
    pub status: &'static str,
    pub alert: Alert,
}

/// Delivers notices until shutdown.
pub async fn run(
    cfg: &AlertsConfig,
    notices: &mut mpsc::Receiver<Notice>,
    shutdown: CancellationToken,
) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs_f64(cfg.webhook_timeout_seconds))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            // Without a client nothing can be sent; the task ends and readiness says so.
            tracing::error!(error = %e, "cannot build the webhook client");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_DELIVERIES));
    loop {
        let notice = tokio::select! {
            n = notices.recv() => match n { Some(n) => n, None => return },
            _ = shutdown.cancelled() => return,
        };
        for url in &cfg.webhooks {
            let slot = tokio::select! {
                s = Arc::clone(&slots).acquire_owned() => match s { Ok(s) => s, Err(_) => return },
                _ = shutdown.cancelled() => return,
            };
            let (client, url, notice) = (client.clone(), url.clone(), notice.clone());
            let (retries, backoff) = (cfg.webhook_retries, cfg.webhook_backoff_seconds);
            let stop = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = deliver(&client, &url, &notice, retries, backoff) => {}
                    _ = stop.cancelled() => {}
                }
                drop(slot);
            });
        }
    }
}

async fn deliver(
    client: &reqwest::Client,
    url: &str,
    notice: &Notice,
    retries: u32,
    backoff_seconds: f64,
) {
    let mut wait = Duration::from_secs_f64(backoff_seconds);
    for attempt in 0..=retries {
        let outcome = match client.post(url).json(notice).send().await {
            Ok(res) if res.status().is_success() => return,
            Ok(res) => format!("answered {}", res.status()),
            Err(e) => e.to_string(),
        };
        if attempt == retries {
            tracing::warn!(url, alert = notice.alert.id, status = notice.status, %outcome, attempts = attempt + 1, "webhook not delivered; giving up");
            return;
        }
        tracing::debug!(url, alert = notice.alert.id, %outcome, "webhook failed; retrying");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_BACKOFF);
    }
}
