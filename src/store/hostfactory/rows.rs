//! How HostFactory rows read: every column through `try_get`, words parsed into their enums.

use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use crate::domain::MachineState;
use crate::hostfactory::model::{HfMachine, HfRequest, RequestKind, RequestState};
use crate::store::rows::{count, flag, json_opt, named_opt, parsed};

impl FromRow<'_, AnyRow> for HfRequest {
    fn from_row(r: &AnyRow) -> sqlx::Result<Self> {
        Ok(HfRequest {
            request_id: r.try_get("request_id")?,
            kind: parsed(r, "kind")?,
            template_id: r.try_get("template_id")?,
            template: json_opt(r, "template")?,
            requested_count: r.try_get("requested_count")?,
            provider_name: r.try_get("provider_name")?,
            strategy: r.try_get("strategy")?,
            state: parsed(r, "state")?,
            message: r.try_get("message")?,
            resource_id: r.try_get("resource_id")?,
            provider_api: named_opt(r, "provider_api")?,
            attempts: r.try_get("attempts")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            claimed_at: r.try_get("claimed_at")?,
        })
    }
}

impl FromRow<'_, AnyRow> for HfMachine {
    fn from_row(r: &AnyRow) -> sqlx::Result<Self> {
        Ok(HfMachine {
            machine_id: r.try_get("machine_id")?,
            request_id: r.try_get("request_id")?,
            template_id: r.try_get("template_id")?,
            strategy: r.try_get("strategy")?,
            state: parsed(r, "state")?,
            failed: flag(r, "failed")?,
            delivered: flag(r, "delivered")?,
            message: r.try_get("message")?,
            private_ip: r.try_get("private_ip")?,
            public_ip: r.try_get("public_ip")?,
            private_dns: r.try_get("private_dns")?,
            instance_type: r.try_get("instance_type")?,
            price_type: r.try_get("price_type")?,
            launch_time: r.try_get("launch_time")?,
            resource_id: r.try_get("resource_id")?,
            provider_api: named_opt(r, "provider_api")?,
            reclaim_notice: r.try_get("reclaim_notice")?,
            reclaimed_at: r.try_get("reclaimed_at")?,
            reclaim_deadline: r.try_get("reclaim_deadline")?,
            return_request_id: r.try_get("return_request_id")?,
            return_sent_at: r.try_get("return_sent_at")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

/// A row of the open-request half of [`HostFactoryRepo::hf_template_usage`].
#[derive(sqlx::FromRow)]
pub(super) struct OpenPlacement {
    pub(super) request_id: String,
    pub(super) requested_count: i64,
    pub(super) machine_id: Option<String>,
    pub(super) instance_type: Option<String>,
}

/// One row of [`HostFactoryRepo::hf_counts`]' request counts.
pub(super) struct RequestCount(
    pub(super) RequestKind,
    pub(super) RequestState,
    pub(super) u64,
);

impl FromRow<'_, AnyRow> for RequestCount {
    fn from_row(r: &AnyRow) -> sqlx::Result<Self> {
        Ok(Self(
            parsed(r, "kind")?,
            parsed(r, "state")?,
            count(r, "n")?,
        ))
    }
}

/// One row of [`HostFactoryRepo::hf_counts`]' machine counts.
pub(super) struct MachineCount(pub(super) MachineState, pub(super) u64);

impl FromRow<'_, AnyRow> for MachineCount {
    fn from_row(r: &AnyRow) -> sqlx::Result<Self> {
        Ok(Self(parsed(r, "state")?, count(r, "n")?))
    }
}
