//! Decisions of a `fallback` strategy as pure logic: its modes and the retry schedule.

use crate::domain::ProviderErrorKind;
use crate::domain::named_enum;

named_enum! {
    pub enum FallbackMode ("fallback mode") {
        /// The primary once; on an error that allows failover, the fallbacks in order.
        Immediate => "IMMEDIATE",
        /// Like IMMEDIATE, but the fallback keeps a circuit breaker of its own over the
        /// primary and skips it while that circuit is open.
        CircuitBreaker => "CIRCUIT_BREAKER",
        /// The primary with retries on retryable errors (exponential backoff with jitter),
        /// then the fallbacks.
        RetryThenFallback => "RETRY_THEN_FALLBACK",
        /// The primary only while its cached health is not unhealthy and its circuit not open.
        HealthBased => "HEALTH_BASED",
    }
}

/// No single backoff pause is longer than this.
pub const MAX_BACKOFF_SECONDS: f64 = 30.0;

/// Pause before retry number `retry` (0 for the first retry): `base × 2^retry`, capped at
/// [`MAX_BACKOFF_SECONDS`], then scaled by a jitter factor from 0.5 to 1 (`jitter` in 0..1),
/// so that callers failing together do not retry together.
pub fn backoff_seconds(base: f64, retry: u32, jitter: f64) -> f64 {
    let exp = base * 2f64.powi(retry.min(30) as i32);
    exp.min(MAX_BACKOFF_SECONDS) * (0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// Whether the primary gets another try under RETRY_THEN_FALLBACK after `retries_done`
/// retries failed with `kind`.
pub fn should_retry(kind: ProviderErrorKind, retries_done: u32, max_retries: u32) -> bool {
    kind.is_retryable() && retries_done < max_retries
}

/// How many consecutive failures of the primary a CIRCUIT_BREAKER fallback sees before the
/// primary is skipped, given its own `threshold` and the primary's own breaker (`None` when
/// that breaker is disabled). Both breakers count the same failures and either one open skips
/// the primary, so the lower threshold wins; answers it and whether the primary's own breaker
/// is the one that limits.
pub fn effective_threshold(threshold: u32, primary_threshold: Option<u32>) -> (u32, bool) {
    match primary_threshold {
        Some(p) if p < threshold => (p, true),
        _ => (threshold, false),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_and_is_capped() {
        assert_eq!(backoff_seconds(1.0, 0, 1.0), 1.0);
        assert_eq!(backoff_seconds(1.0, 3, 1.0), 8.0);
        assert_eq!(backoff_seconds(1.0, 3, 0.0), 4.0);
        assert_eq!(backoff_seconds(1.0, 10, 1.0), MAX_BACKOFF_SECONDS);
        assert_eq!(backoff_seconds(0.0, 5, 0.7), 0.0);
    }

    #[test]
    fn only_retryable_errors_are_retried_and_only_max_retries_times() {
        assert!(should_retry(ProviderErrorKind::Throttling, 0, 2));
        assert!(should_retry(ProviderErrorKind::Transient, 1, 2));
        assert!(!should_retry(ProviderErrorKind::Transient, 2, 2));
        for kind in [
            ProviderErrorKind::Auth,
            ProviderErrorKind::Validation,
            ProviderErrorKind::Capacity,
            ProviderErrorKind::CircuitOpen,
        ] {
            assert!(!should_retry(kind, 0, 5), "{kind:?}");
        }
    }

    #[test]
    fn the_lower_of_the_two_thresholds_skips_the_primary() {
        assert_eq!(effective_threshold(10, Some(5)), (5, true));
        assert_eq!(effective_threshold(10, Some(10)), (10, false));
        assert_eq!(effective_threshold(3, Some(5)), (3, false));
        assert_eq!(effective_threshold(10, None), (10, false));
    }

    #[test]
    fn mode_names_are_accepted_in_any_case() {
        assert_eq!("circuit_breaker".parse(), Ok(FallbackMode::CircuitBreaker));
        assert_eq!(
            "Retry_Then_Fallback".parse(),
            Ok(FallbackMode::RetryThenFallback)
        );
    }

    proptest! {
        #[test]
        fn backoff_stays_within_half_and_all_of_the_capped_exponential(
            base in 0.0f64..10.0, retry in 0u32..64, jitter in 0.0f64..=1.0,
        ) {
            let d = backoff_seconds(base, retry, jitter);
            let cap = (base * 2f64.powi(retry.min(30) as i32)).min(MAX_BACKOFF_SECONDS);
            prop_assert!(d >= cap * 0.5 - 1e-12 && d <= cap + 1e-12);
            prop_assert!(backoff_seconds(base, retry + 1, jitter) >= d - 1e-12);
        }
    }
}
