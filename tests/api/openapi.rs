/// The committed document must be what the code generates. To refresh it after a deliberate
/// change: `OHFP_UPDATE_OPENAPI=1 cargo test openapi`.
#[test]
fn committed_openapi_matches_the_code() {
    let generated = ohfp::run::openapi_json() + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    if std::env::var("OHFP_UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(path, &generated).expect("write openapi/openapi.json");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date; run OHFP_UPDATE_OPENAPI=1 cargo test openapi and commit it"
    );
    let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
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
