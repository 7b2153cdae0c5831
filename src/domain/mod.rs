//! Domain types shared by every layer: operations, errors, capabilities, health, machines and
//! the launch model.
//! No I/O here.

mod alert;
mod audit;
mod capabilities;
mod event;
mod health;
mod launch;
mod machine;
mod names;
mod operation;
mod secrets;
mod unknown;

pub use alert::{Alert, NewAlert};
pub use audit::{AuditCause, AuditRecord};
pub use capabilities::{Capabilities, CapabilityFlags};
pub use event::{Event, EventKind};
pub use health::{HealthState, HealthStatus};
pub use launch::{
    AllocationStrategy, CapacityReservation, FleetOptions, FleetType, InterfaceType, LaunchSpec,
    NetworkInterfaces, OnDemandAllocation, Placement, PriceType, ProvisioningApi, RootVolume,
    SpecField, Tenancy, VolumeType, WeightedType,
};
pub use machine::{Machine, MachineState};
pub(crate) use names::named_enum;
pub use operation::{Attempt, OperationType, Outcome, ProviderError, ProviderErrorKind};
pub use secrets::is_secret_key;
pub use unknown::UnknownValue;

/// Milliseconds since the Unix epoch; the one time unit the store and the breaker use.
pub type EpochMillis = i64;

/// Current wall-clock time in epoch milliseconds.
pub fn now_millis() -> EpochMillis {
    chrono::Utc::now().timestamp_millis()
}

/// Formats epoch milliseconds as RFC 3339 (UTC) for API answers.
pub fn rfc3339(ms: EpochMillis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
