//! Alerting: rules (from the file's `alerts` section, or set at run time through
//! `PUT /api/v1/alerts/rules`, stored, replacing the file's) evaluated every
//! `evaluate_every_seconds` by a supervised background task. Each rule and strategy (or the
//! service, for service-wide conditions) has a [`Tracker`]: an alert is raised once and cleared
//! once ([`hysteresis`]), stored, emitted as an event (`alert_raised`, `alert_cleared`) and
//! queued for the webhooks ([`webhook`]). Active alerts survive a restart: their trackers start
//! raised, so a condition still true is not raised again.

pub mod hysteresis;
mod observe;
pub mod webhook;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::app::{AppError, AppResult, Engine, FieldError};
use crate::config::{AlertRule, AlertsConfig, alert_rule_problems};
use crate::domain::{Alert, EpochMillis, EventKind, NewAlert, now_millis};
use crate::store::{AlertRepo, StoreResult};
pub use hysteresis::{Change, Tracker};
use observe::Observation;

/// Cleared alerts `GET /api/v1/alerts` lists.
const RECENT: u32 = 100;

/// An alert's key: the rule and the strategy it concerns (None: the service).
type Key = (String, Option<String>);

struct Tracked {
    tracker: Tracker,
    /// The stored alert while raised.
    alert: Option<Alert>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RulesSource {
    /// The configuration file's `alerts.rules`.
    File,
    /// Set through `PUT /api/v1/alerts/rules` (stored; survives restarts).
    Api,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RulesView {
    pub rules: Vec<AlertRule>,
    pub source: RulesSource,
}

/// Body of `PUT /api/v1/alerts/rules`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutRules {
    pub rules: Vec<AlertRule>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertList {
    /// Raised and not cleared, oldest first.
    pub active: Vec<Alert>,
    /// The 100 most recently cleared, newest first.
    pub recent: Vec<Alert>,
}

pub struct Alerts {
    engine: Arc<Engine>,
    rules: RwLock<RulesView>,
    evaluate_every: Duration,
    trackers: tokio::sync::Mutex<BTreeMap<Key, Tracked>>,
    notices: mpsc::Sender<webhook::Notice>,
    /// The webhook task's end of the queue; held by the task while it runs (a restarted task
    /// takes it again).
    inbox: tokio::sync::Mutex<mpsc::Receiver<webhook::Notice>>,
    webhook_cfg: AlertsConfig,
    webhooks: bool,
}

/// The stored rules, or the file's when none are stored (stored ones that no longer pass
/// validation, or cannot be read, are logged and the file's used).
async fn rules_in_force(store: &crate::store::Store, cfg: &AlertsConfig) -> RulesView {
    let stored = match store.load_alert_rules().await {
        Ok(Some(rules)) if alert_rule_problems(&rules).is_empty() => Some(rules),
        Ok(Some(_)) => {
            tracing::warn!("stored alert rules are out of bounds; using the file's");
            None
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "stored alert rules cannot be read; using the file's");
            None
        }
    };
    match stored {
        Some(rules) => RulesView {
            rules,
            source: RulesSource::Api,
        },
        None => RulesView {
            rules: cfg.rules.clone(),
            source: RulesSource::File,
        },
    }
}

impl Alerts {
    /// The rules in force (stored ones replace the file's; stored ones that no longer pass
    /// validation are logged and dropped), and the trackers of alerts still active.
    pub async fn start(cfg: &AlertsConfig, engine: Arc<Engine>) -> anyhow::Result<Arc<Self>> {
        let store = engine.store();
        let rules = rules_in_force(store, cfg).await;
        let trackers = store
            .active_alerts()
            .await?
            .into_iter()
            .map(|a| {
                let key = (a.rule.clone(), a.strategy.clone());
                let tracked = Tracked {
                    tracker: Tracker::RAISED,
                    alert: Some(a),
                };
                (key, tracked)
            })
            .collect();
        let (notices, inbox) = mpsc::channel(webhook::QUEUE);
        let alerts = Arc::new(Self {
            engine,
            rules: RwLock::new(rules),
            evaluate_every: Duration::from_secs_f64(cfg.evaluate_every_seconds),
            trackers: tokio::sync::Mutex::new(trackers),
            notices,
            inbox: tokio::sync::Mutex::new(inbox),
            webhook_cfg: cfg.clone(),
            webhooks: !cfg.webhooks.is_empty(),
        });
        Ok(alerts)
    }

    pub fn rules(&self) -> RulesView {
        self.rules.read().expect("rules lock").clone()
    }

    /// Reads the rules in force again (another replica set them).
    pub async fn reload_rules(&self) {
        let view = rules_in_force(self.engine.store(), &self.webhook_cfg).await;
        *self.rules.write().expect("rules lock") = view;
    }

    /// Replaces the rules (checked as the file's are), stores them, applies them from the next
    /// evaluation.
    pub async fn set_rules(&self, put: PutRules) -> AppResult<RulesView> {
        let problems: Vec<FieldError> = alert_rule_problems(&put.rules)
            .into_iter()
            .map(|(path, message)| FieldError::new(format!("rules{path}"), message))
            .collect();
        if !problems.is_empty() {
            return Err(AppError::Validation(problems));
        }
        self.engine
            .store()
            .save_alert_rules(&put.rules, now_millis())
            .await?;
        let view = RulesView {
            rules: put.rules,
            source: RulesSource::Api,
        };
        *self.rules.write().expect("rules lock") = view.clone();
        let names: Vec<&str> = view.rules.iter().map(|r| r.name.as_str()).collect();
        self.engine.events().emit(
            EventKind::Configuration,
            None,
            json!({"changed": ["alert_rules"], "alert_rules": names}),
        );
        Ok(view)
    }

    pub async fn list(&self) -> AppResult<AlertList> {
        let store = self.engine.store();
        Ok(AlertList {
            active: store.active_alerts().await?,
            recent: store.recent_alerts(RECENT).await?,
        })
    }

    /// Sends raises and clears to the webhooks until shutdown (see [`webhook::run`]).
    pub async fn run_webhooks(&self, shutdown: CancellationToken) {
        let mut inbox = self.inbox.lock().await;
        webhook::run(&self.webhook_cfg, &mut inbox, shutdown).await;
    }

    /// Evaluates the rules until shutdown.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.evaluate_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                // Replicas: alerts are raised by the leader alone (`crate::replica`).
                _ = ticker.tick() => if self.engine.store().leadership().is_leader() {
                    self.evaluate(now_millis()).await
                },
            }
        }
    }

    /// One evaluation of every rule at `now`.
    pub async fn evaluate(&self, now: EpochMillis) {
        let rules = self.rules().rules;
        let mut trackers = self.trackers.lock().await;
        let mut seen: BTreeSet<Key> = BTreeSet::new();
        for rule in &rules {
            let observations = match observe::observe(&self.engine, rule, now).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(rule = %rule.name, error = %e, "cannot evaluate an alert rule; its alerts stay as they are");
                    seen.extend(trackers.keys().filter(|k| k.0 == rule.name).cloned());
                    continue;
                }
            };
            for o in observations {
                let key = (rule.name.clone(), o.strategy.clone());
                seen.insert(key.clone());
                let tracked = trackers.entry(key).or_insert(Tracked {
                    tracker: Tracker::CLEAR,
                    alert: None,
                });
                let change = tracked.tracker.step(
                    o.holds,
                    now,
                    (rule.for_seconds * 1000.0) as i64,
                    (rule.clear_seconds * 1000.0) as i64,
                );
                match change {
                    Some(Change::Raise) => self.raise(tracked, rule, o, now).await,
                    Some(Change::Clear) => self.clear(tracked, &o.message, now).await,
                    None => {}
                }
            }
        }
        // Rules removed and strategies gone: their alerts clear.
        let gone: Vec<Key> = trackers
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(mut tracked) = trackers.remove(&key) {
                if tracked.alert.is_some() {
                    self.clear(
                        &mut tracked,
                        "no longer evaluated (rule or strategy removed)",
                        now,
                    )
                    .await;
                }
                if tracked.alert.is_some() {
                    // Not stored: kept to try again next time.
                    trackers.insert(key, tracked);
                }
            }
        }
    }

    async fn raise(
        &self,
        tracked: &mut Tracked,
        rule: &AlertRule,
        o: Observation,
        now: EpochMillis,
    ) {
        let alert = NewAlert {
            rule: rule.name.clone(),
            condition: rule.condition.kind(),
            strategy: o.strategy,
            message: o.message,
            raised_at: now,
        };
        match self.engine.store().insert_alert(&alert).await {
            Ok(stored) => {
                tracing::warn!(rule = %stored.rule, strategy = stored.strategy.as_deref().unwrap_or("-"), message = %stored.message, "alert raised");
                self.announce(EventKind::AlertRaised, "raised", &stored);
                tracked.alert = Some(stored);
            }
            Err(e) => self.not_stored(tracked, Tracker::CLEAR, e),
        }
    }

    async fn clear(&self, tracked: &mut Tracked, message: &str, now: EpochMillis) {
        let Some(id) = tracked.alert.as_ref().map(|a| a.id) else {
            return;
        };
        match self.engine.store().clear_alert(id, now, message).await {
            Ok(stored) => {
                tracing::info!(rule = %stored.rule, strategy = stored.strategy.as_deref().unwrap_or("-"), message, "alert cleared");
                self.announce(EventKind::AlertCleared, "cleared", &stored);
                tracked.alert = None;
            }
            Err(e) => self.not_stored(tracked, Tracker::RAISED, e),
        }
    }

    /// A change the store did not take is undone, so that the next evaluation makes it again.
    fn not_stored(&self, tracked: &mut Tracked, back_to: Tracker, e: sqlx::Error) {
        tracing::error!(error = %e, "cannot store an alert change; retrying at the next evaluation");
        tracked.tracker = back_to;
    }

    fn announce(&self, kind: EventKind, status: &'static str, alert: &Alert) {
        self.engine
            .events()
            .emit(kind, alert.strategy.as_deref(), json!({"alert": alert}));
        if self.webhooks
            && self
                .notices
                .try_send(webhook::Notice {
                    status,
                    alert: alert.clone(),
                })
                .is_err()
        {
            tracing::warn!(
                alert = alert.id,
                status,
                "the webhook queue is full; this notice is not sent"
            );
        }
    }

    /// Active alerts per rule (for `/metrics`).
    pub async fn active_by_rule(&self) -> StoreResult<BTreeMap<String, u64>> {
        let mut counts = BTreeMap::new();
        for a in self.engine.store().active_alerts().await? {
            *counts.entry(a.rule).or_default() += 1;
        }
        Ok(counts)
    }
}
