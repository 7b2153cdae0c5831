//! Which configuration values are secrets: never shown in answers or logs, sealed at rest.

/// Keys whose values never leave the service in clear.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "secret",
        "password",
        "token",
        "access_key",
        "api_key",
        "session_key",
        "credential",
    ]
    .iter()
    .any(|s| k.contains(s))
}
