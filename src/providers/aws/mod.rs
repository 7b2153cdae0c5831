//! The AWS provider: EC2 (RunInstances, EC2 Fleet, Spot Fleet) and Auto Scaling groups through
//! the AWS SDK, one set of clients per strategy.

mod asg;
mod audit;
mod checks;
mod client;
mod config;
mod create;
mod ec2_fleet;
mod errors;
#[cfg(test)]
mod iam_policy;
mod interfaces;
mod launch_template;
mod notices;
mod plan;
mod pools;
mod quotas;
mod run_instances;
mod spec;
mod spot_fleet;
mod status;
mod terminate;

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_ec2::types::Tag;
use serde_json::json;

pub use config::AwsConfig;
pub use pools::{ParkedPool, ParkedPools, PoolKey};

use super::{
    CreateRequest, Created, HealthReport, LaunchPlan, Provider, ReclaimNotice, StatusQuery,
    StatusReport, TemplatesReport, TerminateReport, TerminateRequest, ValidationReport,
};
use crate::app::events::{EventBus, EventKind};
use crate::domain::{
    AuditCause, Capabilities, LaunchSpec, OperationType, ProviderError, ProvisioningApi,
    now_millis, rfc3339,
};
use crate::store::Store;
use client::AwsClients;
use notices::{NoticeBook, NoticeQueue};
use pools::{PoolParking, failover_order};
use quotas::{QuotaBook, QuotaRefresh};

/// Tags ohfp puts on every instance (and on its fleets, groups and launch templates).
pub const TAG_REQUEST_ID: &str = "ohfp:request-id";
pub const TAG_TEMPLATE_ID: &str = "ohfp:template-id";
pub const TAG_PROVIDER_API: &str = "ohfp:provider-api";
/// Put on an instance just before ohfp terminates it, so that an instance terminated by anyone
/// else can be told apart (reported as reclaimed).
pub const TAG_RETURNED: &str = "ohfp:returned";

pub(crate) fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

pub struct AwsProvider {
    strategy: String,
    cfg: AwsConfig,
    clients: AwsClients,
    /// Serialises growing an Auto Scaling group (read desired, write desired + n).
    asg_lock: tokio::sync::Mutex<()>,
    parking: PoolParking,
    events: Arc<EventBus>,
    /// Notices from the interruption queue, for the reconciler.
    notices: Arc<NoticeBook>,
    /// Stops the queue task when the provider goes (its strategy replaced or removed).
    _queue_task: Option<tokio_util::sync::DropGuard>,
    /// The account's vCPU quotas and usage, when `quota_refresh_seconds` is set.
    quotas: Option<Arc<QuotaBook>>,
    _quota_task: Option<tokio_util::sync::DropGuard>,
    /// Where the audit trail of cloud-changing calls goes.
    store: Store,
}

impl AwsProvider {
    pub async fn new(strategy: &str, cfg: AwsConfig, events: Arc<EventBus>, store: Store) -> Self {
        let clients = AwsClients::new(&cfg).await;
        let notices = Arc::new(NoticeBook::default());
        let queue_task = cfg.interruption_queue_url.clone().map(|queue_url| {
            let stop = tokio_util::sync::CancellationToken::new();
            let queue = NoticeQueue {
                strategy: strategy.to_string(),
                queue_url,
                rebalance: cfg.rebalance_recommendations,
                sqs: clients.sqs.clone(),
                book: Arc::clone(&notices),
                events: Arc::clone(&events),
                wait_seconds: NoticeQueue::wait_for(cfg.operation_timeout_seconds),
                leadership: store.leadership().clone(),
            };
            tokio::spawn(queue.run(stop.clone()));
            stop.drop_guard()
        });
        let (quotas, quota_task) = match cfg.quota_refresh_seconds {
            Some(every) => {
                let book = Arc::new(QuotaBook::default());
                let stop = tokio_util::sync::CancellationToken::new();
                let refresh = QuotaRefresh {
                    strategy: strategy.to_string(),
                    clients: clients.clone(),
                    book: Arc::clone(&book),
                    events: Arc::clone(&events),
                };
                let every = std::time::Duration::from_secs(u64::from(every));
                tokio::spawn(refresh.run(every, stop.clone()));
                (Some(book), Some(stop.drop_guard()))
            }
            None => (None, None),
        };
        Self {
            strategy: strategy.to_string(),
            parking: PoolParking::new(cfg.capacity_cooldown_seconds),
            cfg,
            clients,
            asg_lock: tokio::sync::Mutex::new(()),
            events,
            notices,
            _queue_task: queue_task,
            quotas,
            _quota_task: quota_task,
            store,
        }
    }

    /// Parks `pool` after an answer of `code`, and says so in an event.
    fn park(&self, pool: &PoolKey, code: &str) {
        let until = self.parking.park(pool, code, now_millis());
        self.events.emit(
            EventKind::PoolParked,
            Some(&self.strategy),
            json!({
                "instance_type": pool.instance_type,
                "subnet": pool.subnet,
                "code": code,
                "until": until.map(rfc3339),
            }),
        );
    }

    /// The pools of `spec` parked now.
    fn parked_pools_of(&self, spec: &LaunchSpec) -> Vec<PoolKey> {
        let now = now_millis();
        failover_order(spec)
            .into_iter()
            .filter(|p| self.parking.is_parked(p, now))
            .collect()
    }

    /// Passes an answer on, logging a failure with the operation it ended.
    fn logged<T>(
        &self,
        operation: OperationType,
        result: Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        if let Err(e) = &result {
            tracing::debug!(strategy = %self.strategy, %operation, kind = ?e.kind, code = %e.code, "aws operation failed");
        }
        result
    }
}

#[async_trait]
impl Provider for AwsProvider {
    fn capabilities(&self) -> Capabilities {
        let provider_apis: Vec<&str> = ProvisioningApi::ALL.iter().map(|a| a.as_str()).collect();
        let features = json!({
            "instances": true,
            "region": self.cfg.region,
            "provider_apis": provider_apis,
            "spot": true,
        });
        let limitations = json!({
            "max_instance_ids_per_describe": status::DESCRIBE_BATCH,
        });
        Capabilities {
            provider_type: "aws".into(),
            supported_operations: OperationType::ALL.to_vec(),
            features: features.as_object().cloned().unwrap_or_default(),
            limitations: limitations.as_object().cloned().unwrap_or_default(),
            performance_metrics: None,
        }
    }

    async fn create(&self, req: &CreateRequest) -> Result<Created, ProviderError> {
        // Direct calls name their HostFactory request too.
        let cause = AuditCause::current_with(req.request_id.clone());
        let result = cause.scope(self.launch(req)).await;
        self.logged(OperationType::CreateInstances, result)
    }

    async fn status(&self, query: &StatusQuery) -> Result<StatusReport, ProviderError> {
        let result = self.machines_status(query).await;
        self.logged(OperationType::GetInstanceStatus, result)
    }

    async fn terminate(&self, req: &TerminateRequest) -> Result<TerminateReport, ProviderError> {
        let result = self.give_back(req).await;
        self.logged(OperationType::TerminateInstances, result)
    }

    async fn validate(&self, spec: &LaunchSpec) -> Result<ValidationReport, ProviderError> {
        let result = self.check_spec(spec).await;
        self.logged(OperationType::ValidateTemplate, result)
    }

    /// Templates are HostFactory's (its templates file); this provider has none of its own.
    async fn templates(&self) -> Result<TemplatesReport, ProviderError> {
        Ok(TemplatesReport {
            templates: Vec::new(),
            provider_apis: ProvisioningApi::ALL.to_vec(),
            region: Some(self.cfg.region.clone()),
            degraded: false,
            message: Some(
                "templates come from the HostFactory templates file; any of them can run here"
                    .into(),
            ),
        })
    }

    async fn health(&self) -> Result<HealthReport, ProviderError> {
        let result = self.describe_zones().await;
        self.logged(OperationType::HealthCheck, result)
    }

    fn parked_pools(&self) -> Option<ParkedPools> {
        Some(self.parking.list(now_millis()))
    }

    fn quota_headroom(&self, spec: &LaunchSpec) -> Option<i64> {
        self.quotas.as_ref()?.headroom(spec)
    }

    fn pending_timeout_seconds(&self) -> Option<f64> {
        self.cfg.pending_timeout_seconds
    }

    fn take_reclaim_notices(&self) -> Vec<ReclaimNotice> {
        self.notices.take()
    }

    async fn plan(&self, req: &CreateRequest) -> Result<LaunchPlan, ProviderError> {
        self.plan_launch(req).await
    }
}
