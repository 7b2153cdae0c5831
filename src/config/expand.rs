//! `${VAR}` and `${VAR:-default}` in string values; `$${` writes a literal `${`.

use serde_json::Value;

/// Expands every string in `value`. `path` names the position for error messages.
pub fn expand_tree(
    value: &mut Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    match value {
        Value::String(s) => {
            if !s.contains('$') {
                return Ok(());
            }
            let whole_reference =
                s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1;
            let expanded = expand_str(s, env).map_err(|m| (path.to_string(), m))?;
            // "${PORT}" alone may stand for a number or a boolean.
            *value = match serde_json::from_str::<Value>(&expanded) {
                Ok(v @ (Value::Number(_) | Value::Bool(_))) if whole_reference => v,
                _ => Value::String(expanded),
            };
            Ok(())
        }
        Value::Array(items) => items
            .iter_mut()
            .enumerate()
            .try_for_each(|(i, v)| expand_tree(v, &format!("{path}[{i}]"), env)),
        Value::Object(map) => map.iter_mut().try_for_each(|(k, v)| {
            let child = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            expand_tree(v, &child, env)
        }),
        _ => Ok(()),
    }
}

pub fn expand_str(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| format!("unterminated '${{' in \"{s}\""))?;
            let inner = &after[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("'${{{inner}}}' is not a valid variable reference"));
            }
            match (env(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set (write ${{{name}:-default}} for an optional one)"
                    ));
                }
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME_DIR" => Some("/home/hf".into()),
            "PORT" => Some("9000".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_plain_default_and_escape() {
        assert_eq!(
            expand_str("${HOME_DIR}/conf", &env).unwrap(),
            "/home/hf/conf"
        );
        assert_eq!(expand_str("${NOPE:-x}-${EMPTY:-y}", &env).unwrap(), "x-");
        assert_eq!(
            expand_str("$${HOME_DIR} $5", &env).unwrap(),
            "${HOME_DIR} $5"
        );
        let err = expand_str("${MISSING}", &env).unwrap_err();
        assert!(err.contains("MISSING is not set"), "{err}");
        assert!(expand_str("${OPEN", &env).is_err());
        assert!(expand_str("${a b}", &env).is_err());
    }

    #[test]
    fn tree_expansion_names_the_path_and_types_whole_references() {
        let mut v =
            json!({"server": {"port": "${PORT}", "name": "x${PORT}"}, "list": ["${MISSING}"]});
        let err = expand_tree(&mut v, "", &env).unwrap_err();
        assert_eq!(err.0, "list[0]");
        let mut v = json!({"server": {"port": "${PORT}", "name": "x${PORT}"}});
        expand_tree(&mut v, "", &env).unwrap();
        assert_eq!(v, json!({"server": {"port": 9000, "name": "x9000"}}));
    }
}
