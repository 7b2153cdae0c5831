use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::OperationType;

/// Capability flags declared at registration, e.g. `{"instances": true, "spot_instances": false}`.
/// A list of names (`["instances", "spot_instances"]`) is accepted and means each is true.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"instances": true, "spot_instances": true}))]
pub struct CapabilityFlags(pub BTreeMap<String, bool>);

impl<'de> Deserialize<'de> for CapabilityFlags {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Map(BTreeMap<String, bool>),
            List(Vec<String>),
        }
        match Form::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "capabilities must be an object of booleans or a list of capability names",
            )
        })? {
            Form::Map(m) => Ok(CapabilityFlags(m)),
            Form::List(names) => Ok(CapabilityFlags(
                names.into_iter().map(|n| (n, true)).collect(),
            )),
        }
    }
}

impl CapabilityFlags {
    pub fn is_true(&self, name: &str) -> bool {
        self.0.get(name).copied().unwrap_or(false)
    }
}

/// What a strategy can do: operations, feature flags, limitations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Capabilities {
    pub provider_type: String,
    pub supported_operations: Vec<OperationType>,
    /// Feature flags and facts (`"spot_instances": true`, `"region": "eu-west-1"`).
    #[schema(value_type = Object)]
    pub features: Map<String, Value>,
    #[schema(value_type = Object)]
    pub limitations: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub performance_metrics: Option<Map<String, Value>>,
}

impl Capabilities {
    pub fn supports(&self, op: OperationType) -> bool {
        self.supported_operations.contains(&op)
    }

    /// A feature counts as present when its value is truthy (true, non-zero, non-empty).
    pub fn has_feature(&self, name: &str) -> bool {
        match self.features.get(name) {
            Some(Value::Bool(b)) => *b,
            Some(Value::Null) | None => false,
            Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(o)) => !o.is_empty(),
        }
    }

    /// Declared flags override what the provider says of itself.
    pub fn with_declared(mut self, declared: &CapabilityFlags) -> Self {
        for (name, on) in &declared.0 {
            self.features.insert(name.clone(), Value::Bool(*on));
        }
        self
    }

    /// Number of truthy features, used by the CAPABILITY_BASED policy.
    pub fn feature_count(&self) -> usize {
        self.features.keys().filter(|k| self.has_feature(k)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_accept_map_and_list() {
        let m: CapabilityFlags =
            serde_json::from_str(r#"{"instances": true, "spot": false}"#).unwrap();
        assert!(m.is_true("instances") && !m.is_true("spot"));
        let l: CapabilityFlags = serde_json::from_str(r#"["instances"]"#).unwrap();
        assert!(l.is_true("instances"));
        assert!(serde_json::from_str::<CapabilityFlags>("3").is_err());
    }

    #[test]
    fn declared_flags_override_features() {
        let caps = Capabilities {
            provider_type: "simulated".into(),
            supported_operations: vec![OperationType::HealthCheck],
            features: serde_json::from_str(r#"{"instances": true, "region": "x", "n": 0}"#)
                .unwrap(),
            limitations: Map::new(),
            performance_metrics: None,
        };
        assert_eq!(caps.feature_count(), 2);
        let mut declared = CapabilityFlags::default();
        declared.0.insert("instances".into(), false);
        declared.0.insert("gpu".into(), true);
        let merged = caps.with_declared(&declared);
        assert!(!merged.has_feature("instances"));
        assert!(merged.has_feature("gpu"));
    }
}
