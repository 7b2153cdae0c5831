/// Compares a committed document with what the code generates (writing it first under
/// `OHFP_UPDATE_OPENAPI=1`); answers the document.
fn committed_matches(file: &str, generated: String) -> serde_json::Value {
    let generated = generated + "\n";
    let path = format!("{}/openapi/{file}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var("OHFP_UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write the document");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/{file} is out of date; run OHFP_UPDATE_OPENAPI=1 cargo test openapi and commit it"
    );
    serde_json::from_str(&generated).unwrap()
}

/// The committed document must be what the code generates. To refresh it after a deliberate
/// change: `OHFP_UPDATE_OPENAPI=1 cargo test openapi`.
#[test]
fn committed_openapi_matches_the_code() {
    let doc = committed_matches("openapi.json", ohfp::run::openapi_json());
    assert_eq!(doc["info"]["license"]["identifier"], "Apache-2.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    // Every route of the spec's provider table is documented.
    for (method, path) in [
        ("post", "/api/v1/providers/operations"),
        ("post", "/api/v1/providers/selection"),
        ("post", "/api/v1/providers"),
        ("get", "/api/v1/providers"),
        ("delete", "/api/v1/providers/{name}"),
        ("put", "/api/v1/providers/{name}"),
        ("put", "/api/v1/providers/configuration"),
        ("get", "/api/v1/providers/configuration"),
        ("post", "/api/v1/providers/{name}/health"),
        ("get", "/api/v1/providers/health"),
        ("get", "/api/v1/providers/{name}/health"),
        ("get", "/api/v1/providers/metrics"),
        ("get", "/api/v1/providers/{name}/metrics"),
        ("get", "/api/v1/providers/{name}/capabilities"),
        ("get", "/health"),
        ("get", "/ready"),
        ("get", "/metrics"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing from the document"
        );
    }
}

/// The provider protocol's document, generated from the typed contract, likewise.
#[test]
fn committed_provider_protocol_openapi_matches_the_code() {
    let doc = committed_matches(
        "provider-protocol.json",
        ohfp::providers::http::protocol::openapi_json(),
    );
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    for path in [
        "/instances",
        "/instances/status",
        "/instances/terminate",
        "/validate",
    ] {
        assert!(doc["paths"][path]["post"].is_object(), "post {path}");
    }
    for path in ["/health", "/capabilities"] {
        assert!(doc["paths"][path]["get"].is_object(), "get {path}");
    }
}
