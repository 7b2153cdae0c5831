//! What the AWS tests share: provider-level templates, and config/aws.json pointed at
//! moto the way an operator would point it at a region.

use std::path::Path;

use ohfp::config::Config;
use serde_json::{Value, json};

use super::moto::Moto;

pub fn templates() -> Vec<Value> {
    let file: Value =
        serde_json::from_str(include_str!("awsprov_templates.json")).expect("templates");
    file["templates"].as_array().expect("a list").clone()
}

pub fn template(id: &str) -> Value {
    templates()
        .into_iter()
        .find(|t| t["templateId"] == id)
        .unwrap_or_else(|| panic!("no template {id}"))
}

/// config/aws.json loaded through its `${AWS_ENDPOINT_URL}` and
/// `${AWS_SECONDARY_ENDPOINT_URL}` variables, on port 0 with a database in `dir`.
pub fn production_config(dir: &Path, primary: &Moto, secondary: &Moto) -> Config {
    let (primary, secondary) = (primary.url.clone(), secondary.url.clone());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/aws.json");
    let lookup = move |name: &str| match name {
        "AWS_ENDPOINT_URL" => Some(primary.clone()),
        "AWS_SECONDARY_ENDPOINT_URL" => Some(secondary.clone()),
        _ => None,
    };
    let mut cfg = ohfp::config::load_with_env(&[&path], &[], &lookup).expect("aws.json loads");
    cfg.server.bind = "127.0.0.1:0".into();
    crate::helpers::use_test_database(&mut cfg, &dir.join("ohfp.db"));
    cfg.logging.dir = None;
    cfg.strategy.health_check_initial_delay = 3600.0;
    // The test has no credential chain; the file's strategies get moto's dummy keys.
    for p in &mut cfg.providers {
        p.config.insert("access_key_id".into(), json!("test"));
        p.config.insert("secret_access_key".into(), json!("test"));
    }
    cfg
}
