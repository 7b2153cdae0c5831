//! Several configuration files make one: each is read into our shape, then laid over the ones
//! before it. Objects merge key by key, the `providers` list merges by strategy name (an entry
//! naming a known strategy changes only the keys it gives), anything else is replaced.

use serde_json::{Map, Value};

const COMPOSITE_TYPES: [&str; 3] = ["load_balancer", "fallback", "composite"];

/// Lays `overlay` over `base`.
pub fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(Value::Array(list)) if key == "providers" => {
                        merge_by_name(list, value);
                    }
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

fn strategy_name(entry: &Value) -> Option<&str> {
    entry
        .get("name")
        .or_else(|| entry.get("strategy_name"))
        .and_then(Value::as_str)
}

fn merge_by_name(list: &mut Vec<Value>, overlay: Value) {
    let Value::Array(entries) = overlay else {
        // Not a list: the model's own check names the problem.
        *list = vec![overlay];
        return;
    };
    for entry in entries {
        let known = strategy_name(&entry)
            .and_then(|name| list.iter().position(|e| strategy_name(e) == Some(name)));
        match known {
            Some(i) => merge(&mut list[i], entry),
            None => list.push(entry),
        }
    }
}

/// A load balancer or fallback of a configuration file that names no members gets them from the
/// file's providers: a load balancer balances over the members its weights name, else over every
/// enabled provider instance; a fallback's primary is the instance with the lowest priority and
/// its fallbacks the others, by priority.
pub fn fill_composite_members(tree: &mut Value) {
    let Some(Value::Array(providers)) = tree.get_mut("providers") else {
        return;
    };
    let mut instances: Vec<(i64, String)> = providers
        .iter()
        .filter(|p| {
            let kind = p.get("type").or_else(|| p.get("provider_type"));
            !kind
                .and_then(Value::as_str)
                .is_some_and(|t| COMPOSITE_TYPES.contains(&t))
                && p.get("enabled") != Some(&Value::Bool(false))
        })
        .filter_map(|p| {
            let priority = p.get("priority").and_then(Value::as_i64).unwrap_or(0);
            strategy_name(p).map(|name| (priority, name.to_string()))
        })
        .collect();
    let in_file_order: Vec<Value> = instances
        .iter()
        .map(|(_, n)| Value::String(n.clone()))
        .collect();
    instances.sort_by_key(|(priority, _)| *priority);
    let by_priority: Vec<String> = instances.into_iter().map(|(_, n)| n).collect();

    for entry in providers.iter_mut() {
        let kind = entry
            .get("type")
            .or_else(|| entry.get("provider_type"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Some(Value::Object(config)) = entry.get_mut("config") else {
            continue;
        };
        match kind.as_str() {
            "load_balancer" if !config.contains_key("strategies") => {
                let members = match config.get("weights") {
                    Some(Value::Object(w)) if !w.is_empty() => {
                        w.keys().cloned().map(Value::String).collect()
                    }
                    _ => in_file_order.clone(),
                };
                config.insert("strategies".into(), Value::Array(members));
            }
            "fallback" => fill_fallback(config, &by_priority),
            _ => {}
        }
    }
}

fn fill_fallback(config: &mut Map<String, Value>, by_priority: &[String]) {
    if let (false, Some(first)) = (config.contains_key("primary"), by_priority.first()) {
        config.insert("primary".into(), Value::String(first.clone()));
    }
    if !config.contains_key("fallbacks") {
        let primary = config.get("primary").and_then(Value::as_str);
        let rest: Vec<Value> = by_priority
            .iter()
            .filter(|n| Some(n.as_str()) != primary)
            .cloned()
            .map(Value::String)
            .collect();
        config.insert("fallbacks".into(), Value::Array(rest));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn objects_merge_providers_merge_by_name_and_the_rest_is_replaced() {
        let mut base = json!({
            "server": {"bind": "127.0.0.1:8000", "request_timeout_seconds": 30},
            "strategy": {"fallback_strategies": ["a", "b"]},
            "providers": [
                {"name": "a", "type": "simulated", "config": {"region": "r1", "capacity": 5}},
                {"name": "b", "type": "simulated"}
            ]
        });
        merge(
            &mut base,
            json!({
                "server": {"bind": "0.0.0.0:9000"},
                "strategy": {"fallback_strategies": ["b"]},
                "providers": [
                    {"name": "a", "config": {"capacity": 50}},
                    {"name": "c", "type": "simulated"}
                ]
            }),
        );
        assert_eq!(
            base,
            json!({
                "server": {"bind": "0.0.0.0:9000", "request_timeout_seconds": 30},
                "strategy": {"fallback_strategies": ["b"]},
                "providers": [
                    {"name": "a", "type": "simulated", "config": {"region": "r1", "capacity": 50}},
                    {"name": "b", "type": "simulated"},
                    {"name": "c", "type": "simulated"}
                ]
            })
        );
    }

    #[test]
    fn composites_without_members_take_the_files_instances() {
        let mut tree = json!({"providers": [
            {"name": "b", "type": "simulated", "priority": 1},
            {"name": "a", "type": "simulated", "priority": 0},
            {"name": "off", "type": "simulated", "enabled": false},
            {"name": "lb", "type": "load_balancer", "config": {"algorithm": "adaptive"}},
            {"name": "lbw", "type": "load_balancer", "config": {"weights": {"a": 0.2}}},
            {"name": "kept", "type": "load_balancer", "config": {"strategies": ["b"]}},
            {"name": "fb", "type": "fallback", "config": {"mode": "circuit_breaker"}},
            {"name": "fb2", "type": "fallback", "config": {"primary": "b"}}
        ]});
        fill_composite_members(&mut tree);
        let config = |i: usize| tree["providers"][i]["config"].clone();
        assert_eq!(config(3)["strategies"], json!(["b", "a"]));
        assert_eq!(config(4)["strategies"], json!(["a"]));
        assert_eq!(config(5)["strategies"], json!(["b"]));
        assert_eq!(config(6)["primary"], "a");
        assert_eq!(config(6)["fallbacks"], json!(["b"]));
        assert_eq!(config(7)["fallbacks"], json!(["a"]));
    }
}
