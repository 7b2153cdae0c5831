//! Raise once, clear once: an alert is raised when its condition has held at every evaluation
//! for `for_ms`, and cleared when it has not held at every evaluation for `clear_ms`. Pure.

use crate::domain::EpochMillis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Raise,
    Clear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracker {
    /// Not raised; the condition holds without a break since `holds_since`.
    Clear { holds_since: Option<EpochMillis> },
    /// Raised; the condition has not held since `quiet_since`.
    Raised { quiet_since: Option<EpochMillis> },
}

impl Tracker {
    pub const CLEAR: Tracker = Tracker::Clear { holds_since: None };
    pub const RAISED: Tracker = Tracker::Raised { quiet_since: None };

    /// One evaluation at `now`.
    pub fn step(
        &mut self,
        holds: bool,
        now: EpochMillis,
        for_ms: i64,
        clear_ms: i64,
    ) -> Option<Change> {
        match *self {
            Tracker::Clear { holds_since } => {
                let since = holds.then(|| holds_since.unwrap_or(now));
                match since {
                    Some(t) if now - t >= for_ms => {
                        *self = Tracker::RAISED;
                        Some(Change::Raise)
                    }
                    _ => {
                        *self = Tracker::Clear { holds_since: since };
                        None
                    }
                }
            }
            Tracker::Raised { quiet_since } => {
                let since = (!holds).then(|| quiet_since.unwrap_or(now));
                match since {
                    Some(t) if now - t >= clear_ms => {
                        *self = Tracker::CLEAR;
                        Some(Change::Clear)
                    }
                    _ => {
                        *self = Tracker::Raised { quiet_since: since };
                        None
                    }
                }
            }
        }
    }

    pub fn is_raised(&self) -> bool {
        matches!(self, Tracker::Raised { .. })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Evaluations: (ms since the previous one, whether the condition held).
    fn run(steps: &[(i64, bool)], for_ms: i64, clear_ms: i64) -> Vec<(usize, Change)> {
        let mut tracker = Tracker::CLEAR;
        let mut now = 0;
        let mut changes = Vec::new();
        for (i, (gap, holds)) in steps.iter().enumerate() {
            now += gap;
            if let Some(c) = tracker.step(*holds, now, for_ms, clear_ms) {
                changes.push((i, c));
            }
        }
        changes
    }

    #[test]
    fn a_flapping_value_raises_once_and_clears_once() {
        // Holds for 3 s (raised at 2 s with for 2 s), flaps for a while, then quiet for 5 s.
        let mut steps = vec![(1000, true); 3];
        steps.extend([(1000, false), (1000, true), (1000, false), (1000, true)]);
        steps.extend(vec![(1000, false); 6]);
        let changes = run(&steps, 2000, 3000);
        assert_eq!(changes, [(2, Change::Raise), (10, Change::Clear)]);
    }

    proptest! {
        #[test]
        fn changes_alternate_and_each_follows_an_unbroken_run(
            steps in prop::collection::vec((0i64..3000, any::<bool>()), 0..200),
            for_ms in 0i64..5000,
            clear_ms in 0i64..5000,
        ) {
            let changes = run(&steps, for_ms, clear_ms);
            for (k, (_, c)) in changes.iter().enumerate() {
                let want = if k % 2 == 0 { Change::Raise } else { Change::Clear };
                prop_assert_eq!(*c, want, "raise, clear, raise, …");
            }
            // A raise at step i: the condition held at i and at every step back to one at
            // least `for_ms` earlier (after the last change); likewise for a clear.
            let times: Vec<i64> = steps.iter().scan(0, |t, (gap, _)| { *t += gap; Some(*t) }).collect();
            let mut last_change = None;
            for (i, c) in &changes {
                let (wanted, span) = match c { Change::Raise => (true, for_ms), Change::Clear => (false, clear_ms) };
                let run_start = (0..=*i)
                    .rev()
                    .take_while(|j| steps[*j].1 == wanted && last_change.is_none_or(|l| *j > l))
                    .last()
                    .expect("the condition was as wanted at the change");
                prop_assert!(times[*i] - times[run_start] >= span);
                last_change = Some(*i);
            }
        }
    }
}
