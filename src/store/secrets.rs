//! Secret fields of stored strategies are sealed at rest: each secret-looking string of a
//! strategy's `config` (see [`is_secret_key`]) is stored as `enc:v1:<base64(nonce ‖ ciphertext)>`,
//! XChaCha20-Poly1305 under a key that is not in the database: `OHFP_SECRET_KEY` (base64 of 32
//! bytes) when set, else a key file (`database.secret_key_file`, by default the database path
//! with `.key` added) created 0600 with 32 random bytes at first start. A copy of the database
//! without the key shows no secret; a wrong key is an error at start, not a silent default.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::{Map, Value};

use crate::domain::is_secret_key;

const SEALED: &str = "enc:v1:";
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
/// The environment variable that carries the key instead of a file.
pub const KEY_ENV: &str = "OHFP_SECRET_KEY";

fn key_from_env() -> Option<String> {
    std::env::var(KEY_ENV).ok().filter(|v| !v.trim().is_empty())
}

fn key_file(file: Option<&str>, db_path: &str) -> String {
    file.map_or_else(|| format!("{db_path}.key"), str::to_string)
}

#[derive(Clone)]
pub struct SecretKey(XChaCha20Poly1305);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl SecretKey {
    fn from_bytes(bytes: &[u8], source: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            bytes.len() == KEY_BYTES,
            "the secret key in {source} has {} bytes; it must have {KEY_BYTES}",
            bytes.len()
        );
        Ok(Self(XChaCha20Poly1305::new(bytes.into())))
    }

    /// The key of the database at `db_path`: from `OHFP_SECRET_KEY`, else from `file` (default
    /// `<db_path>.key`), created at first start. A key file group or others may read is refused.
    pub fn load(file: Option<&str>, db_path: &str) -> anyhow::Result<Self> {
        if let Some(encoded) = key_from_env() {
            let bytes = STANDARD
                .decode(encoded.trim())
                .map_err(|e| anyhow::anyhow!("{KEY_ENV} is not base64: {e}"))?;
            return Self::from_bytes(&bytes, KEY_ENV);
        }
        Self::from_file(Path::new(&key_file(file, db_path)))
    }

    /// Where [`SecretKey::load`] takes the key from, for operators: the variable or the file.
    pub fn source(file: Option<&str>, db_path: &str) -> String {
        match key_from_env() {
            Some(_) => format!("the key in {KEY_ENV}"),
            None => key_file(file, db_path),
        }
    }

    fn from_file(path: &Path) -> anyhow::Result<Self> {
        let shown = path.display();
        match std::fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                anyhow::ensure!(
                    mode & 0o077 == 0,
                    "secret key file {shown} has mode {mode:04o}: group and others must have no access (chmod 600 {shown})"
                );
                let bytes = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("cannot read secret key file {shown}: {e}"))?;
                Self::from_bytes(&bytes, &shown.to_string())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(e) => anyhow::bail!("cannot read secret key file {shown}: {e}"),
        }
    }

    fn create(path: &Path) -> anyhow::Result<Self> {
        let shown = path.display();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create directory {}: {e}", dir.display()))?;
        }
        let mut bytes = [0u8; KEY_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        // create_new: two processes starting at once never overwrite each other's key.
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()));
        match written {
            Ok(()) => {
                tracing::info!(file = %shown, "created the key that seals stored secrets; back it up with the database");
                Self::from_bytes(&bytes, &shown.to_string())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::from_file(path),
            Err(e) => anyhow::bail!("cannot create secret key file {shown}: {e}"),
        }
    }

    fn seal_one(&self, clear: &str) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|e| format!("no randomness to seal with: {e}"))?;
        let sealed = self
            .0
            .encrypt(XNonce::from_slice(&nonce), clear.as_bytes())
            .map_err(|_| "cannot seal a secret".to_string())?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(format!("{SEALED}{}", STANDARD.encode(out)))
    }

    fn open_one(&self, stored: &str) -> Result<String, String> {
        let Some(encoded) = stored.strip_prefix(SEALED) else {
            return Ok(stored.to_string());
        };
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|e| format!("sealed value is not base64: {e}"))?;
        if bytes.len() < NONCE_BYTES {
            return Err("sealed value is too short".into());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let clear = self
            .0
            .decrypt(XNonce::from_slice(nonce), sealed)
            .map_err(|_| {
                "cannot open a sealed secret: the secret key is not the one it was sealed with"
                    .to_string()
            })?;
        String::from_utf8(clear).map_err(|_| "a sealed secret is not UTF-8".into())
    }

    /// `config` with every secret string sealed (already sealed ones kept).
    pub fn seal(&self, config: &Map<String, Value>) -> Result<Map<String, Value>, String> {
        walk(config, &mut |v| {
            if v.starts_with(SEALED) {
                Ok(v.to_string())
            } else {
                self.seal_one(v)
            }
        })
    }

    /// `config` with every sealed string opened.
    pub fn open(&self, config: &Map<String, Value>) -> Result<Map<String, Value>, String> {
        walk(config, &mut |v| self.open_one(v))
    }
}

/// Whether `config` holds a secret string stored in clear (written before sealing existed).
pub fn has_clear_secret(config: &Map<String, Value>) -> bool {
    let mut clear = false;
    let _ = walk(config, &mut |v| {
        clear |= !v.starts_with(SEALED);
        Ok(v.to_string())
    });
    clear
}

/// `config` with `f` applied to each string under a secret key, at any depth.
fn walk(
    config: &Map<String, Value>,
    f: &mut impl FnMut(&str) -> Result<String, String>,
) -> Result<Map<String, Value>, String> {
    config
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) if is_secret_key(k) => Value::String(f(s)?),
                Value::Object(inner) => Value::Object(walk(inner, f)?),
                other => other.clone(),
            };
            Ok((k.clone(), v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key() -> SecretKey {
        SecretKey::from_bytes(&[7u8; KEY_BYTES], "test").unwrap()
    }

    #[test]
    fn secrets_are_sealed_at_any_depth_and_opened_back() {
        let cfg = json!({"region": "x", "secret_access_key": "abc", "auth": {"api_key": "k", "user": "u"}});
        let cfg = cfg.as_object().unwrap();
        let sealed = key().seal(cfg).unwrap();
        let text = serde_json::to_string(&sealed).unwrap();
        assert!(
            !text.contains("\"abc\"") && !text.contains("\"k\""),
            "{text}"
        );
        assert_eq!(sealed["region"], "x");
        assert_eq!(sealed["auth"]["user"], "u");
        assert!(!has_clear_secret(&sealed));
        assert!(has_clear_secret(cfg));
        assert_eq!(&key().open(&sealed).unwrap(), cfg);
        // Sealing twice keeps the sealed value.
        assert_eq!(key().seal(&sealed).unwrap(), sealed);
    }

    #[test]
    fn a_wrong_key_is_an_error_not_a_secret() {
        let cfg = json!({"session_token": "t"});
        let sealed = key().seal(cfg.as_object().unwrap()).unwrap();
        let other = SecretKey::from_bytes(&[8u8; KEY_BYTES], "test").unwrap();
        let err = other.open(&sealed).unwrap_err();
        assert!(err.contains("not the one it was sealed with"), "{err}");
    }

    #[test]
    fn the_key_file_is_created_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.key");
        let cfg = json!({"password": "p"});
        let sealed = SecretKey::from_file(&path)
            .unwrap()
            .seal(cfg.as_object().unwrap())
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = SecretKey::from_file(&path).unwrap();
        assert_eq!(again.open(&sealed).unwrap()["password"], "p");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SecretKey::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("mode 0644"), "{err}");
    }
}
