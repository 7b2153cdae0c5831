//! Capacity pools: an instance type in a subnet. A pool that answers "no capacity" (or "type
//! not supported here", or the spot limit) is parked for the strategy's cooldown and skipped,
//! and the rest of the order moves to the template's next pool, so that one short pool does
//! not fail a whole request over to another strategy (AWS ParallelCluster does the same).
//! Parked pools live in memory: a restart forgets them, which at worst costs one failed call
//! per pool.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{LaunchSpec, rfc3339};

/// Error codes that mean "not this pool, maybe another": no capacity for the type in the
/// zone, the type not offered in the zone (`Unsupported`), the account's spot instance limit
/// (per type family and zone for older accounts), and a subnet out of addresses. Account-wide
/// limits (vCPU, instance count) are not among them: no other pool helps.
pub const POOL_FAULTS: [&str; 4] = [
    "InsufficientInstanceCapacity",
    "Unsupported",
    "MaxSpotInstanceCountExceeded",
    "InsufficientFreeAddressesInSubnet",
];

/// Whether an error of `code` parks the pool and moves the order on.
pub fn is_pool_fault(code: &str) -> bool {
    POOL_FAULTS.contains(&code)
}

/// One pool: an instance type in a subnet (in the default subnet when the spec names none).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
pub struct PoolKey {
    pub instance_type: String,
    pub subnet: Option<String>,
}

impl std::fmt::Display for PoolKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let subnet = self.subnet.as_deref().unwrap_or("default subnet");
        write!(f, "{} in {subnet}", self.instance_type)
    }
}

/// The pools of a spec in the order they are tried: instance types by `vmTypesPriority`
/// (lower first; types without a priority after those with one, in the template's order),
/// each in every subnet in the template's order. A type's subnets come before the next type:
/// the template's type preference outranks its subnet order.
pub fn failover_order(spec: &LaunchSpec) -> Vec<PoolKey> {
    let mut types: Vec<(usize, &str)> = spec
        .instance_types
        .iter()
        .map(|t| t.instance_type.as_str())
        .enumerate()
        .collect();
    // Stable: equal priorities keep the template's order.
    types.sort_by_key(|(i, t)| {
        (
            spec.fleet.priorities.get(*t).copied().unwrap_or(u32::MAX),
            *i,
        )
    });
    let subnets: Vec<Option<String>> = if spec.subnets.is_empty() {
        vec![None]
    } else {
        spec.subnets.iter().cloned().map(Some).collect()
    };
    types
        .into_iter()
        .flat_map(|(_, t)| {
            subnets.iter().map(move |subnet| PoolKey {
                instance_type: t.to_string(),
                subnet: subnet.clone(),
            })
        })
        .collect()
}

/// A parked pool as listed.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ParkedPool {
    #[serde(flatten)]
    pub pool: PoolKey,
    /// The error code that parked it.
    pub code: String,
    /// When it is tried again (RFC 3339).
    pub until: String,
    /// How many times this pool has been parked since the service started.
    pub times_parked: u64,
}

/// The parked pools of one strategy and its counters since the service started.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ParkedPools {
    pub cooldown_seconds: u32,
    pub pools: Vec<ParkedPool>,
    /// Pools parked since the service started (a pool parked twice counts twice).
    pub parked_total: u64,
    /// Creations that moved on from a failed pool to another one.
    pub failovers_total: u64,
}

#[derive(Debug)]
struct Parking {
    until_ms: i64,
    code: String,
    times: u64,
}

/// Which pools are parked, until when. Every method takes the time (epoch milliseconds), so
/// that the cooldown is tested without waiting.
#[derive(Debug)]
pub struct PoolParking {
    cooldown_ms: i64,
    parked: Mutex<BTreeMap<PoolKey, Parking>>,
    parked_total: AtomicU64,
    failovers_total: AtomicU64,
}

impl PoolParking {
    pub fn new(cooldown_seconds: u32) -> Self {
        Self {
            cooldown_ms: i64::from(cooldown_seconds) * 1000,
            parked: Mutex::new(BTreeMap::new()),
            parked_total: AtomicU64::new(0),
            failovers_total: AtomicU64::new(0),
        }
    }

    fn parked(&self) -> std::sync::MutexGuard<'_, BTreeMap<PoolKey, Parking>> {
        // A panic elsewhere while holding the lock leaves a map that is still consistent.
        self.parked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parks `pool` until `now + cooldown`; answers when it is tried again, or `None` when the
    /// cooldown is 0 (parking off: the order still moves on).
    pub fn park(&self, pool: &PoolKey, code: &str, now_ms: i64) -> Option<i64> {
        if self.cooldown_ms == 0 {
            return None;
        }
        let until_ms = now_ms + self.cooldown_ms;
        let mut parked = self.parked();
        let entry = parked.entry(pool.clone()).or_insert(Parking {
            until_ms,
            code: String::new(),
            times: 0,
        });
        entry.until_ms = until_ms;
        entry.code = code.to_string();
        entry.times += 1;
        self.parked_total.fetch_add(1, Ordering::Relaxed);
        Some(until_ms)
    }

    pub fn is_parked(&self, pool: &PoolKey, now_ms: i64) -> bool {
        self.parked().get(pool).is_some_and(|p| p.until_ms > now_ms)
    }

    pub fn count_failover(&self) {
        self.failovers_total.fetch_add(1, Ordering::Relaxed);
    }

    /// The pools parked at `now`, with the counters.
    pub fn list(&self, now_ms: i64) -> ParkedPools {
        let pools = self
            .parked()
            .iter()
            .filter(|(_, p)| p.until_ms > now_ms)
            .map(|(pool, p)| ParkedPool {
                pool: pool.clone(),
                code: p.code.clone(),
                until: rfc3339(p.until_ms),
                times_parked: p.times,
            })
            .collect();
        ParkedPools {
            cooldown_seconds: (self.cooldown_ms / 1000) as u32,
            pools,
            parked_total: self.parked_total.load(Ordering::Relaxed),
            failovers_total: self.failovers_total.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(t: &str, subnet: Option<&str>) -> PoolKey {
        PoolKey {
            instance_type: t.into(),
            subnet: subnet.map(str::to_string),
        }
    }

    fn spec(types: &[&str], subnets: &[&str]) -> LaunchSpec {
        LaunchSpec {
            subnets: subnets.iter().map(|s| s.to_string()).collect(),
            template_id: "t".into(),
            ..LaunchSpec::of_types(types)
        }
    }

    #[test]
    fn pools_follow_the_priorities_then_the_template_and_a_type_keeps_its_subnets_together() {
        let plain = spec(&["a", "b"], &["s1", "s2"]);
        assert_eq!(
            failover_order(&plain),
            [
                pool("a", Some("s1")),
                pool("a", Some("s2")),
                pool("b", Some("s1")),
                pool("b", Some("s2"))
            ]
        );
        let mut ranked = spec(&["a", "b", "c", "d"], &[]);
        ranked.fleet.priorities.insert("c".into(), 1);
        ranked.fleet.priorities.insert("b".into(), 2);
        let order: Vec<String> = failover_order(&ranked)
            .into_iter()
            .map(|p| {
                assert_eq!(p.subnet, None);
                p.instance_type
            })
            .collect();
        assert_eq!(order, ["c", "b", "a", "d"]);
    }

    #[test]
    fn a_parked_pool_comes_back_after_the_cooldown_and_is_counted() {
        let parking = PoolParking::new(600);
        let a = pool("a", Some("s1"));
        assert!(!parking.is_parked(&a, 0));
        assert_eq!(
            parking.park(&a, "InsufficientInstanceCapacity", 1_000),
            Some(601_000)
        );
        assert!(parking.is_parked(&a, 600_999));
        assert!(!parking.is_parked(&pool("a", Some("s2")), 600_999));
        assert!(!parking.is_parked(&a, 601_000));
        let listed = parking.list(2_000);
        assert_eq!(listed.pools.len(), 1);
        assert_eq!(listed.pools[0].code, "InsufficientInstanceCapacity");
        assert_eq!(listed.parked_total, 1);
        assert!(parking.list(601_000).pools.is_empty());
        parking.park(&a, "Unsupported", 700_000);
        parking.count_failover();
        let listed = parking.list(700_001);
        assert_eq!((listed.pools[0].times_parked, listed.parked_total), (2, 2));
        assert_eq!(listed.failovers_total, 1);
        assert_eq!(listed.pools[0].code, "Unsupported");
    }

    #[test]
    fn a_zero_cooldown_parks_nothing() {
        let parking = PoolParking::new(0);
        let a = pool("a", None);
        assert_eq!(parking.park(&a, "InsufficientInstanceCapacity", 0), None);
        assert!(!parking.is_parked(&a, 0));
        assert_eq!(parking.list(0).parked_total, 0);
    }

    #[test]
    fn only_pool_faults_move_on() {
        for code in POOL_FAULTS {
            assert!(is_pool_fault(code));
        }
        for code in [
            "VcpuLimitExceeded",
            "InvalidAMIID.NotFound",
            "InternalError",
        ] {
            assert!(!is_pool_fault(code), "{code}");
        }
    }
}
