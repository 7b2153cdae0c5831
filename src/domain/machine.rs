use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ProvisioningApi, UnknownValue};

/// Cloud-side state of one instance, in EC2's words. The default is where every machine
/// starts: `pending`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MachineState {
    #[default]
    Pending,
    Running,
    ShuttingDown,
    Terminated,
    Stopping,
    Stopped,
}

impl MachineState {
    pub fn as_str(self) -> &'static str {
        match self {
            MachineState::Pending => "pending",
            MachineState::Running => "running",
            MachineState::ShuttingDown => "shutting-down",
            MachineState::Terminated => "terminated",
            MachineState::Stopping => "stopping",
            MachineState::Stopped => "stopped",
        }
    }
}

/// The words of [`MachineState::as_str`]; anything else is an error.
impl FromStr for MachineState {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(MachineState::Pending),
            "running" => Ok(MachineState::Running),
            "shutting-down" => Ok(MachineState::ShuttingDown),
            "terminated" => Ok(MachineState::Terminated),
            "stopping" => Ok(MachineState::Stopping),
            "stopped" => Ok(MachineState::Stopped),
            _ => Err(UnknownValue::new("machine state", s)),
        }
    }
}

/// One instance as every provider reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Machine {
    pub instance_id: String,
    pub state: MachineState,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
    pub private_dns: Option<String>,
    pub instance_type: Option<String>,
    /// Epoch seconds (UTC).
    pub launch_time: Option<i64>,
    pub region: Option<String>,
    /// `ondemand` or `spot`.
    pub price_type: Option<String>,
    /// Set when the cloud is taking the instance back (spot interruption, outside termination).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reclaim_notice: Option<String>,
    /// When the cloud takes the instance, epoch milliseconds, when it says (a spot two-minute
    /// warning): HostFactory's grace period counts down to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reclaim_deadline: Option<crate::domain::EpochMillis>,
    /// The HostFactory request the instance was made for (from its tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// What holds the instance on the provider's side: a fleet id, an Auto Scaling group name,
    /// a reservation id. Needed to give it back the way it came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// The API that made it (`RunInstances`, `EC2Fleet`, `SpotFleet`, `ASG`); none for a
    /// simulator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_api: Option<ProvisioningApi>,
}
