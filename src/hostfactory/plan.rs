//! Plan mode (`ohfp plan requestMachines`, `POST /api/v1/requests/plan`): what a
//! requestMachines would do, answered without doing it: which strategy would serve it and
//! why, and what that strategy's provider would send (with the cloud's own dry run where its
//! API has one). Nothing is launched and nothing is stored as a request.

use serde::Serialize;
use utoipa::ToSchema;

use super::HostFactory;
use super::error::HfResult;
use crate::app::commands::{SelectCommand, SelectionView};
use crate::domain::{OperationType, ProviderErrorKind};
use crate::providers::{CreateRequest, LaunchPlan};

/// Why the provider could not plan (or why the creation would fail now).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlanFailure {
    pub kind: ProviderErrorKind,
    pub code: String,
    pub message: String,
}

/// A requestMachines planned, not made.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestPlan {
    pub template_id: String,
    pub machine_count: i64,
    /// How the strategy would be chosen: the template's `providerName`, `active_strategy`, or
    /// the selection policy's decision with every candidate's verdict (unhealthy, open
    /// circuit, excluded ...). Absent when no strategy would take it (see `failure`).
    pub selection: Option<SelectionView>,
    /// Units the template may still get under maxNumber; absent when unlimited.
    pub available: Option<i64>,
    /// What requestMachines would refuse the request for (disabled template, maxNumber).
    pub refusal: Option<String>,
    /// What the chosen strategy's provider would do.
    pub plan: Option<LaunchPlan>,
    /// Why there is no plan: no strategy to serve it, or the provider's own answer.
    pub failure: Option<PlanFailure>,
}

impl HostFactory {
    /// Plans `count` machines of `template_id` (`count` checked by the caller, as for
    /// requestMachines).
    pub async fn plan_machines(&self, template_id: &str, count: i64) -> HfResult<RequestPlan> {
        let t = self.template(template_id)?;
        let available = self.available(&t).await?;
        let refusal = if t.is_disabled() {
            Some(format!("template '{}' is disabled (maxNumber 0)", t.id))
        } else {
            available
                .filter(|room| count > *room)
                .map(|room| format!("only {room} more fit under maxNumber {}", t.max_number))
        };
        let mut answer = RequestPlan {
            template_id: t.id.clone(),
            machine_count: count,
            selection: None,
            available,
            refusal,
            plan: None,
            failure: None,
        };
        let selection = match &t.provider_name {
            Some(name) => Ok(SelectionView {
                selected_strategy: name.clone(),
                selection_policy: None,
                selection_reason: "the template's providerName names it".into(),
                alternatives: Vec::new(),
                candidates: Vec::new(),
            }),
            None => self.engine.select_strategy(SelectCommand {
                operation_type: OperationType::CreateInstances,
                selection_criteria: None,
            }),
        };
        let entry = selection.and_then(|s| {
            let entry = self.engine.entry(&s.selected_strategy)?;
            answer.selection = Some(s);
            Ok(entry)
        });
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                answer.failure = Some(PlanFailure {
                    kind: ProviderErrorKind::Unsupported,
                    code: "NO_STRATEGY".into(),
                    message: e.to_string(),
                });
                return Ok(answer);
            }
        };
        let req = CreateRequest {
            spec: t.launch.clone(),
            units: u32::try_from(count).unwrap_or(u32::MAX),
            request_id: None,
            tags: Vec::new(),
        };
        match entry.provider.plan(&req).await {
            Ok(plan) => answer.plan = Some(plan),
            Err(e) => {
                answer.failure = Some(PlanFailure {
                    kind: e.kind,
                    code: e.code,
                    message: e.message,
                })
            }
        }
        Ok(answer)
    }
}
