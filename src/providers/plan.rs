//! What a creation would do, answered by a provider without doing it (`ohfp plan`).

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::ProvisioningApi;

/// One capacity pool (instance type in a subnet), in the order a creation tries them.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PlannedPool {
    pub instance_type: String,
    /// `None`: the account's default subnet.
    pub subnet: Option<String>,
    /// Parked after a capacity error: skipped (left out of fleet overrides).
    pub parked: bool,
}

/// The cloud's own check of the request (`DryRun=true`), where the API has one.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DryRunCheck {
    /// `DryRunOperation`: the request would succeed; anything else is why it would not.
    pub would_succeed: bool,
    pub code: String,
    pub message: String,
}

/// A creation planned, not made: nothing is launched and nothing is stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LaunchPlan {
    pub provider_api: Option<ProvisioningApi>,
    pub instance_types: Vec<String>,
    pub subnets: Vec<String>,
    /// Every pool in order; the first one not parked is where RunInstances starts.
    pub pools: Vec<PlannedPool>,
    /// The cloud API action the creation would call, e.g. `RunInstances`.
    pub action: String,
    /// The request that would be sent, as its parameters (for EC2, the query parameters of the
    /// serialized request, e.g. `{"Action": "RunInstances", "MinCount": "2", ...}`).
    #[schema(value_type = Object)]
    pub request: Value,
    /// Absent where the API has no dry run (SpotFleet, Auto Scaling) or the plan could not
    /// make one (see `notes`).
    pub dry_run: Option<DryRunCheck>,
    /// What else the creation would do first or differently (a launch template it would
    /// make, a group it would make or grow).
    pub notes: Vec<String>,
}
