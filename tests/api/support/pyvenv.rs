//! Python packages from PyPI for the tests, each pinned in a venv of its own: created and
//! installed once, under `flock` so that tests (and test processes) that get there at once
//! install it once; a marker file naming the spec makes it a no-op afterwards. A test that
//! cannot install fails; it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `$HOME/.cache/ohfp/NAME`, where the venvs live unless a test is told otherwise.
pub fn cache_dir(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
        .join(".cache/ohfp")
        .join(name)
}

/// Makes `venv` hold `spec` (a pip requirement, pinned); returns `venv`.
pub fn install(venv: &Path, spec: &str) -> PathBuf {
    let marker = venv.join(".ohfp-spec");
    if std::fs::read_to_string(&marker).is_ok_and(|s| s.trim() == spec) {
        return venv.to_path_buf();
    }
    std::fs::create_dir_all(venv.parent().expect("venv has a parent")).expect("venv parent");
    let script = r#"set -e
if [ "$(cat "$1/.ohfp-spec" 2>/dev/null)" = "$2" ]; then exit 0; fi
[ -x "$1/bin/python" ] || python3 -m venv "$1"
"$1/bin/pip" install -q --disable-pip-version-check "$2"
echo "$2" > "$1/.ohfp-spec""#;
    let status = Command::new("flock")
        .arg(venv.with_extension("lock"))
        .args(["sh", "-c", script, "install-venv"])
        .arg(venv)
        .arg(spec)
        .status()
        .unwrap_or_else(|e| panic!("flock and python3 are needed to install {spec}: {e}"));
    assert!(
        status.success(),
        "installing {spec} into {} failed",
        venv.display()
    );
    venv.to_path_buf()
}
