//! The HostFactory status rules (contract §2.3) as pure functions.

use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MachineResult {
    Executing,
    Succeed,
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Running,
    Complete,
    CompleteWithError,
}

/// A machine of an acquire request. `delivered`: it was seen running at least once, so
/// HostFactory has it, whatever happens to it later (a return, a reclaim: other calls say so).
pub fn acquire_result(state: &str, failed: bool, delivered: bool) -> MachineResult {
    if failed {
        return MachineResult::Fail;
    }
    match state {
        "running" => MachineResult::Succeed,
        _ if delivered => MachineResult::Succeed,
        "pending" => MachineResult::Executing,
        // Gone or going before it ever ran.
        "shutting-down" | "terminated" | "stopping" | "stopped" => MachineResult::Fail,
        _ => MachineResult::Executing,
    }
}

/// A machine of a return request: done once terminated or stopped, and held open until then.
pub fn return_result(state: &str) -> MachineResult {
    match state {
        "terminated" | "stopped" => MachineResult::Succeed,
        _ => MachineResult::Executing,
    }
}

/// `running` while any machine is executing or more are still expected; then
/// `complete_with_error` if anything failed or fell short; else `complete`.
pub fn request_status(
    results: &[MachineResult],
    more_expected: bool,
    shortfall: bool,
) -> RequestStatus {
    if more_expected || results.contains(&MachineResult::Executing) {
        RequestStatus::Running
    } else if shortfall || results.contains(&MachineResult::Fail) {
        RequestStatus::CompleteWithError
    } else {
        RequestStatus::Complete
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const STATES: [&str; 7] = [
        "pending",
        "running",
        "shutting-down",
        "terminated",
        "stopping",
        "stopped",
        "odd",
    ];

    #[test]
    fn acquire_and_return_mappings() {
        assert_eq!(
            acquire_result("pending", false, false),
            MachineResult::Executing
        );
        assert_eq!(
            acquire_result("running", false, false),
            MachineResult::Succeed
        );
        assert_eq!(
            acquire_result("terminated", false, false),
            MachineResult::Fail
        );
        assert_eq!(
            acquire_result("terminated", false, true),
            MachineResult::Succeed
        );
        assert_eq!(acquire_result("running", true, true), MachineResult::Fail);
        assert_eq!(return_result("shutting-down"), MachineResult::Executing);
        assert_eq!(return_result("terminated"), MachineResult::Succeed);
        assert_eq!(return_result("stopped"), MachineResult::Succeed);
        assert_eq!(return_result("running"), MachineResult::Executing);
    }

    fn result() -> impl Strategy<Value = MachineResult> {
        prop_oneof![
            Just(MachineResult::Executing),
            Just(MachineResult::Succeed),
            Just(MachineResult::Fail)
        ]
    }

    proptest! {
        #[test]
        fn request_status_rules(results in prop::collection::vec(result(), 0..12), more in any::<bool>(), short in any::<bool>()) {
            let status = request_status(&results, more, short);
            let executing = results.contains(&MachineResult::Executing);
            let failed = results.contains(&MachineResult::Fail);
            prop_assert_eq!(status == RequestStatus::Running, executing || more);
            if status == RequestStatus::Complete {
                prop_assert!(!failed && !short && !executing);
            }
            if !executing && !more && (failed || short) {
                prop_assert_eq!(status, RequestStatus::CompleteWithError);
            }
        }

        #[test]
        fn a_return_is_never_failed_and_done_only_when_gone(i in 0usize..7) {
            let r = return_result(STATES[i]);
            prop_assert!(r != MachineResult::Fail);
            prop_assert_eq!(r == MachineResult::Succeed, matches!(STATES[i], "terminated" | "stopped"));
        }

        #[test]
        fn a_delivered_machine_never_fails_unless_marked(i in 0usize..7) {
            prop_assert_eq!(acquire_result(STATES[i], false, true), MachineResult::Succeed);
        }
    }
}
