//! The HostFactory status rules (contract §2.3) as pure functions.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::MachineState;

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
pub fn acquire_result(state: MachineState, failed: bool, delivered: bool) -> MachineResult {
    use MachineState as S;
    if failed {
        return MachineResult::Fail;
    }
    match state {
        S::Running => MachineResult::Succeed,
        _ if delivered => MachineResult::Succeed,
        S::Pending => MachineResult::Executing,
        // Gone or going before it ever ran.
        S::ShuttingDown | S::Terminated | S::Stopping | S::Stopped => MachineResult::Fail,
    }
}

/// A machine of a return request: done once terminated or stopped, and held open until then.
pub fn return_result(state: MachineState) -> MachineResult {
    match state {
        MachineState::Terminated | MachineState::Stopped => MachineResult::Succeed,
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

    use MachineState as S;

    const STATES: [MachineState; 6] = [
        S::Pending,
        S::Running,
        S::ShuttingDown,
        S::Terminated,
        S::Stopping,
        S::Stopped,
    ];

    #[test]
    fn acquire_and_return_mappings() {
        assert_eq!(
            acquire_result(S::Pending, false, false),
            MachineResult::Executing
        );
        assert_eq!(
            acquire_result(S::Running, false, false),
            MachineResult::Succeed
        );
        assert_eq!(
            acquire_result(S::Terminated, false, false),
            MachineResult::Fail
        );
        assert_eq!(
            acquire_result(S::Terminated, false, true),
            MachineResult::Succeed
        );
        assert_eq!(acquire_result(S::Running, true, true), MachineResult::Fail);
        assert_eq!(return_result(S::ShuttingDown), MachineResult::Executing);
        assert_eq!(return_result(S::Terminated), MachineResult::Succeed);
        assert_eq!(return_result(S::Stopped), MachineResult::Succeed);
        assert_eq!(return_result(S::Running), MachineResult::Executing);
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
        fn a_return_is_never_failed_and_done_only_when_gone(i in 0usize..6) {
            let r = return_result(STATES[i]);
            prop_assert!(r != MachineResult::Fail);
            prop_assert_eq!(r == MachineResult::Succeed, matches!(STATES[i], S::Terminated | S::Stopped));
        }

        #[test]
        fn a_delivered_machine_never_fails_unless_marked(i in 0usize..6) {
            prop_assert_eq!(acquire_result(STATES[i], false, true), MachineResult::Succeed);
        }
    }
}
