//! Programs from Debian's packages that tests need (chromium, tmux, postgresql), installed
//! with apt-get when missing: as root, or through `sudo -n`; under `flock`, so that tests and
//! test processes that get there at once install them once. A test that cannot install them
//! fails; it never skips.

use std::path::Path;
use std::process::{Command, Stdio};

use super::pyvenv;

/// Installs `packages` unless every one of `programs` is there: absolute paths, where one
/// directory may be `*` for a version only the package knows (`/usr/lib/postgresql/*/bin/initdb`).
pub fn install(programs: &[&str], packages: &[&str]) {
    if programs.iter().all(|p| present(p)) {
        return;
    }
    // `set --` expands the pattern; its first match (or the pattern itself) is checked.
    let all_present = programs
        .iter()
        .map(|p| format!("( set -- {p}; [ -x \"$1\" ] )"))
        .collect::<Vec<_>>()
        .join(" && ");
    let script = format!(
        r#"set -e
if {all_present}; then exit 0; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends {}"#,
        packages.join(" ")
    );
    let root = running_as_root();
    let lock = pyvenv::cache_dir("apt.lock");
    std::fs::create_dir_all(lock.parent().expect("the cache has a parent")).expect("cache dir");
    let mut cmd = Command::new(if root { "flock" } else { "sudo" });
    if !root {
        cmd.args(["-n", "flock"]);
    }
    let out = cmd
        .arg(&lock)
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("flock and apt-get are needed to install {packages:?}: {e}"));
    assert!(
        out.status.success(),
        "installing Debian's {packages:?} failed ({}): this test needs them.\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for program in programs {
        assert!(
            present(program),
            "apt-get installed {packages:?} but {program} is missing"
        );
    }
}

/// Whether `program` (see [`install`]) is there.
fn present(program: &str) -> bool {
    match program.split_once("/*/") {
        None => Path::new(program).exists(),
        Some((dir, rest)) => std::fs::read_dir(dir)
            .is_ok_and(|entries| entries.flatten().any(|e| e.path().join(rest).exists())),
    }
}

/// Whether the tests run as root (as they do in CI containers).
pub fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}
