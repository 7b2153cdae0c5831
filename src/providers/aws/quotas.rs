//! Quota-aware availability (`quota_refresh_seconds`): the account's EC2 vCPU quotas (Service
//! Quotas, service code `ec2`) less the vCPUs running, per instance class and market, refreshed
//! by a background task and read without a call by `quota_headroom`.
//!
//! Quotas are matched by name, so every family quota AWS lists is used without a table of
//! codes: "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances" (L-1216C47A) covers
//! the families a, c, d, h, i, m, r, t and z on demand; "All Standard (A, C, D, H, I, M, R, T, Z)
//! Spot Instance Requests" (L-34B43A08) the same on spot; "Running On-Demand G and VT
//! instances" g and vt; "All P4, P3 and P2 Spot Instance Requests" p4, p3 and p2; and so on. An
//! instance family takes the quota with the longest matching prefix (`inf2` is Inf, not I).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, InstanceLifecycleType};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::client::AwsClients;
use super::errors::classify;
use crate::app::events::{EventBus, EventKind};
use crate::domain::{LaunchSpec, ProviderErrorKind};

/// Most instance types in one DescribeInstanceTypes call (the API's limit).
const TYPES_BATCH: usize = 100;

/// On demand or spot: each has its own quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Market {
    OnDemand,
    Spot,
}

/// One vCPU quota: its market, the family prefixes it covers, its value.
#[derive(Debug, Clone, PartialEq)]
pub struct VcpuQuota {
    pub name: String,
    pub market: Market,
    pub families: Vec<String>,
    pub vcpus: f64,
}

/// A quota name as (market, family prefixes); `None` for quotas that are not vCPU quotas of an
/// instance class.
pub fn parse_quota_name(name: &str) -> Option<(Market, Vec<String>)> {
    let (market, class) = if let Some(rest) = name.strip_prefix("Running On-Demand ") {
        (Market::OnDemand, rest.strip_suffix(" instances")?)
    } else {
        let rest = name.strip_prefix("All ")?;
        (Market::Spot, rest.strip_suffix(" Spot Instance Requests")?)
    };
    // "Standard (A, C, D, H, I, M, R, T, Z)": the letters; else "G and VT", "P4, P3 and P2".
    let listed = match (class.find('('), class.find(')')) {
        (Some(open), Some(close)) if open < close => &class[open + 1..close],
        _ => class,
    };
    let families: Vec<String> = listed
        .split(',')
        .flat_map(|part| part.split(" and "))
        .map(|f| f.trim().to_ascii_lowercase())
        .filter(|f| !f.is_empty() && !f.contains(' '))
        .collect();
    (!families.is_empty()).then_some((market, families))
}

/// The family of an instance type (`m5` of `m5.large`).
fn family(instance_type: &str) -> &str {
    instance_type.split('.').next().unwrap_or(instance_type)
}

/// What the refresh learnt.
#[derive(Debug, Default)]
pub struct QuotaSnapshot {
    pub quotas: Vec<VcpuQuota>,
    /// vCPUs running (or pending) under each quota, by its index in `quotas`.
    pub used: BTreeMap<usize, f64>,
    /// Default vCPUs by instance type.
    pub vcpus: BTreeMap<String, u32>,
}

impl QuotaSnapshot {
    /// The quota an instance type counts against in a market.
    fn quota_of(&self, market: Market, instance_type: &str) -> Option<usize> {
        let family = family(instance_type);
        self.quotas
            .iter()
            .enumerate()
            .filter(|(_, q)| q.market == market)
            .filter_map(|(n, q)| {
                let longest = q
                    .families
                    .iter()
                    .filter(|f| family.starts_with(f.as_str()))
                    .map(String::len)
                    .max()?;
                Some((longest, n))
            })
            .max()
            .map(|(_, n)| n)
    }

    /// Machines of `spec` the quotas still allow: the most any of its instance types allows
    /// (a creation may use any); `None` when one of them is not covered or not known yet.
    pub fn headroom(&self, spec: &LaunchSpec) -> Option<i64> {
        let market = if spec.price_type.is_spot() {
            Market::Spot
        } else {
            Market::OnDemand
        };
        let mut best: Option<i64> = None;
        for t in &spec.instance_types {
            let quota = self.quota_of(market, &t.instance_type)?;
            let per_machine = f64::from(*self.vcpus.get(&t.instance_type)?);
            let left = self.quotas[quota].vcpus - self.used.get(&quota).copied().unwrap_or(0.0);
            let machines = (left.max(0.0) / per_machine.max(1.0)).floor() as i64;
            best = Some(best.map_or(machines, |b| b.max(machines)));
        }
        best
    }
}

/// The snapshot and the instance types asked about, shared with the refresh task.
#[derive(Default)]
pub struct QuotaBook {
    snapshot: Mutex<Option<Arc<QuotaSnapshot>>>,
    wanted: Mutex<BTreeSet<String>>,
    /// Wakes the refresh when a type it has no vCPU count for is asked about.
    wake: Notify,
}

impl QuotaBook {
    pub fn headroom(&self, spec: &LaunchSpec) -> Option<i64> {
        let snapshot = self.snapshot.lock().expect("quota lock").clone();
        let unknown: Vec<String> = spec
            .instance_types
            .iter()
            .map(|t| t.instance_type.clone())
            .filter(|t| !snapshot.as_ref().is_some_and(|s| s.vcpus.contains_key(t)))
            .collect();
        if !unknown.is_empty() {
            let mut wanted = self.wanted.lock().expect("quota lock");
            let before = wanted.len();
            wanted.extend(unknown);
            if wanted.len() > before {
                self.wake.notify_one();
            }
        }
        snapshot?.headroom(spec)
    }
}

/// The refresh task of one strategy (`run`); it ends when `stop` is cancelled.
pub struct QuotaRefresh {
    pub strategy: String,
    pub clients: AwsClients,
    pub book: Arc<QuotaBook>,
    /// Where failures are told.
    pub events: Arc<EventBus>,
}

impl QuotaRefresh {
    /// Refreshes at once, then every `every` (sooner when a new instance type is asked
    /// about). A failure keeps the last snapshot, is logged and evented, and is retried at the
    /// next turn.
    pub async fn run(self, every: Duration, stop: CancellationToken) {
        loop {
            match self.refresh().await {
                Ok(snapshot) => {
                    *self.book.snapshot.lock().expect("quota lock") = Some(Arc::new(snapshot));
                }
                Err(e) => {
                    tracing::warn!(strategy = %self.strategy, error = %e, "EC2 quotas not refreshed");
                    self.events.emit(
                        EventKind::QuotaRefreshFailed,
                        Some(&self.strategy),
                        json!({"error": e}),
                    );
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
                _ = self.book.wake.notified() => {}
            }
        }
    }

    async fn refresh(&self) -> Result<QuotaSnapshot, String> {
        let quotas = self.vcpu_quotas().await?;
        let running = self.running().await?;
        let mut types: BTreeSet<String> = self.book.wanted.lock().expect("quota lock").clone();
        types.extend(running.iter().map(|(t, _)| t.clone()));
        let mut snapshot = QuotaSnapshot {
            quotas,
            vcpus: self.vcpus_of(&types).await?,
            ..QuotaSnapshot::default()
        };
        for (instance_type, market) in running {
            let (Some(quota), Some(vcpus)) = (
                snapshot.quota_of(market, &instance_type),
                snapshot.vcpus.get(&instance_type),
            ) else {
                continue;
            };
            *snapshot.used.entry(quota).or_default() += f64::from(*vcpus);
        }
        Ok(snapshot)
    }

    async fn vcpu_quotas(&self) -> Result<Vec<VcpuQuota>, String> {
        let mut pages = self
            .clients
            .quotas
            .list_service_quotas()
            .service_code("ec2")
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("ListServiceQuotas", e).to_string())?;
            for q in page.quotas() {
                let (Some(name), Some(vcpus)) = (q.quota_name(), q.value()) else {
                    continue;
                };
                if let Some((market, families)) = parse_quota_name(name) {
                    out.push(VcpuQuota {
                        name: name.to_string(),
                        market,
                        families,
                        vcpus,
                    });
                }
            }
        }
        Ok(out)
    }

    /// (instance type, market) of every pending or running instance of the region.
    async fn running(&self) -> Result<Vec<(String, Market)>, String> {
        let mut pages = self
            .clients
            .ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
                    .build(),
            )
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("DescribeInstances", e).to_string())?;
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                let Some(t) = i.instance_type() else { continue };
                let market = if i.instance_lifecycle() == Some(&InstanceLifecycleType::Spot) {
                    Market::Spot
                } else {
                    Market::OnDemand
                };
                out.push((t.as_str().to_string(), market));
            }
        }
        Ok(out)
    }

    async fn vcpus_of(&self, types: &BTreeSet<String>) -> Result<BTreeMap<String, u32>, String> {
        let mut out = BTreeMap::new();
        let types: Vec<&String> = types.iter().collect();
        for chunk in types.chunks(TYPES_BATCH) {
            let answer = self
                .clients
                .ec2
                .describe_instance_types()
                .set_instance_types(Some(chunk.iter().map(|t| t.as_str().into()).collect()))
                .send()
                .await;
            let answer = match answer {
                Ok(a) => a,
                // An unknown type fails the whole call: it stays without a count (no cap).
                Err(e) => match classify("DescribeInstanceTypes", e) {
                    // An unknown type fails the whole call: these stay without a count (no cap).
                    e if e.kind == ProviderErrorKind::Validation => continue,
                    e => return Err(e.to_string()),
                },
            };
            for t in answer.instance_types() {
                let (Some(name), Some(vcpus)) = (
                    t.instance_type(),
                    t.v_cpu_info().and_then(|v| v.default_v_cpus()),
                ) else {
                    continue;
                };
                out.insert(name.as_str().to_string(), vcpus.max(0) as u32);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PriceType;

    #[test]
    fn quota_names_give_their_market_and_families() {
        let standard = "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances";
        let (market, families) = parse_quota_name(standard).unwrap();
        assert_eq!(market, Market::OnDemand);
        assert_eq!(families, ["a", "c", "d", "h", "i", "m", "r", "t", "z"]);
        assert_eq!(
            parse_quota_name("All P4, P3 and P2 Spot Instance Requests"),
            Some((Market::Spot, vec!["p4".into(), "p3".into(), "p2".into()]))
        );
        assert_eq!(
            parse_quota_name("Running On-Demand G and VT instances")
                .unwrap()
                .1,
            ["g", "vt"]
        );
        assert_eq!(parse_quota_name("Running Dedicated c5 Hosts"), None);
        assert_eq!(parse_quota_name("EC2-VPC Elastic IPs"), None);
    }

    #[test]
    fn headroom_is_the_quota_less_what_runs_in_machines_of_the_best_type() {
        let quota = |name: &str, vcpus: f64| {
            let (market, families) = parse_quota_name(name).unwrap();
            VcpuQuota {
                name: name.into(),
                market,
                families,
                vcpus,
            }
        };
        let snapshot = QuotaSnapshot {
            quotas: vec![
                quota(
                    "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
                    64.0,
                ),
                quota("Running On-Demand Inf instances", 0.0),
            ],
            used: BTreeMap::from([(0, 40.0)]),
            vcpus: BTreeMap::from([
                ("m5.2xlarge".into(), 8),
                ("m5.large".into(), 2),
                ("inf2.xlarge".into(), 4),
            ]),
        };
        let spec = |types: &[&str], price_type| LaunchSpec {
            price_type,
            ..LaunchSpec::of_types(types)
        };
        // 24 vCPUs left: 3 of m5.2xlarge, 12 of m5.large; the template may use either.
        assert_eq!(
            snapshot.headroom(&spec(&["m5.2xlarge"], PriceType::OnDemand)),
            Some(3)
        );
        assert_eq!(
            snapshot.headroom(&spec(&["m5.2xlarge", "m5.large"], PriceType::OnDemand)),
            Some(12)
        );
        // inf2 is Inf (the longest prefix), not Standard's I.
        assert_eq!(
            snapshot.headroom(&spec(&["inf2.xlarge"], PriceType::OnDemand)),
            Some(0)
        );
        // No spot quota listed, or a type of unknown size: no cap.
        assert_eq!(
            snapshot.headroom(&spec(&["m5.large"], PriceType::Spot)),
            None
        );
        assert_eq!(
            snapshot.headroom(&spec(&["m6i.large"], PriceType::OnDemand)),
            None
        );
    }
}
