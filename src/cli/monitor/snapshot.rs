//! The status snapshot (`GET /api/v1/status`) as the monitor reads it: parsed once, here, into
//! typed values; the tables only format them. Strategies are read into the service's own type;
//! alerts and requests into types of their own, since the service writes their times as text.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

use crate::app::status::StrategyStatus;
use crate::config::ConditionKind;
use crate::hostfactory::model::{RequestKind, RequestState};

#[derive(Debug, Clone, Deserialize)]
pub struct Snapshot {
    pub last_event_id: u64,
    /// The window of the strategies' numbers, in hours.
    pub window_hours: u32,
    pub strategies: Vec<StrategyStatus>,
    /// Active alerts, oldest first.
    pub alerts: Vec<ActiveAlert>,
    /// HostFactory requests in flight.
    pub requests: Vec<RequestInFlight>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ActiveAlert {
    pub rule: String,
    pub condition: ConditionKind,
    pub strategy: Option<String>,
    pub message: String,
    #[serde(deserialize_with = "parsed")]
    pub raised_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RequestInFlight {
    pub request_id: String,
    #[serde(deserialize_with = "parsed")]
    pub kind: RequestKind,
    pub template_id: Option<String>,
    #[serde(deserialize_with = "parsed")]
    pub state: RequestState,
    pub machines: u64,
    pub machines_by_state: BTreeMap<String, u64>,
    #[serde(deserialize_with = "parsed")]
    pub created_at: DateTime<Utc>,
}

/// A value read from its words, as the type's `FromStr` reads them (times in RFC 3339).
fn parsed<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    let text = String::deserialize(d)?;
    text.parse()
        .map_err(|e| serde::de::Error::custom(format!("'{text}': {e}")))
}
