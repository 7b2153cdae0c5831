//! An in-memory copy of HostFactory requests and their machines, as getRequestStatus reads
//! them, so that a poll does not read SQLite for requests nothing has changed since.
//!
//! The store is the only writer of `hf_requests` and `hf_machines`, and every write of its
//! evicts what it touched *after* committing: a request by its id, a machine by the cached
//! requests that hold it. A reader notes the generation before reading SQLite and keeps what it
//! read only if nothing was evicted meanwhile, so an answer read before a write is never kept
//! after it. The copy is therefore never older than the database; it holds for one process
//! writing its own database, which is how the SQLite store runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::hostfactory::model::{HfMachine, HfRequest};

/// A request with the machines getRequestStatus reports for it: an acquire request's own
/// machines, or the machines a return request gives back, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSnapshot {
    pub request: HfRequest,
    pub machines: Vec<HfMachine>,
}

impl RequestSnapshot {
    /// The snapshots of `requests` from `machines` (any machines; those of no request here
    /// are skipped), each request's machines in the order given.
    pub fn group(requests: Vec<HfRequest>, machines: Vec<HfMachine>) -> Vec<RequestSnapshot> {
        let mut of: HashMap<&str, Vec<HfMachine>> = requests
            .iter()
            .map(|r| (r.request_id.as_str(), Vec::new()))
            .collect();
        for m in machines {
            if let Some(ret) = m.return_request_id.as_deref()
                && let Some(held) = of.get_mut(ret)
            {
                held.push(m.clone());
            }
            if let Some(held) = of.get_mut(m.request_id.as_str()) {
                held.push(m);
            }
        }
        let mut of: HashMap<String, Vec<HfMachine>> = of
            .into_iter()
            .map(|(id, held)| (id.to_string(), held))
            .collect();
        requests
            .into_iter()
            .map(|request| {
                let machines = of.remove(&request.request_id).unwrap_or_default();
                RequestSnapshot { request, machines }
            })
            .collect()
    }
}

/// Machines held in the copy at most; a fill that would pass it empties the copy first, so a
/// site with very large requests reads SQLite more often rather than holding them all.
const MAX_CACHED_MACHINES: usize = 100_000;

pub(super) struct RequestCache {
    inner: Mutex<Inner>,
    /// Off when other processes write the database too (replicas on PostgreSQL): the
    /// evictions that keep the copy true come only from this process's own writes.
    enabled: bool,
}

impl Default for RequestCache {
    fn default() -> Self {
        Self::new(true)
    }
}

#[derive(Default)]
struct Inner {
    /// Bumped by every eviction: a fill read before it is not kept.
    generation: u64,
    requests: HashMap<String, Arc<RequestSnapshot>>,
    /// The cached requests holding each machine (its acquire request, its return request).
    holders: HashMap<String, Vec<String>>,
    machines: usize,
}

impl std::fmt::Debug for RequestCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("RequestCache")
            .field("requests", &inner.requests.len())
            .field("machines", &inner.machines)
            .finish()
    }
}

impl RequestCache {
    pub(super) fn new(enabled: bool) -> Self {
        Self {
            inner: Mutex::default(),
            enabled,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves maps that are still consistent enough to
        // empty: clear them rather than poison every later poll.
        self.inner.lock().unwrap_or_else(|poisoned| {
            let mut inner = poisoned.into_inner();
            inner.clear();
            inner
        })
    }

    /// The cached snapshot of each id (`None` where not cached), and the generation to hand
    /// to [`RequestCache::fill`] with what is read from the database for the others.
    pub(super) fn get(&self, ids: &[String]) -> (Vec<Option<Arc<RequestSnapshot>>>, u64) {
        let inner = self.lock();
        let found = ids
            .iter()
            .map(|id| inner.requests.get(id).cloned())
            .collect();
        (found, inner.generation)
    }

    /// Keeps `snapshots`, read from the database after [`RequestCache::get`] answered
    /// `generation`, unless something was evicted since.
    pub(super) fn fill(&self, generation: u64, snapshots: &[Arc<RequestSnapshot>]) {
        if !self.enabled {
            return;
        }
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        let adding: usize = snapshots.iter().map(|s| s.machines.len()).sum();
        if inner.machines + adding > MAX_CACHED_MACHINES {
            inner.clear();
        }
        for s in snapshots {
            inner.insert(s.clone());
        }
    }

    /// Forgets requests `ids`.
    pub(super) fn evict_requests<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut inner = self.lock();
        inner.generation += 1;
        for id in ids {
            inner.remove(id);
        }
    }

    /// Forgets every cached request holding one of `machine_ids`, and requests `ids`.
    pub(super) fn evict_machines<'a>(
        &self,
        machine_ids: impl IntoIterator<Item = &'a str>,
        ids: impl IntoIterator<Item = &'a str>,
    ) {
        let mut inner = self.lock();
        inner.generation += 1;
        for m in machine_ids {
            for id in inner.holders.get(m).cloned().unwrap_or_default() {
                inner.remove(&id);
            }
        }
        for id in ids {
            inner.remove(id);
        }
    }

    /// Forgets everything (after deletions, which name no request up front).
    pub(super) fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.clear();
    }
}

impl Inner {
    fn insert(&mut self, s: Arc<RequestSnapshot>) {
        let id = s.request.request_id.clone();
        self.remove(&id);
        for m in &s.machines {
            self.holders
                .entry(m.machine_id.clone())
                .or_default()
                .push(id.clone());
        }
        self.machines += s.machines.len();
        self.requests.insert(id, s);
    }

    fn remove(&mut self, id: &str) {
        let Some(s) = self.requests.remove(id) else {
            return;
        };
        self.machines -= s.machines.len();
        for m in &s.machines {
            if let Some(holders) = self.holders.get_mut(&m.machine_id) {
                holders.retain(|h| h != id);
                if holders.is_empty() {
                    self.holders.remove(&m.machine_id);
                }
            }
        }
    }

    fn clear(&mut self) {
        self.requests.clear();
        self.holders.clear();
        self.machines = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostfactory::model::{RequestKind, RequestState};

    fn request(id: &str, kind: RequestKind) -> HfRequest {
        HfRequest {
            request_id: id.into(),
            kind,
            ..HfRequest::new_return(1, RequestState::InProgress, 0)
        }
    }

    fn machine(id: &str, request: &str, ret: Option<&str>) -> HfMachine {
        HfMachine {
            machine_id: id.into(),
            request_id: request.into(),
            return_request_id: ret.map(str::to_string),
            ..HfMachine::default()
        }
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn cached(cache: &RequestCache, id: &str) -> bool {
        cache.get(&ids(&[id])).0[0].is_some()
    }

    #[test]
    fn a_snapshot_holds_the_machines_its_kind_reports() {
        let all = [
            machine("i-1", "req-a", Some("ret-b")),
            machine("i-2", "req-a", None),
            machine("i-3", "req-c", Some("ret-b")),
        ];
        let [acquire, ret] = RequestSnapshot::group(
            vec![
                request("req-a", RequestKind::Acquire),
                request("ret-b", RequestKind::Return),
            ],
            all.to_vec(),
        )
        .try_into()
        .unwrap();
        let names = |s: &RequestSnapshot| -> Vec<String> {
            s.machines.iter().map(|m| m.machine_id.clone()).collect()
        };
        assert_eq!(names(&acquire), ["i-1", "i-2"]);
        assert_eq!(names(&ret), ["i-1", "i-3"]);
    }

    #[test]
    fn a_machine_write_evicts_every_request_holding_it_and_nothing_else() {
        let cache = RequestCache::default();
        let all = [
            machine("i-1", "req-a", Some("ret-b")),
            machine("i-2", "req-c", None),
        ];
        let (_, generation) = cache.get(&ids(&["req-a", "ret-b", "req-c"]));
        let snaps: Vec<_> = RequestSnapshot::group(
            vec![
                request("req-a", RequestKind::Acquire),
                request("ret-b", RequestKind::Return),
                request("req-c", RequestKind::Acquire),
            ],
            all.to_vec(),
        )
        .into_iter()
        .map(Arc::new)
        .collect();
        cache.fill(generation, &snaps);
        assert!(cached(&cache, "req-a") && cached(&cache, "ret-b") && cached(&cache, "req-c"));
        cache.evict_machines(["i-1"], []);
        assert!(!cached(&cache, "req-a"));
        assert!(!cached(&cache, "ret-b"));
        assert!(cached(&cache, "req-c"));
        assert_eq!(cache.lock().machines, 1);
        assert!(!cache.lock().holders.contains_key("i-1"));
    }

    #[test]
    fn a_fill_read_before_an_eviction_is_not_kept() {
        let cache = RequestCache::default();
        let (_, before) = cache.get(&ids(&["req-a"]));
        // A write commits and evicts between the reader's database read and its fill.
        cache.evict_requests(["req-a"]);
        let stale = Arc::new(RequestSnapshot {
            request: request("req-a", RequestKind::Acquire),
            machines: Vec::new(),
        });
        cache.fill(before, std::slice::from_ref(&stale));
        assert!(!cached(&cache, "req-a"));
        let (_, after) = cache.get(&ids(&["req-a"]));
        cache.fill(after, &[stale]);
        assert!(cached(&cache, "req-a"));
    }

    #[test]
    fn the_copy_stays_within_its_machine_bound() {
        let cache = RequestCache::default();
        let big: Vec<HfMachine> = (0..MAX_CACHED_MACHINES / 2 + 1)
            .map(|i| machine(&format!("i-{i}"), "req-a", None))
            .collect();
        let other: Vec<HfMachine> = (0..MAX_CACHED_MACHINES / 2 + 1)
            .map(|i| machine(&format!("j-{i}"), "req-b", None))
            .collect();
        for (id, machines) in [("req-a", &big), ("req-b", &other)] {
            let (_, generation) = cache.get(&ids(&[id]));
            let snap = RequestSnapshot {
                request: request(id, RequestKind::Acquire),
                machines: machines.clone(),
            };
            cache.fill(generation, &[Arc::new(snap)]);
        }
        assert!(!cached(&cache, "req-a"));
        assert!(cached(&cache, "req-b"));
        assert!(cache.lock().machines <= MAX_CACHED_MACHINES);
    }
}
