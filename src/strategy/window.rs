use std::collections::VecDeque;

use serde::Serialize;
use utoipa::ToSchema;

/// How many recent outcomes the selection policies look at.
pub const WINDOW_SIZE: usize = 100;

/// Summary of a strategy's recent calls, as the policies see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct RecentStats {
    /// Operations the provider answered (caller errors and circuit rejections are not here).
    pub samples: u64,
    /// Percent, 0–100; null without samples.
    pub success_rate: Option<f64>,
    /// Null without samples.
    pub mean_response_ms: Option<f64>,
}

/// The last [`WINDOW_SIZE`] outcomes of one strategy.
#[derive(Debug, Clone, Default)]
pub struct OutcomeWindow {
    outcomes: VecDeque<(bool, f64)>,
}

impl OutcomeWindow {
    pub fn record(&mut self, success: bool, response_ms: f64) {
        if self.outcomes.len() == WINDOW_SIZE {
            self.outcomes.pop_front();
        }
        self.outcomes.push_back((success, response_ms));
    }

    pub fn stats(&self) -> RecentStats {
        let n = self.outcomes.len();
        if n == 0 {
            return RecentStats::default();
        }
        let ok = self.outcomes.iter().filter(|(s, _)| *s).count();
        let total_ms: f64 = self.outcomes.iter().map(|(_, ms)| ms).sum();
        RecentStats {
            samples: n as u64,
            success_rate: Some(ok as f64 * 100.0 / n as f64),
            mean_response_ms: Some(total_ms / n as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_keeps_only_recent_outcomes() {
        let mut w = OutcomeWindow::default();
        assert_eq!(w.stats(), RecentStats::default());
        assert_eq!(w.stats().success_rate, None, "null, not 0, without samples");
        for _ in 0..WINDOW_SIZE {
            w.record(false, 10.0);
        }
        for _ in 0..WINDOW_SIZE / 2 {
            w.record(true, 30.0);
        }
        let s = w.stats();
        assert_eq!(s.samples, WINDOW_SIZE as u64);
        assert_eq!(s.success_rate, Some(50.0));
        assert_eq!(s.mean_response_ms, Some(20.0));
    }
}
