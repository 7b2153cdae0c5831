//! What operators deploy, checked without deploying it: the systemd unit (its hardening keys,
//! `systemd-analyze verify`, and `systemd-analyze security` offline) and the compose trial
//! (every file, path and variable it names exists and the configuration it makes loads, with
//! the strategies pointed at the moto service). Neither systemd nor docker runs here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ohfp::config;
use ohfp::hostfactory::templates::TemplateCatalog;
use serde_json::Value;

use crate::support::pyvenv;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The unit's `[Service]` keys and their values (a key given twice has two values).
fn unit_service_keys(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        let (key, value) = line.split_once('=').expect("key=value");
        if section == "[Service]" {
            keys.entry(key.to_string())
                .or_default()
                .push(value.to_string());
        }
    }
    keys
}

/// `systemd-analyze`, installed from Debian under the shared apt lock when missing.
fn systemd_analyze() -> &'static str {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        let lock = pyvenv::cache_dir("apt.lock");
        let status = Command::new("flock")
            .arg(lock)
            .args([
                "sh",
                "-c",
                "command -v systemd-analyze || (apt-get update -q && apt-get install -y -q systemd)",
            ])
            .status()
            .expect("flock and apt-get run");
        assert!(
            status.success(),
            "installing systemd (systemd-analyze) failed"
        );
    }
    "systemd-analyze"
}

#[test]
fn the_systemd_unit_runs_ohfp_serve_hardened() {
    let text = std::fs::read_to_string(format!("{ROOT}/config/ohfp.service")).unwrap();
    let keys = unit_service_keys(&text);
    let one = |key: &str| -> &str {
        let values = keys.get(key).unwrap_or_else(|| panic!("{key} is set"));
        values.last().unwrap()
    };
    let exec: Vec<&str> = one("ExecStart").split_whitespace().collect();
    assert!(exec[0].ends_with("/ohfp") && exec[1] == "serve", "{exec:?}");
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("CapabilityBoundingSet", ""),
        ("UMask", "0077"),
        ("MemoryDenyWriteExecute", "yes"),
        ("LockPersonality", "yes"),
        ("RestrictNamespaces", "yes"),
        ("Restart", "on-failure"),
        ("StateDirectory", "ohfp"),
        ("ConfigurationDirectory", "ohfp"),
        ("User", "ohfp"),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    assert_eq!(keys["SystemCallFilter"][0], "@system-service");
    // The drain: in-flight requests (60 s in aws.json) and 20 s for background tasks.
    let stop: u64 = one("TimeoutStopSec").parse().unwrap();
    assert!(stop >= 80, "TimeoutStopSec={stop}");
    let env: Vec<&str> = keys["Environment"].iter().map(String::as_str).collect();
    assert!(env.contains(&"OHFP_CONFIG=/etc/ohfp/ohfp.json"), "{env:?}");
    assert!(
        env.contains(&"OHFP_DATABASE__PATH=/var/lib/ohfp/ohfp.db"),
        "the database in StateDirectory: {env:?}"
    );

    // systemd checks it too, with ExecStart pointing at a binary that exists here.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("ohfp.service");
    std::fs::write(
        &unit,
        text.replace("/usr/local/bin/ohfp", env!("CARGO_BIN_EXE_ohfp")),
    )
    .unwrap();
    let tool = systemd_analyze();
    let out = Command::new(tool)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(tool)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for ohfp.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("an exposure level: {report}"))
        .parse()
        .unwrap();
    assert!(exposure <= 2.0, "exposure {exposure}:\n{report}");
}

/// docker/compose.yaml read as JSON (PyYAML in a venv; docker compose is not here).
fn compose() -> Value {
    let venv = pyvenv::install(&pyvenv::cache_dir("pyyaml-venv"), "PyYAML==6.0.2");
    let out = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(format!("{ROOT}/docker/compose.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "compose.yaml is YAML: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_compose_trial_names_what_exists_and_points_aws_at_moto() {
    let compose = compose();
    let docker = Path::new(ROOT).join("docker");
    let ohfp = &compose["services"]["ohfp"];
    let moto = &compose["services"]["moto"];
    assert!(
        moto["image"]
            .as_str()
            .unwrap()
            .starts_with("motoserver/moto:")
    );
    assert!(moto["healthcheck"]["test"].is_array());
    assert_eq!(
        ohfp["depends_on"]["moto"]["condition"], "service_healthy",
        "ohfp starts once moto answers"
    );

    // The image: built from the Dockerfile, which puts config/ in /etc/ohfp.
    let context = docker.join(ohfp["build"]["context"].as_str().unwrap());
    let dockerfile = context.join(ohfp["build"]["dockerfile"].as_str().unwrap());
    let dockerfile_text = std::fs::read_to_string(&dockerfile).unwrap();
    assert!(dockerfile_text.contains("COPY config /etc/ohfp"));
    let in_image = |path: &str| -> PathBuf {
        context.join(
            path.strip_prefix("/etc/ohfp/")
                .map(|p| format!("config/{p}"))
                .unwrap_or_else(|| panic!("{path} is not under /etc/ohfp")),
        )
    };

    // Every mounted file exists; a named volume is declared.
    let mut mounted = BTreeMap::new();
    for volume in ohfp["volumes"].as_array().unwrap() {
        let parts: Vec<&str> = volume.as_str().unwrap().split(':').collect();
        if parts[0].starts_with('.') {
            let source = docker.join(parts[0]);
            assert!(source.is_file(), "{} exists", source.display());
            mounted.insert(parts[1].to_string(), source);
        } else {
            assert!(
                compose["volumes"].get(parts[0]).is_some(),
                "{} declared",
                parts[0]
            );
            assert_eq!(parts[1], "/var/lib/ohfp", "the data volume");
        }
    }

    // The configuration the container loads: the file OHFP_CONFIG names, with the compose
    // environment over the Dockerfile's.
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for line in dockerfile_text.lines().filter(|l| !l.starts_with('#')) {
        for word in line.split_whitespace() {
            if let Some((k, v)) = word.split_once('=')
                && k.starts_with("OHFP_")
            {
                env.insert(k.to_string(), v.to_string());
            }
        }
    }
    for (k, v) in ohfp["environment"].as_object().unwrap() {
        env.insert(k.clone(), v.as_str().unwrap().to_string());
    }
    let config_file = in_image(&env["OHFP_CONFIG"]);
    assert!(config_file.is_file(), "{}", config_file.display());
    let aws_json = std::fs::read_to_string(&config_file).unwrap();
    for var in env
        .keys()
        .filter(|k| k.starts_with("AWS_") && k.contains("ENDPOINT"))
    {
        assert!(
            aws_json.contains(&format!("${{{var}")),
            "aws.json reads {var}"
        );
    }
    let templates = &env["OHFP_HOSTFACTORY__TEMPLATES_PATH"];
    let vars: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k.as_str() != "OHFP_CONFIG")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let cfg = config::load_with_env(&[config_file.as_path()], &vars, &|name| {
        env.get(name).cloned()
    })
    .expect("the trial's configuration loads");
    let moto_url = "http://moto:5000";
    assert_eq!(cfg.providers.len(), 2);
    for p in &cfg.providers {
        assert_eq!(p.provider_type, "aws", "{}", p.name);
        assert_eq!(
            p.config["endpoint_url"], moto_url,
            "{} points at moto",
            p.name
        );
    }
    assert_eq!(env["AWS_ACCESS_KEY_ID"], "trial", "dummy credentials");
    assert_eq!(
        cfg.database.path, "/var/lib/ohfp/data/ohfp.db",
        "in the volume"
    );
    assert_eq!(cfg.server.bind, "0.0.0.0:8000");
    let published = ohfp["ports"][0].as_str().unwrap();
    assert!(published.ends_with(":8000"), "{published}");

    // The trial templates: mounted where the configuration reads them, and valid.
    let source = mounted
        .get(templates)
        .expect("the templates file is mounted");
    let catalog = TemplateCatalog::load(Some(source.clone())).expect("the trial templates load");
    let ids: Vec<String> = catalog.all().iter().map(|t| t.id.clone()).collect();
    assert_eq!(ids, ["Trial-OnDemand", "Trial-Fleet"]);
    let healthcheck = ohfp["healthcheck"]["test"].as_array().unwrap();
    assert_eq!(
        healthcheck[1], "ohfp",
        "the health check runs the binary in the image"
    );
}
