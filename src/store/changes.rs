//! Change notices between replicas on PostgreSQL. A write of shared state (registrations,
//! run-time settings, a breaker, a health) is followed by a `NOTIFY` on [`CHANNEL`] naming what
//! changed and which process changed it; every replica listens (`crate::replica::sync`) and
//! reads the changed state back. On SQLite there is one process and nothing is sent.

use std::fmt;

use super::{Backend, Store};

/// The PostgreSQL channel the notices go on.
pub const CHANNEL: &str = "ohfp_changes";

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A strategy was registered, replaced or removed.
    Strategies,
    /// The run-time settings overrides.
    Settings,
    /// The breaker of one strategy.
    Circuit(String),
    /// The latest health of one strategy.
    Health(String),
    /// A HostFactory request waits for the leader's reconciler.
    Requests,
    /// The alert rules set through the API.
    AlertRules,
}

/// One notice as sent: the sending process and the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub origin: String,
    pub change: Change,
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = &self.origin;
        match &self.change {
            Change::Strategies => write!(f, "{origin} strategies"),
            Change::Settings => write!(f, "{origin} settings"),
            Change::Requests => write!(f, "{origin} requests"),
            Change::AlertRules => write!(f, "{origin} alert-rules"),
            Change::Circuit(name) => write!(f, "{origin} circuit {name}"),
            Change::Health(name) => write!(f, "{origin} health {name}"),
        }
    }
}

impl Notice {
    /// Reads a payload [`Notice`]'s `Display` wrote; `None` for anything else.
    pub fn parse(payload: &str) -> Option<Self> {
        let mut parts = payload.splitn(3, ' ');
        let origin = parts.next()?.to_string();
        let change = match (parts.next()?, parts.next()) {
            ("strategies", None) => Change::Strategies,
            ("settings", None) => Change::Settings,
            ("requests", None) => Change::Requests,
            ("alert-rules", None) => Change::AlertRules,
            ("circuit", Some(name)) => Change::Circuit(name.to_string()),
            ("health", Some(name)) => Change::Health(name.to_string()),
            _ => return None,
        };
        Some(Self { origin, change })
    }
}

impl Store {
    /// This process's name in the notices it sends.
    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// Tells the other replicas of `change`. A notice that cannot be sent is logged: the
    /// replicas' periodic full read catches up with it.
    pub(crate) async fn announce(&self, change: Change) {
        if self.backend() != Backend::Postgres {
            return;
        }
        let notice = Notice {
            origin: self.replica_id.to_string(),
            change,
        };
        if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(notice.to_string())
            .execute(&self.pool)
            .await
        {
            tracing::warn!(error = %e, notice = %notice, "cannot tell the other replicas of a change");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_reads_back_as_written() {
        for change in [
            Change::Strategies,
            Change::Settings,
            Change::Requests,
            Change::AlertRules,
            Change::Circuit("aws a".into()),
            Change::Health("sim-primary".into()),
        ] {
            let notice = Notice {
                origin: "r1".into(),
                change,
            };
            assert_eq!(Notice::parse(&notice.to_string()), Some(notice));
        }
        assert_eq!(Notice::parse("r1 unknown"), None);
        assert_eq!(Notice::parse("r1"), None);
    }
}
