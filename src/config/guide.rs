//! Maps the reference's configuration shapes onto ours:
//! - the guide's shape: `provider.strategy{…}`, one section per provider instance under
//!   `provider`, `provider.load_balancing`, `provider.fallback`;
//! - the reference's schema: `provider.providers[]`, `provider.selection_policy`,
//!   `provider.active_provider`, `provider.health_check_interval`, `provider.circuit_breaker`.
//!
//! A `load_balancing` section becomes a strategy named `load_balancer`, a `fallback` section
//! one named `fallback`; the outermost of them becomes the active strategy. Members they leave
//! out are filled in once every layer is merged ([`fill_composite_members`]), so an overlay such
//! as the guide's production.json can add them over providers a base file defines.
//! `provider.type` names the default provider: the instance section of that name (or the first
//! of that type) is the active strategy unless a composite section takes that place.

use serde_json::{Map, Value, json};

type MapResult<T> = Result<T, (String, String)>;

/// Returns `value` in our shape. Files already in our shape pass through unchanged.
pub fn normalize(mut value: Value) -> MapResult<Value> {
    let Some(obj) = value.as_object_mut() else {
        return Ok(value);
    };
    let Some(provider) = obj.shift_remove("provider") else {
        return Ok(value);
    };
    obj.shift_remove("version");
    let Value::Object(mut provider) = provider else {
        return Err(("provider".into(), "must be an object".into()));
    };
    let mut strategy = obj
        .shift_remove("strategy")
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    let mut providers: Vec<Value> = match obj.shift_remove("providers") {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    };

    if let Some(Value::Object(guide)) = provider.shift_remove("strategy") {
        for (key, v) in guide {
            match key.as_str() {
                "health_check_interval_seconds" => {
                    strategy.insert("health_check_interval".into(), v);
                }
                _ => {
                    strategy.insert(key, v);
                }
            }
        }
    }
    for (from, to) in [
        ("selection_policy", "selection_policy"),
        ("active_provider", "active_strategy"),
        ("health_check_interval", "health_check_interval"),
        ("circuit_breaker", "circuit_breaker"),
        ("selection_criteria", "selection_criteria"),
    ] {
        if let Some(v) = provider.shift_remove(from) {
            strategy.insert(to.into(), v);
        }
    }
    // Reference keys with no meaning here: defaults for its own handler classes.
    for ignored in [
        "default_provider_type",
        "default_provider_instance",
        "provider_defaults",
    ] {
        provider.shift_remove(ignored);
    }
    if let Some(list) = provider.shift_remove("providers") {
        let Value::Array(list) = list else {
            return Err(("provider.providers".into(), "must be a list".into()));
        };
        providers.extend(list);
    }
    let load_balancing = provider.shift_remove("load_balancing");
    let fallback = provider.shift_remove("fallback");
    let default_type = match provider.shift_remove("type") {
        None => None,
        Some(Value::String(t)) => Some(t),
        Some(_) => return Err(("provider.type".into(), "must be a string".into())),
    };

    let first_instance = providers.len();
    for (name, section) in provider {
        providers.push(instance(&name, section)?);
    }
    if let Some(wanted) = default_type {
        let sections = &providers[first_instance..];
        let named = |key: &str| {
            sections
                .iter()
                .find(|p| p[key] == wanted.as_str())
                .map(|p| p["name"].clone())
        };
        match named("name").or_else(|| named("type")) {
            Some(name) => {
                strategy.insert("active_strategy".into(), name);
            }
            // A type with no section of its own (an overlay) says nothing more here.
            None if crate::providers::PROVIDER_TYPES.contains(&wanted.as_str()) => {}
            None => {
                return Err((
                    "provider.type".into(),
                    format!(
                        "'{wanted}' names no provider section here and no provider type (one of {})",
                        crate::providers::PROVIDER_TYPES.join(", ")
                    ),
                ));
            }
        }
    }
    if let Some(lb) = load_balancing {
        let Value::Object(mut lb) = lb else {
            return Err(("provider.load_balancing".into(), "must be an object".into()));
        };
        let name = lb
            .shift_remove("name")
            .unwrap_or_else(|| json!("load_balancer"));
        strategy.insert("active_strategy".into(), name.clone());
        providers.push(json!({"name": name, "type": "load_balancer", "config": lb}));
    }
    if let Some(fb) = fallback {
        let Value::Object(mut fb) = fb else {
            return Err(("provider.fallback".into(), "must be an object".into()));
        };
        let name = fb.shift_remove("name").unwrap_or_else(|| json!("fallback"));
        strategy.insert("active_strategy".into(), name.clone());
        providers.push(json!({"name": name, "type": "fallback", "config": fb}));
    }
    obj.insert("strategy".into(), Value::Object(strategy));
    obj.insert("providers".into(), Value::Array(providers));
    Ok(value)
}

/// One guide-shape instance section (`"aws": {"region": …}`) as a strategy entry.
fn instance(name: &str, section: Value) -> MapResult<Value> {
    let path = format!("provider.{name}");
    let Value::Object(mut section) = section else {
        return Err((path, "a provider instance section must be an object".into()));
    };
    let provider_type = match section
        .shift_remove("type")
        .or_else(|| section.shift_remove("provider_type"))
    {
        Some(Value::String(t)) => t,
        Some(_) => return Err((format!("{path}.type"), "must be a string".into())),
        None if name.starts_with("aws") => "aws".into(),
        None if name.starts_with("sim") => "simulated".into(),
        // The guide's generic providers (provider1, provider2) are reached over HTTP.
        None if section.contains_key("endpoint_url") => "http".into(),
        None => {
            return Err((
                path,
                "cannot tell the provider type: add \"type\" (aws, simulated or http), or start the name with aws or sim, or give an endpoint_url (http)".into(),
            ));
        }
    };
    let mut entry = Map::new();
    entry.insert("name".into(), Value::String(name.to_string()));
    entry.insert("type".into(), Value::String(provider_type));
    for key in [
        "enabled",
        "priority",
        "weight",
        "capabilities",
        "circuit_breaker",
    ] {
        if let Some(v) = section.shift_remove(key) {
            entry.insert(key.into(), v);
        }
    }
    let config = match section.shift_remove("config") {
        Some(Value::Object(mut c)) => {
            c.extend(section);
            c
        }
        _ => section,
    };
    entry.insert("config".into(), Value::Object(config));
    Ok(Value::Object(entry))
}
