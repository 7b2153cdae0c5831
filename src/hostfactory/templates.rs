//! HostFactory templates (`awsprov_templates.json`): parsing, validation with messages that
//! name the template and the field, the launch spec each template describes, and the
//! attributes in HostFactory's typed-array form.

mod launch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use launch::number_text;
pub use launch::{KeyProblem, launch_spec, parse_instance_tags};

use crate::domain::{LaunchSpec, ProvisioningApi};

/// One template as the admin wrote it, with the fields the service acts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub id: String,
    /// -1 unlimited, 0 disabled.
    pub max_number: i64,
    /// A strategy name; otherwise the strategy layer chooses.
    pub provider_name: Option<String>,
    /// What providers start for it.
    pub launch: LaunchSpec,
    /// `(name, [type, value])` in file order, values as strings.
    pub attributes: Vec<(String, [String; 2])>,
    /// The object as written, stored with requests and passed back to HostFactory.
    pub raw: Map<String, Value>,
}

fn is_template_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// One attribute in typed form: `["Numeric","4096"]` stays, `4096` and `["4096"]` become
/// `["Numeric","4096"]`, `"X86_64"` becomes `["String","X86_64"]`.
fn typed_attribute(name: &str, v: &Value) -> Result<[String; 2], String> {
    match v {
        Value::Array(items) if items.len() == 2 => {
            let kind = items[0]
                .as_str()
                .ok_or("the type (first item) must be a string")?;
            let value = match &items[1] {
                Value::String(s) => s.clone(),
                other => number_text(other)
                    .ok_or("the value (second item) must be a string or number")?,
            };
            match kind {
                "Numeric" if value.trim().parse::<f64>().is_err() => {
                    Err(format!("'{value}' is not numeric"))
                }
                "Numeric" | "String" => Ok([kind.to_string(), value]),
                other => Err(format!(
                    "type '{other}' is neither \"String\" nor \"Numeric\""
                )),
            }
        }
        Value::Array(items) if items.len() == 1 => typed_attribute(name, &items[0]),
        Value::Number(_) => Ok(["Numeric".into(), number_text(v).expect("a number")]),
        Value::String(s) if name != "type" && s.trim().parse::<f64>().is_ok() => {
            Ok(["Numeric".into(), s.trim().to_string()])
        }
        Value::String(s) => Ok(["String".into(), s.clone()]),
        _ => Err("must be [\"String\"|\"Numeric\", \"value\"], a number or a string".into()),
    }
}

/// Checks one template object; every problem as "field: message".
fn check(raw: &Map<String, Value>) -> Result<Template, Vec<String>> {
    let mut errors = Vec::new();
    let mut bad = |field: &str, msg: String| errors.push(format!("{field}: {msg}"));
    let id = match raw.get("templateId") {
        Some(Value::String(s)) if is_template_id(s) => s.clone(),
        Some(Value::String(s)) => {
            bad(
                "templateId",
                format!("'{s}' must be 1-64 characters of letters, digits, '_' or '-'"),
            );
            s.clone()
        }
        Some(_) => {
            bad("templateId", "must be a string".into());
            String::new()
        }
        None => {
            bad("templateId", "is required".into());
            String::new()
        }
    };
    let max_number = match raw.get("maxNumber") {
        Some(v) => match v.as_i64() {
            Some(n) if (-1..=10_000).contains(&n) => n,
            _ => {
                bad(
                    "maxNumber",
                    format!("must be an integer from -1 (unlimited) to 10000, got {v}"),
                );
                0
            }
        },
        None => {
            bad(
                "maxNumber",
                "is required (-1 for unlimited, 0 to disable)".into(),
            );
            0
        }
    };
    let mut attributes = Vec::new();
    match raw.get("attributes") {
        Some(Value::Object(attrs)) => {
            for (name, v) in attrs {
                match typed_attribute(name, v) {
                    Ok(t) => attributes.push((name.clone(), t)),
                    Err(m) => bad(&format!("attributes.{name}"), m),
                }
            }
            for required in ["type", "ncpus", "nram"] {
                if !attrs.contains_key(required) {
                    bad(&format!("attributes.{required}"), "is required".into());
                }
            }
            for numeric in ["ncpus", "nram", "ncores"] {
                if let Some((_, [kind, value])) = attributes.iter().find(|(n, _)| n == numeric)
                    && (kind != "Numeric" || value.parse::<f64>().map_or(true, |n| n <= 0.0))
                {
                    bad(
                        &format!("attributes.{numeric}"),
                        format!("must be a positive number, got '{value}'"),
                    );
                }
            }
        }
        Some(_) => bad("attributes", "must be an object".into()),
        None => bad("attributes", "is required (type, ncpus, nram)".into()),
    }
    let launch = match launch_spec(raw) {
        Ok(spec) => Some(spec),
        Err(problems) => {
            for (key, message) in problems {
                bad(&key, message);
            }
            None
        }
    };
    if !raw.contains_key("vmType") && !raw.contains_key("vmTypes") {
        bad(
            "vmType",
            "a vmType (or vmTypes with weights) is required".into(),
        );
    }
    let api = raw.get("providerApi").and_then(Value::as_str);
    if api.and_then(|a| a.parse::<ProvisioningApi>().ok()) == Some(ProvisioningApi::SpotFleet)
        && !raw.get("fleetRole").is_some_and(Value::is_string)
    {
        bad(
            "fleetRole",
            "is required for SpotFleet templates (an IAM role ARN)".into(),
        );
    }
    let provider_name = match raw.get("providerName") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => {
            bad("providerName", "must be a strategy name".into());
            None
        }
    };
    match launch {
        Some(launch) if errors.is_empty() => Ok(Template {
            id,
            max_number,
            provider_name,
            launch,
            attributes,
            raw: raw.clone(),
        }),
        _ => Err(errors),
    }
}

/// Parses a templates file: `{"templates": [...]}` or a bare array. Every problem is reported,
/// each naming the template and the field.
pub fn parse(text: &str) -> Result<Vec<Template>, Vec<String>> {
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        vec![format!(
            "not valid JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        )]
    })?;
    let list = match &doc {
        Value::Array(items) => items,
        Value::Object(o) => match o.get("templates") {
            Some(Value::Array(items)) => items,
            _ => {
                return Err(vec![
                    "expected {\"templates\": [...]} or a list of templates".into(),
                ]);
            }
        },
        _ => {
            return Err(vec![
                "expected {\"templates\": [...]} or a list of templates".into(),
            ]);
        }
    };
    let mut errors = Vec::new();
    let mut templates: Vec<Template> = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let Some(obj) = item.as_object() else {
            errors.push(format!("templates[{i}]: must be an object"));
            continue;
        };
        let label = match obj.get("templateId").and_then(Value::as_str) {
            Some(id) => format!("template '{id}' (templates[{i}])"),
            None => format!("templates[{i}]"),
        };
        match check(obj) {
            Ok(t) if templates.iter().any(|o| o.id == t.id) => {
                errors.push(format!(
                    "{label}: templateId: duplicate of an earlier template"
                ));
            }
            Ok(t) => templates.push(t),
            Err(problems) => errors.extend(problems.into_iter().map(|p| format!("{label}: {p}"))),
        }
    }
    if errors.is_empty() {
        Ok(templates)
    } else {
        Err(errors)
    }
}

impl Template {
    /// The attributes object in typed-array form.
    pub fn attributes_json(&self) -> Value {
        Value::Object(
            self.attributes
                .iter()
                .map(|(k, [t, v])| (k.clone(), json!([t, v])))
                .collect(),
        )
    }

    pub fn is_disabled(&self) -> bool {
        self.max_number == 0
    }
}

/// The templates file, re-read off the request path when it changes on disk (a broken edit
/// keeps the last good set). Calls read the cached set; [`TemplateCatalog::refresh`] looks at
/// the file, from a background task.
pub struct TemplateCatalog {
    path: Option<PathBuf>,
    cache: RwLock<(Option<SystemTime>, Arc<Vec<Template>>)>,
}

fn read_file(path: &Path) -> Result<Vec<Template>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read templates file {}: {e}", path.display()))?;
    parse(&text).map_err(|errs| {
        format!(
            "invalid templates file {}:\n  - {}",
            path.display(),
            errs.join("\n  - ")
        )
    })
}

impl TemplateCatalog {
    /// Loads `path`; a file that exists but is invalid is an error naming every problem.
    pub fn load(path: Option<PathBuf>) -> Result<Self, String> {
        let (stamp, templates) = match &path {
            Some(p) => {
                let stamp = std::fs::metadata(p).and_then(|m| m.modified()).ok();
                (stamp, read_file(p)?)
            }
            None => (None, Vec::new()),
        };
        Ok(Self {
            path,
            cache: RwLock::new((stamp, Arc::new(templates))),
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn all(&self) -> Arc<Vec<Template>> {
        Arc::clone(&self.cache.read().expect("catalog lock").1)
    }

    pub fn get(&self, id: &str) -> Option<Template> {
        self.all().iter().find(|t| t.id == id).cloned()
    }

    /// Re-reads the file when its modification time changed; true when new templates were
    /// taken. The file system is touched off the async threads.
    pub async fn refresh(&self) -> bool {
        let Some(path) = self.path.clone() else {
            return false;
        };
        let seen = self.cache.read().expect("catalog lock").0;
        let read = tokio::task::spawn_blocking(move || {
            let stamp = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            if stamp == seen {
                return None;
            }
            Some((stamp, read_file(&path), path))
        })
        .await;
        match read {
            Ok(Some((stamp, Ok(templates), path))) => {
                tracing::info!(path = %path.display(), count = templates.len(), "templates reloaded");
                *self.cache.write().expect("catalog lock") = (stamp, Arc::new(templates));
                true
            }
            Ok(Some((stamp, Err(e), _))) => {
                tracing::error!(error = %e, "templates file changed but is invalid; keeping the previous templates");
                self.cache.write().expect("catalog lock").0 = stamp;
                false
            }
            Ok(None) => false,
            Err(e) => {
                tracing::error!(error = %e, "templates refresh task failed");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests;
