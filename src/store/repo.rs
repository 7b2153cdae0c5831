//! The store's contract, one narrow trait per aggregate. [`Store`](super::Store) implements
//! them on SQLite; a second backend implements the same traits and the callers do not change.
//!
//! Common rules for every implementation:
//! - times are epoch milliseconds ([`EpochMillis`]) unless a field says otherwise;
//! - a stored value that does not parse (an unknown state, kind or enum word, bad JSON) is an
//!   error naming the column and the value, never a default;
//! - a method that writes several rows writes all of them or none (one transaction);
//! - `prune_*` methods delete at most `batch` rows per table and return how many they deleted,
//!   so that the caller can repeat them without holding the database for long.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::{
    AuditQuery, CircuitRow, EventQuery, HealthHistoryEntry, MetricBucket, RequestSnapshot,
    SimInstanceRow, StoreResult, StoredStrategy, StrategySource,
};
use crate::config::AlertRule;
use crate::config::StrategySpec;
use crate::domain::{
    Alert, AuditRecord, EpochMillis, Event, HealthStatus, MachineState, NewAlert, ProvisioningApi,
};
use crate::hostfactory::model::{HfMachine, HfRequest, RequestKind, RequestState};

/// Registered strategies: their definitions, where they come from, their registration order.
#[async_trait]
pub trait StrategyRepo: Send + Sync {
    /// Every strategy, in registration order (`seq`).
    async fn list_strategies(&self) -> StoreResult<Vec<StoredStrategy>>;

    /// Registers a new strategy; `None` (and nothing written) when the name is taken. Two
    /// concurrent calls with one name: exactly one gets `Some`.
    async fn insert_strategy(
        &self,
        spec: &StrategySpec,
        source: StrategySource,
        now: EpochMillis,
    ) -> StoreResult<Option<StoredStrategy>>;

    /// Inserts or replaces a strategy; an existing one keeps its `seq` and `created_at`.
    async fn upsert_strategy(
        &self,
        spec: &StrategySpec,
        source: StrategySource,
        now: EpochMillis,
    ) -> StoreResult<StoredStrategy>;

    /// Removes a strategy with its latest health and circuit state (its metrics and health
    /// history stay, as history). `false` when there was none.
    async fn delete_strategy(&self, name: &str) -> StoreResult<bool>;
}

/// The run-time overrides of the file's strategy settings (one document).
#[async_trait]
pub trait SettingsRepo: Send + Sync {
    /// The overrides with the time they were saved; `None` before the first save.
    async fn load_settings_overrides(
        &self,
    ) -> StoreResult<Option<(Map<String, Value>, EpochMillis)>>;

    /// Replaces the overrides.
    async fn save_settings_overrides(
        &self,
        overrides: &Map<String, Value>,
        now: EpochMillis,
    ) -> StoreResult<()>;
}

/// The latest health of each strategy and the history of its changes.
#[async_trait]
pub trait HealthRepo: Send + Sync {
    /// The latest health of every strategy that has one, by strategy name.
    async fn load_health(&self) -> StoreResult<Vec<(String, HealthStatus)>>;

    /// Saves the latest health; when `changed`, the change is also appended to the history.
    async fn save_health(
        &self,
        strategy: &str,
        health: &HealthStatus,
        changed: bool,
    ) -> StoreResult<()>;

    /// The most recent `limit` health changes of a strategy, oldest first.
    async fn health_history(
        &self,
        strategy: &str,
        limit: i64,
    ) -> StoreResult<Vec<HealthHistoryEntry>>;

    /// Deletes history rows older than `before`, and beyond the newest `keep` of each
    /// strategy: at most `batch` of each kind. The latest health is never touched.
    async fn prune_health_history(
        &self,
        before: EpochMillis,
        keep: u32,
        batch: u32,
    ) -> StoreResult<u64>;
}

/// The circuit breaker state of each strategy.
#[async_trait]
pub trait CircuitRepo: Send + Sync {
    /// Every saved circuit, by strategy name.
    async fn load_circuits(&self) -> StoreResult<Vec<(String, CircuitRow)>>;

    /// Saves (inserts or replaces) the circuit of `strategy`.
    async fn save_circuit(&self, strategy: &str, row: &CircuitRow) -> StoreResult<()>;
}

/// Operation metrics in one-minute buckets per strategy and operation type.
#[async_trait]
pub trait MetricsRepo: Send + Sync {
    /// Buckets from `since_minute` (epoch minutes) on, oldest first, optionally of one strategy.
    async fn load_metric_buckets(
        &self,
        since_minute: i64,
        strategy: Option<&str>,
    ) -> StoreResult<Vec<MetricBucket>>;

    /// Adds the given deltas to the stored buckets (creating those that do not exist).
    async fn add_metric_buckets(&self, deltas: &[MetricBucket]) -> StoreResult<()>;

    /// Drops buckets older than `before_minute`; returns how many.
    async fn prune_metric_buckets(&self, before_minute: i64) -> StoreResult<u64>;
}

/// Events, kept for queries and for followers that reconnect.
#[async_trait]
pub trait EventRepo: Send + Sync {
    /// The id this process's new events count on from, asked once at start. SQLite: the
    /// highest id ever stored (also after pruning), 0 before the first event. PostgreSQL: the
    /// start of a block of ids taken for this process alone (replicas emit events at once).
    async fn last_event_id(&self) -> StoreResult<u64>;

    /// Stores events with the ids they were given.
    async fn insert_events(&self, events: &[Event]) -> StoreResult<()>;

    /// Stored events as `query` says, oldest first.
    async fn events(&self, query: &EventQuery) -> StoreResult<Vec<Event>>;

    /// Deletes events older than `before`, and beyond the newest `keep`: at most `batch` of
    /// each.
    async fn prune_events(&self, before: EpochMillis, keep: u32, batch: u32) -> StoreResult<u64>;
}

/// The audit trail of cloud-changing calls.
#[async_trait]
pub trait AuditRepo: Send + Sync {
    /// Stores one call (its `id` is ignored) and answers the id it got.
    async fn insert_audit(&self, record: &AuditRecord) -> StoreResult<u64>;

    /// Stored calls as `query` says, oldest first.
    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>>;

    /// Deletes calls older than `before`, at most `batch`.
    async fn prune_audit(&self, before: EpochMillis, batch: u32) -> StoreResult<u64>;
}

/// Alerts raised by the rules, and the rules set at run time.
#[async_trait]
pub trait AlertRepo: Send + Sync {
    /// Stores a raised alert; the stored alert, with its id.
    async fn insert_alert(&self, alert: &NewAlert) -> StoreResult<Alert>;

    /// Marks an alert cleared; the stored alert.
    async fn clear_alert(&self, id: u64, at: EpochMillis, message: &str) -> StoreResult<Alert>;

    /// Alerts not cleared, oldest first.
    async fn active_alerts(&self) -> StoreResult<Vec<Alert>>;

    /// The `limit` most recently cleared alerts, newest first.
    async fn recent_alerts(&self, limit: u32) -> StoreResult<Vec<Alert>>;

    /// Deletes at most `batch` alerts cleared before `before`; active ones are never deleted.
    async fn prune_alerts(&self, before: EpochMillis, batch: u32) -> StoreResult<u64>;

    /// The rules set through the API, if any.
    async fn load_alert_rules(&self) -> StoreResult<Option<Vec<AlertRule>>>;

    /// Replaces the rules set through the API.
    async fn save_alert_rules(&self, rules: &[AlertRule], now: EpochMillis) -> StoreResult<()>;
}

/// The simulated provider's instances; their state follows from their timestamps.
#[async_trait]
pub trait SimInstanceRepo: Send + Sync {
    /// Saves new instances (ids are unique).
    async fn insert_sim_instances(&self, rows: &[SimInstanceRow]) -> StoreResult<()>;

    /// The instances of `strategy` among `ids`, oldest first (unknown ids are absent).
    async fn sim_instances_by_ids(
        &self,
        strategy: &str,
        ids: &[String],
    ) -> StoreResult<Vec<SimInstanceRow>>;

    /// The instances of `strategy` made for any of `request_ids`, oldest first.
    async fn sim_instances_by_request(
        &self,
        strategy: &str,
        request_ids: &[String],
    ) -> StoreResult<Vec<SimInstanceRow>>;

    /// How many instances of `strategy` are not yet terminated at `now`.
    async fn count_live_sim_instances(&self, strategy: &str, now: EpochMillis) -> StoreResult<u64>;

    /// Starts shutting down those of `ids` that are not already; returns the ids touched.
    async fn terminate_sim_instances(
        &self,
        strategy: &str,
        ids: &[String],
        now: EpochMillis,
        reclaimed: bool,
    ) -> StoreResult<Vec<String>>;

    /// Deletes at most `batch` instances that finished shutting down before `before`.
    /// Instances still running or shutting down are never deleted.
    async fn prune_sim_instances(&self, before: EpochMillis, batch: u32) -> StoreResult<u64>;
}

/// What counts against a template's maxNumber: the instance types of its live machines,
/// and for each open acquire request the count asked with the instance types placed so far.
pub type TemplateUsage = (Vec<Option<String>>, Vec<(i64, Vec<Option<String>>)>);

/// What a strategy still holds on the HostFactory side (see [`HostFactoryRepo::hf_holdings`]):
/// the first few ids of each kind, oldest first, and how many there are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StrategyHoldings {
    pub machines: Vec<String>,
    pub machine_count: u64,
    pub requests: Vec<String>,
    pub request_count: u64,
}

impl StrategyHoldings {
    pub fn is_empty(&self) -> bool {
        self.machine_count == 0 && self.request_count == 0
    }
}

/// How many rows one [`HostFactoryRepo::prune_finished`] call deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HfPruned {
    pub machines: u64,
    pub requests: u64,
}

impl HfPruned {
    pub fn total(self) -> u64 {
        self.machines + self.requests
    }
}

/// How many HostFactory requests and machines the store holds, by state (for `/metrics`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HfCounts {
    pub requests: Vec<(RequestKind, RequestState, u64)>,
    pub machines: Vec<(MachineState, u64)>,
}

/// HostFactory requests (acquire and return) and the machines they hold.
#[async_trait]
pub trait HostFactoryRepo: Send + Sync {
    /// Records a new acquire request.
    async fn insert_hf_request(&self, r: &HfRequest) -> StoreResult<()>;

    /// Records a return request and marks `machine_ids` (those not already being returned) as
    /// returned by it.
    async fn insert_return_request(&self, r: &HfRequest, machine_ids: &[String])
    -> StoreResult<()>;

    /// Marks the requests among `ids` not claimed yet as claimed at `now` (one statement for up
    /// to 500 ids).
    async fn claim_requests(&self, ids: &[String], now: EpochMillis) -> StoreResult<()>;

    /// Acquire requests made before `before`, never claimed, that hold something: provisioned
    /// (in progress or done), or failed with live machines not being returned.
    async fn unclaimed_requests(&self, before: EpochMillis) -> StoreResult<Vec<HfRequest>>;

    /// Cancels unclaimed acquire request `request_id` (failed, with `message`) and returns its
    /// live machines with return request `ret` (its count and state set here), together; the
    /// machines returned, or `None` when the request was claimed or ended meanwhile.
    async fn cancel_unclaimed(
        &self,
        request_id: &str,
        message: &str,
        ret: &HfRequest,
    ) -> StoreResult<Option<Vec<String>>>;

    /// The requests among `ids` that exist, in no particular order.
    async fn hf_requests(&self, ids: &[String]) -> StoreResult<Vec<HfRequest>>;

    /// Each id's request with the machines getRequestStatus reports for it, `None` for an id
    /// never issued; from the in-memory copy where it holds the request (see
    /// `store::request_cache`), else from the database.
    async fn hf_request_snapshots(
        &self,
        ids: &[String],
    ) -> StoreResult<Vec<Option<Arc<RequestSnapshot>>>>;

    /// The requests in any of `states`, oldest first.
    async fn hf_requests_in(&self, states: &[RequestState]) -> StoreResult<Vec<HfRequest>>;

    /// Marks a provisioning attempt before the cloud is called (state `provisioning`, one more
    /// attempt), so that a restart knows to look for machines already made.
    async fn start_provisioning(&self, request_id: &str, now: EpochMillis) -> StoreResult<()>;

    /// Records the provisioning outcome and the machines made, together. `strategy`,
    /// `resource_id` and `provider_api` replace the stored ones only when given.
    #[allow(clippy::too_many_arguments)]
    async fn finish_provisioning(
        &self,
        request_id: &str,
        state: RequestState,
        message: &str,
        strategy: Option<&str>,
        resource_id: Option<&str>,
        provider_api: Option<ProvisioningApi>,
        machines: &[HfMachine],
        now: EpochMillis,
    ) -> StoreResult<()>;

    /// Sets a request's state and message.
    async fn set_request_state(
        &self,
        request_id: &str,
        state: RequestState,
        message: &str,
        now: EpochMillis,
    ) -> StoreResult<()>;

    /// Saves what providers said about machines (new ones are inserted). On an existing
    /// machine, an absent address or detail keeps the stored one, `delivered` never goes back
    /// to false and the first `reclaimed_at` stays.
    async fn save_observations(&self, machines: &[HfMachine]) -> StoreResult<()>;

    /// Machines of acquire requests `ids` and machines being returned by return requests `ids`,
    /// oldest first.
    async fn hf_machines_of(&self, ids: &[String]) -> StoreResult<Vec<HfMachine>>;

    /// Machines whose id is among `ids` (primary-key lookups).
    async fn hf_machines_by_ids(&self, ids: &[String]) -> StoreResult<Vec<HfMachine>>;

    /// Machines whose id, private DNS name or private IP is among `keys`, each once.
    async fn hf_machines_by_keys(&self, keys: &[String]) -> StoreResult<Vec<HfMachine>>;

    /// Machines the reconciler asks providers about: neither terminated nor failed, by
    /// strategy. Called every round: an implementation must not scan every machine ever made.
    async fn hf_machines_to_track(&self) -> StoreResult<Vec<HfMachine>>;

    /// Machines failed by the service (never started) whose termination was not yet accepted.
    async fn hf_failed_unterminated(&self) -> StoreResult<Vec<HfMachine>>;

    /// Every machine that HostFactory has not returned (and that did not fail), oldest first.
    async fn hf_machines_not_returned(&self) -> StoreResult<Vec<HfMachine>>;

    /// Records why machines could not be terminated yet (on machines that did not fail).
    async fn note_termination_problem(
        &self,
        machine_ids: &[String],
        message: &str,
    ) -> StoreResult<()>;

    /// Records that the provider accepted the termination of `machine_ids`.
    async fn mark_return_sent(&self, machine_ids: &[String], now: EpochMillis) -> StoreResult<()>;

    /// What counts against a template's maxNumber (see [`TemplateUsage`]).
    async fn hf_template_usage(&self, template_id: &str) -> StoreResult<TemplateUsage>;

    /// What `strategy` holds, read at one moment (`first` ids of each kind at the most):
    /// machines the reconciler still polls or terminates through it (not terminated, and not
    /// failed with their termination accepted), and acquire requests not provisioned yet that
    /// may place machines on it (naming it, or naming no strategy, so selection may pick it).
    async fn hf_holdings(&self, strategy: &str, first: u32) -> StoreResult<StrategyHoldings>;

    /// Deletes, at most `batch` of each, finished requests and their machines last changed
    /// before `before`. Finished: a machine that is terminated (or failed with its termination
    /// accepted); an acquire request that is `done` or `failed` with no machine left; a return
    /// request with no machine left. A machine goes only with its acquire request finished and
    /// old, and its return request (if any) old. Nothing open, and no machine that is still
    /// there in the cloud, is ever deleted.
    async fn prune_finished(&self, before: EpochMillis, batch: u32) -> StoreResult<HfPruned>;

    /// Requests by kind and state and machines by state, of those kept.
    async fn hf_counts(&self) -> StoreResult<HfCounts>;
}
