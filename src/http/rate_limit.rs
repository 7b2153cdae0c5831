//! Per-token rate limits (`server.auth.tokens[].rate_limit`), through `governor`: one GCRA
//! limiter per limited token, built at start. `require_token` asks it once the token is known.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota};

use crate::config::{AuthConfig, RateLimit};

/// A call over its token's limit: the limit, and how long until the next call may pass.
pub struct Limited {
    pub limit: RateLimit,
    pub retry_after: Duration,
}

impl Limited {
    /// `Retry-After` in whole seconds, rounded up and at least 1.
    pub fn retry_after_seconds(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

/// The limiters of the tokens that have a rate limit, by token name.
pub struct RateLimits {
    by_token: HashMap<String, (RateLimit, DefaultDirectRateLimiter)>,
}

impl RateLimits {
    pub fn new(auth: &AuthConfig) -> Self {
        let by_token = auth
            .tokens
            .iter()
            .filter_map(|t| {
                let limit = t.rate_limit?;
                Some((
                    t.name.clone(),
                    (limit, DefaultDirectRateLimiter::direct(quota(limit)?)),
                ))
            })
            .collect();
        Self { by_token }
    }

    /// Counts one call by token `name`; `Err` when it is over the token's limit (the call is
    /// then not counted). Tokens without a limit always pass.
    pub fn check(&self, name: &str) -> Result<(), Limited> {
        let Some((limit, limiter)) = self.by_token.get(name) else {
            return Ok(());
        };
        limiter.check().map_err(|not_until| Limited {
            limit: *limit,
            retry_after: not_until.wait_time_from(limiter.clock().now()),
        })
    }
}

/// The quota of `limit`; `None` outside the bounds the configuration checks.
fn quota(limit: RateLimit) -> Option<Quota> {
    let period = Duration::try_from_secs_f64(1.0 / limit.per_second).ok()?;
    Some(Quota::with_period(period)?.allow_burst(NonZeroU32::new(limit.burst)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TokenConfig, TokenScope};

    fn auth(limit: Option<RateLimit>) -> AuthConfig {
        AuthConfig {
            tokens: vec![TokenConfig {
                name: "ci".into(),
                scope: TokenScope::ReadOnly,
                token: Some("t".into()),
                token_file: None,
                rate_limit: limit,
            }],
            ..AuthConfig::default()
        }
    }

    #[test]
    fn a_burst_passes_then_calls_wait_for_the_rate() {
        let limits = RateLimits::new(&auth(Some(RateLimit {
            per_second: 0.5,
            burst: 2,
        })));
        assert!(limits.check("ci").is_ok());
        assert!(limits.check("ci").is_ok());
        let over = limits.check("ci").unwrap_err();
        assert_eq!(over.limit.burst, 2);
        // One call every 2 s: the next one is at most 2 s away, rounded up to whole seconds.
        assert!(
            over.retry_after <= Duration::from_secs(2),
            "{:?}",
            over.retry_after
        );
        assert!((1..=2).contains(&over.retry_after_seconds()));
        assert!(limits.check("someone-else").is_ok(), "no limit, no refusal");
    }

    #[test]
    fn a_token_without_a_limit_is_never_refused() {
        let limits = RateLimits::new(&auth(None));
        assert!((0..1000).all(|_| limits.check("ci").is_ok()));
    }
}
