use serde_json::json;

use super::*;

fn cfg(v: Value) -> Result<HttpConfig, (String, String)> {
    HttpConfig::from_spec(v.as_object().unwrap())
}

fn field_of(v: Value) -> String {
    cfg(v).unwrap_err().0
}

#[test]
fn the_guides_settings_read_with_their_defaults() {
    let c = cfg(
        json!({"endpoint_url": "https://pool.example:8443/v1/", "api_key": "k-1",
                       "region": "region1", "timeout": 30, "max_retries": 3}),
    )
    .unwrap();
    assert_eq!(c.api_key.as_ref().map(ApiKey::expose), Some("k-1"));
    assert_eq!((c.timeout, c.max_retries), (30.0, 3));
    let bare = cfg(json!({"endpoint_url": "http://127.0.0.1:9000", "api_key": "", "region": " "}))
        .unwrap();
    assert_eq!((bare.api_key, bare.region), (None, None));
    assert_eq!((bare.timeout, bare.max_retries), (30.0, 3));
}

#[test]
fn config_errors_name_the_field() {
    let url = "http://127.0.0.1:9000";
    assert_eq!(field_of(json!({})), "config");
    for bad in [
        "localhost:9000",
        "ftp://host/x",
        "http://user:pw@host",
        "http://host/x?a=1",
        "not a url",
    ] {
        assert_eq!(
            field_of(json!({"endpoint_url": bad})),
            "config.endpoint_url",
            "{bad}"
        );
    }
    for t in [json!(0), json!(-1), json!(3600.5)] {
        assert_eq!(
            field_of(json!({"endpoint_url": url, "timeout": t})),
            "config.timeout"
        );
    }
    assert!(cfg(json!({"endpoint_url": url, "timeout": 3600})).is_ok());
    assert_eq!(
        field_of(json!({"endpoint_url": url, "max_retries": 11})),
        "config.max_retries"
    );
    assert!(cfg(json!({"endpoint_url": url, "max_retries": 10})).is_ok());
    assert_eq!(
        field_of(json!({"endpoint_url": url, "region": "eu west"})),
        "config.region"
    );
    let err = cfg(json!({"endpoint_url": url, "endpont": "x"})).unwrap_err();
    assert!(err.1.contains("unknown field `endpont`"), "{err:?}");
}

#[test]
fn the_key_shows_nowhere_not_even_when_refused() {
    let url = "http://127.0.0.1:9000";
    let c = cfg(json!({"endpoint_url": url, "api_key": "s3cr3t-value"})).unwrap();
    assert!(!format!("{c:?}").contains("s3cr3t"), "{c:?}");
    let (path, msg) = cfg(json!({"endpoint_url": url, "api_key": 98765})).unwrap_err();
    assert_eq!(path, "config.api_key");
    assert!(!msg.contains("98765"), "{msg}");
    let (path, msg) = cfg(json!({"endpoint_url": url, "api_key": "two words"})).unwrap_err();
    assert_eq!(path, "config.api_key");
    assert!(!msg.contains("two words"), "{msg}");
}

#[test]
fn error_answers_map_by_class_then_by_status() {
    let body = json!({"class": "throttling", "code": "SLOW_DOWN", "message": "later"});
    let e = answered_error(Call::Create, 429, body.to_string().as_bytes());
    assert_eq!(
        (e.kind, e.code.as_str()),
        (ProviderErrorKind::Throttling, "SLOW_DOWN")
    );
    assert!(e.message.starts_with("createInstances: "), "{}", e.message);
    let body = json!({"class": "not_found", "code": "NO_SUCH", "message": "gone"});
    let e = answered_error(Call::Status, 404, body.to_string().as_bytes());
    assert_eq!(e.kind, ProviderErrorKind::Validation);
    let e = answered_error(Call::Health, 502, b"<html>bad gateway</html>");
    assert_eq!(
        (e.kind, e.code.as_str()),
        (ProviderErrorKind::Transient, "HTTP_502")
    );
    let e = answered_error(Call::Health, 404, b"no route");
    assert_eq!(
        (e.kind, e.code.as_str()),
        (ProviderErrorKind::Internal, "PROTOCOL_VIOLATION")
    );
}

#[test]
fn answers_that_do_not_fit_the_contract_are_named_by_path() {
    let e = parse_answer::<StatusReport>(
        Call::Status,
        br#"{"machines": [{"instance_id": "i-1", "state": "booting"}], "not_found": []}"#,
    )
    .unwrap_err();
    assert_eq!(e.code, "PROTOCOL_VIOLATION");
    assert!(e.message.contains("machines[0].state"), "{}", e.message);
}
