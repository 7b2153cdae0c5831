use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::objects_only::ObjectsOnly;

use super::{
    Config, EMBEDDED_DEFAULT, MAX_INTERVAL_SECONDS, MAX_TIMEOUT_SECONDS, check_strategy_name,
    expand, guide, layers,
};

/// One problem, at a JSON path such as `providers[1].config.failure_rate`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found, so an operator can fix them in one go.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors {
    pub source: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({}):", self.source)?;
        for e in &self.errors {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

fn one(source: &str, path: &str, message: impl Into<String>) -> ConfigErrors {
    ConfigErrors {
        source: source.to_string(),
        errors: vec![ConfigError {
            path: path.to_string(),
            message: message.into(),
        }],
    }
}

/// Loads the configuration: the files in order, each laid over the ones before (the embedded
/// default when none is given), then `<NAME>.json` when `OHFP_ENV=NAME` (next to the last file,
/// or in `config/` for the embedded default), then `OHFP_*` overrides from the process
/// environment, then `${VAR}` expansion. Keys no layer gives take the built-in defaults, so a
/// single named file stands alone.
pub fn load(files: &[&Path]) -> Result<Config, ConfigErrors> {
    let vars: Vec<(String, String)> = std::env::vars().collect();
    load_with_env(files, &vars, &|name| std::env::var(name).ok())
}

/// [`load`] with the environment passed in (tests).
pub fn load_with_env(
    files: &[&Path],
    vars: &[(String, String)],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut tree = Value::Object(Map::new());
    let mut sources = Vec::new();
    for layer in layers(files, vars)? {
        let (text, source) = match &layer {
            Some(path) => {
                let name = path.display().to_string();
                let text = std::fs::read_to_string(path)
                    .map_err(|e| one(&name, "", format!("cannot read {name}: {e}")))?;
                (text, name)
            }
            None => (
                EMBEDDED_DEFAULT.to_string(),
                "embedded config/default.json".to_string(),
            ),
        };
        let normalized =
            guide::normalize(parse_json(&text, &source)?).map_err(|(p, m)| one(&source, &p, m))?;
        layers::merge(&mut tree, normalized);
        sources.push(source);
    }
    // Problems of the merged result are those of every layer together.
    let source = sources.join(" + ");
    layers::fill_composite_members(&mut tree);
    apply_env_overrides(&mut tree, vars).map_err(|(p, m)| one(&source, &p, m))?;
    expand::expand_tree(&mut tree, "", lookup).map_err(|(p, m)| one(&source, &p, m))?;
    let mut config: Config = serde_path_to_error::deserialize(ObjectsOnly(tree)).map_err(|e| {
        let path = e.path().to_string();
        one(
            &source,
            if path == "." { "" } else { &path },
            e.into_inner().to_string(),
        )
    })?;
    let mut errors = read_token_files(&mut config.server.auth);
    errors.extend(validate(&config));
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors { source, errors })
    }
}

/// The files to read, in order; `None` is the embedded default.
fn layers(
    files: &[&Path],
    vars: &[(String, String)],
) -> Result<Vec<Option<PathBuf>>, ConfigErrors> {
    let mut layers: Vec<Option<PathBuf>> = if files.is_empty() {
        vec![None]
    } else {
        files.iter().map(|f| Some(f.to_path_buf())).collect()
    };
    let Some((_, env)) = vars.iter().find(|(k, _)| k == "OHFP_ENV") else {
        return Ok(layers);
    };
    let valid = !env.is_empty()
        && env
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if !valid {
        return Err(one(
            "OHFP_ENV",
            "OHFP_ENV",
            format!("'{env}' is not an environment name: use letters, digits, '-' or '_'"),
        ));
    }
    let dir = match files.last().and_then(|f| f.parent()) {
        Some(parent) => parent.to_path_buf(),
        None => PathBuf::from("config"),
    };
    let env_file = dir.join(format!("{env}.json"));
    if !env_file.is_file() {
        return Err(one(
            "OHFP_ENV",
            "OHFP_ENV",
            format!(
                "OHFP_ENV={env} asks for {}, which does not exist",
                env_file.display()
            ),
        ));
    }
    // Naming the environment's file explicitly as well does not apply it twice.
    if !files.contains(&env_file.as_path()) {
        layers.push(Some(env_file));
    }
    Ok(layers)
}

fn parse_json(text: &str, source: &str) -> Result<Value, ConfigErrors> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        one(
            source,
            "",
            format!(
                "not valid JSON at line {} column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })?;
    if !value.is_object() {
        return Err(one(source, "", "the configuration must be a JSON object"));
    }
    Ok(value)
}

/// Only `OHFP_` variables with a `__` are overrides (`OHFP_SERVER__BIND`); `OHFP_URL`,
/// `OHFP_TOKEN`, `OHFP_CONFIG` and `OHFP_ENV` are not. A segment indexes an array by position or,
/// for the providers list, by strategy name (`OHFP_PROVIDERS__SIM_PRIMARY__CONFIG__FAILURE_RATE`,
/// `_` matching `-`). Values are read as JSON when they parse, else as strings.
fn apply_env_overrides(
    tree: &mut Value,
    vars: &[(String, String)],
) -> Result<(), (String, String)> {
    let mut overrides: Vec<&(String, String)> = vars
        .iter()
        .filter(|(k, _)| k.starts_with("OHFP_") && k.contains("__"))
        .collect();
    overrides.sort();
    for (key, raw) in overrides {
        let segments: Vec<String> = key["OHFP_".len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if segments.iter().any(String::is_empty) {
            return Err((key.clone(), "empty segment in override name".into()));
        }
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.clone()));
        set_path(tree, &segments, value).map_err(|m| (key.clone(), m))?;
    }
    Ok(())
}

fn set_path(node: &mut Value, segments: &[String], value: Value) -> Result<(), String> {
    let Some((head, rest)) = segments.split_first() else {
        *node = value;
        return Ok(());
    };
    match node {
        Value::Array(items) => {
            let index = match head.parse::<usize>() {
                Ok(i) => Some(i),
                Err(_) => items.iter().position(|item| {
                    item.get("name").and_then(Value::as_str).is_some_and(|n| {
                        n.to_ascii_lowercase().replace('-', "_") == head.replace('-', "_")
                    })
                }),
            };
            let item = index
                .and_then(|i| items.get_mut(i))
                .ok_or_else(|| format!("no list entry '{head}' to override"))?;
            set_path(item, rest, value)
        }
        Value::Object(map) => {
            let child = map.entry(head.clone()).or_insert_with(|| {
                if rest.is_empty() {
                    Value::Null
                } else {
                    Value::Object(Map::new())
                }
            });
            set_path(child, rest, value)
        }
        _ => Err(format!("cannot set '{head}' inside a non-object value")),
    }
}

/// Reads each `server.auth.tokens[i].token_file` into its `token`, once, at start. A file that
/// group or others may read is refused: the token would be as good as published.
fn read_token_files(auth: &mut super::AuthConfig) -> Vec<ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let mut errors = Vec::new();
    for (i, spec) in auth.tokens.iter_mut().enumerate() {
        let Some(file) = spec.token_file.as_deref() else {
            continue;
        };
        let path = format!("server.auth.tokens[{i}].token_file");
        let read = std::fs::metadata(file).and_then(|meta| {
            let mode = meta.permissions().mode() & 0o777;
            Ok((mode, std::fs::read_to_string(file)?))
        });
        match read {
            Err(e) => errors.push(ConfigError {
                path,
                message: format!("cannot read token file {file}: {e}"),
            }),
            Ok((mode, _)) if mode & 0o077 != 0 => errors.push(ConfigError {
                path,
                message: format!(
                    "token file {file} has mode {mode:04o}: group and others must have no access (chmod 600 {file})"
                ),
            }),
            Ok((_, text)) => spec.token = Some(text.trim_end_matches(['\n', '\r']).to_string()),
        }
    }
    errors
}

/// `server.auth`: names unique and plain (they appear in logs), each token given exactly once
/// and distinct from the others, so that a token has one scope.
fn auth_problems(auth: &super::AuthConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut err = |path: String, message: String| errors.push(ConfigError { path, message });
    if auth.enabled && auth.credentials().next().is_none() && auth.tokens.is_empty() {
        err(
            "server.auth.token".into(),
            "auth is enabled but no token is set (use \"${OHFP_TOKEN}\" or list server.auth.tokens)"
                .into(),
        );
    }
    let mut names: HashSet<&str> = HashSet::new();
    if auth.token.as_deref().is_some_and(|t| !t.is_empty()) {
        names.insert(super::DEFAULT_TOKEN_NAME);
    }
    for (i, spec) in auth.tokens.iter().enumerate() {
        let at = |field: &str| format!("server.auth.tokens[{i}].{field}");
        let plain = !spec.name.is_empty()
            && spec
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !plain {
            err(
                at("name"),
                format!(
                    "'{}' is not a token name: use letters, digits, '-', '_' or '.'",
                    spec.name
                ),
            );
        } else if !names.insert(&spec.name) {
            err(at("name"), format!("duplicate token name '{}'", spec.name));
        }
        if let Some(limit) = spec.rate_limit {
            if !(limit.per_second > 0.0 && limit.per_second <= super::MAX_RATE_PER_SECOND) {
                err(
                    at("rate_limit.per_second"),
                    format!(
                        "must be more than 0 and at most {}, got {:?}",
                        super::MAX_RATE_PER_SECOND,
                        limit.per_second
                    ),
                );
            }
            if !(1..=super::MAX_RATE_BURST).contains(&limit.burst) {
                err(
                    at("rate_limit.burst"),
                    format!(
                        "must be from 1 to {}, got {}",
                        super::MAX_RATE_BURST,
                        limit.burst
                    ),
                );
            }
        }
        match (spec.token.as_deref(), spec.token_file.is_some()) {
            // A token read from token_file is set; its own problems are already reported.
            (_, true) if spec.token.as_deref() == Some("") => {
                err(at("token_file"), "the token file is empty".into())
            }
            (_, true) => {}
            (None, false) => err(at("token"), "set token (\"${VAR}\") or token_file".into()),
            (Some(""), false) => err(
                at("token"),
                "is empty (an unset variable with a :- default?)".into(),
            ),
            (Some(_), false) => {}
        }
    }
    let mut values: Vec<(&str, &str)> = auth.credentials().map(|(n, _, t)| (n, t)).collect();
    values.sort_by_key(|(_, t)| *t);
    for pair in values.windows(2) {
        if pair[0].1 == pair[1].1 {
            err(
                "server.auth.tokens".into(),
                format!(
                    "tokens '{}' and '{}' are the same token",
                    pair[0].0, pair[1].0
                ),
            );
        }
    }
    errors
}

fn validate(config: &Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut err = |path: String, message: String| errors.push(ConfigError { path, message });
    if let Err(m) = config.server.bind_addr() {
        err("server.bind".into(), m);
    }
    let timeout = config.server.request_timeout_seconds;
    if !(timeout > 0.0 && timeout <= MAX_TIMEOUT_SECONDS) {
        err(
            "server.request_timeout_seconds".into(),
            format!(
                "must be more than 0 and at most {MAX_TIMEOUT_SECONDS} seconds, got {timeout:?}"
            ),
        );
    }
    if config.server.max_body_bytes < 1024 {
        err(
            "server.max_body_bytes".into(),
            "must be at least 1024".into(),
        );
    }
    let header_timeout = config.server.header_read_timeout_seconds;
    if !(header_timeout > 0.0 && header_timeout <= super::MAX_HEADER_READ_TIMEOUT_SECONDS) {
        err(
            "server.header_read_timeout_seconds".into(),
            format!(
                "must be more than 0 and at most {} seconds, got {header_timeout}",
                super::MAX_HEADER_READ_TIMEOUT_SECONDS
            ),
        );
    }
    if !(1..=super::MAX_SERVER_CONNECTIONS).contains(&config.server.max_connections) {
        err(
            "server.max_connections".into(),
            format!("must be from 1 to {}", super::MAX_SERVER_CONNECTIONS),
        );
    }
    for e in auth_problems(&config.server.auth) {
        err(e.path, e.message);
    }
    if config.logging.max_files == 0 {
        err("logging.max_files".into(), "must be at least 1".into());
    }
    if let Err(message) =
        crate::store::Location::parse(config.database.url.as_deref(), &config.database.path)
    {
        err("database.url".into(), message);
    }
    if config.database.path.trim().is_empty() {
        err("database.path".into(), "must not be empty".into());
    }
    if config.database.max_connections == 0 {
        err(
            "database.max_connections".into(),
            "must be at least 1".into(),
        );
    }
    for (field, message) in config.alerts.validate() {
        err(format!("alerts.{field}"), message);
    }
    for (field, message) in config.database.retention.validate() {
        err(format!("database.retention.{field}"), message);
    }
    let hf = &config.hostfactory;
    // Each becomes a timer: a bound keeps it a `Duration`; a week is beyond any useful value.
    for (field, value, max) in [
        (
            "reconcile_interval_seconds",
            hf.reconcile_interval_seconds,
            MAX_INTERVAL_SECONDS,
        ),
        (
            "live_check_interval_seconds",
            hf.live_check_interval_seconds,
            MAX_INTERVAL_SECONDS,
        ),
        (
            "pending_timeout_seconds",
            hf.pending_timeout_seconds,
            super::MAX_REQUEST_TIMEOUT_SECONDS,
        ),
    ] {
        if !(value > 0.0 && value <= max) {
            err(
                format!("hostfactory.{field}"),
                format!("must be more than 0 and at most {max} seconds, got {value:?}"),
            );
        }
    }
    let unclaimed = hf.unclaimed_request_timeout_seconds;
    if !(0.0..=super::MAX_REQUEST_TIMEOUT_SECONDS).contains(&unclaimed) {
        err(
            "hostfactory.unclaimed_request_timeout_seconds".into(),
            format!(
                "must be from 0 (never cancel) to {} seconds, got {unclaimed:?}",
                super::MAX_REQUEST_TIMEOUT_SECONDS
            ),
        );
    }
    if !(1..=1000).contains(&hf.status_batch_size) {
        err(
            "hostfactory.status_batch_size".into(),
            "must be from 1 to 1000".into(),
        );
    }
    if !(0..=86_400).contains(&hf.spot_grace_seconds) {
        err(
            "hostfactory.spot_grace_seconds".into(),
            "must be from 0 to 86400".into(),
        );
    }
    let mut seen = HashSet::new();
    for (i, spec) in config.providers.iter().enumerate() {
        if let Err(m) = check_strategy_name(&spec.name) {
            err(format!("providers[{i}].name"), m);
        }
        if !seen.insert(spec.name.as_str()) {
            err(
                format!("providers[{i}].name"),
                format!("duplicate strategy name '{}'", spec.name),
            );
        }
        for (path, message) in crate::providers::validate_spec(spec) {
            err(format!("providers[{i}].{path}"), message);
        }
    }
    // Names in `strategy` refer to strategies of this file only.
    let known = |name: &str| config.providers.iter().any(|p| p.name == name);
    for (field, message) in config.strategy.problems(&known) {
        err(format!("strategy.{field}"), message);
    }
    errors
}

#[cfg(test)]
mod tests;
