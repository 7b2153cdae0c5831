//! A throwaway PostgreSQL cluster for the tests: Debian's `postgresql` (installed with apt-get
//! when missing, see `debian`), one cluster per test process, started on first use in a temp
//! dir, listening on a free loopback port and on a unix socket in that dir, with trust
//! authentication and durability off. Each test takes a database of its own from
//! [`fresh_database_url`]. A test that cannot install or start it fails; it never skips.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{debian, free_port};

/// Debian installs each major version's programs under its own directory.
const INITDB: &str = "/usr/lib/postgresql/*/bin/initdb";

/// The cluster's superuser, the same whoever runs the tests.
const SUPERUSER: &str = "ohfp";

/// Seconds the server gets to accept connections.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// Stops the server and removes its dir once the test process (`$1`) is gone; `$2` is the dir.
/// Statics are never dropped, and a test process may end by a signal, so the cleanup lives in
/// a process of its own rather than in a `Drop` or a parent-death signal: PR_SET_PDEATHSIG
/// would stop the server but could not remove the dir, and it fires when the thread that
/// started the server ends, not the process. The watchdog runs in a process group of its own
/// (as does the server), so that Ctrl-C on the test run does not end it before it cleans up;
/// it is a subshell in the background, left by the `sh` the test starts and waits for.
const WATCHDOG: &str = r#"(
while kill -0 "$1" 2>/dev/null; do sleep 1; done
pid=
read -r pid < "$2/data/postmaster.pid" 2>/dev/null
if [ -n "$pid" ]; then
    kill -INT "$pid" 2>/dev/null
    waited=0
    while kill -0 "$pid" 2>/dev/null && [ $waited -lt 30 ]; do sleep 1; waited=$((waited + 1)); done
    kill -KILL "$pid" 2>/dev/null
fi
rm -rf "$2"
) &"#;

struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

static CLUSTER: LazyLock<Cluster> = LazyLock::new(Cluster::start);

/// A new empty database on the test process's cluster (started on first use):
/// `postgres://ohfp@127.0.0.1:PORT/NAME`. Blocking but short, so callable from async tests.
pub fn fresh_database_url() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let cluster = &*CLUSTER;
    let name = format!(
        "ohfp_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    // Over the socket, so that creating databases does not depend on the TCP listener.
    let admin = format!(
        "host={} port={} user={SUPERUSER} dbname=postgres",
        cluster.dir.display(),
        cluster.port
    );
    cluster.psql(&admin, &format!("CREATE DATABASE {name}"));
    cluster.url(&name)
}

/// The database that stands for the SQLite file `db` in the `api_pg` run: a fresh one the first
/// time, the same one after. Tests restart an app on the same store by building its
/// configuration again from the same path (`test_config(&app.db)`), so the path names the
/// database.
pub fn database_url_for(db: &Path) -> String {
    static BY_PATH: LazyLock<Mutex<HashMap<PathBuf, String>>> = LazyLock::new(Default::default);
    let mut by_path = BY_PATH.lock().unwrap_or_else(PoisonError::into_inner);
    by_path
        .entry(db.to_path_buf())
        .or_insert_with(fresh_database_url)
        .clone()
}

/// The cluster's `postgres` database, for tests that look at the server itself.
pub fn admin_url() -> String {
    CLUSTER.url("postgres")
}

/// Runs `sql` with psql on `url` (or a libpq connection string); its unaligned, tuples-only
/// output, trimmed. Panics with psql's message when the statement fails.
pub fn psql(url: &str, sql: &str) -> String {
    CLUSTER.psql(url, sql)
}

impl Cluster {
    fn start() -> Self {
        debian::install(&[INITDB], &["postgresql"]);
        let bin = newest_bin_dir();
        let owner = Owner::detect();
        let dir = tempfile::Builder::new()
            .prefix("ohfp-postgres-")
            .tempdir()
            .expect("a temp dir for the cluster")
            .keep();
        start_watchdog(&dir);
        if let Some((uid, gid)) = owner.ids {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {} to nobody: {e}", dir.display()));
        }
        let data = dir.join("data");
        let initdb = owner
            .command(&bin.join("initdb"), &dir)
            .arg("-D")
            .arg(&data)
            .args(["-U", SUPERUSER, "--auth=trust", "--no-sync", "--no-locale"])
            .args(["-E", "UTF8", "--no-instructions"])
            .output()
            .unwrap_or_else(|e| panic!("initdb starts: {e}"));
        assert_ran("initdb", &initdb);
        // A port free a moment ago may be taken by the time the server binds it: try again.
        let mut cluster = Self { bin, dir, port: 0 };
        let mut attempt = 0;
        loop {
            attempt += 1;
            cluster.port = free_port();
            let log = cluster.dir.join(format!("postgres-{}.log", cluster.port));
            let server = owner
                .command(&cluster.bin.join("postgres"), &cluster.dir)
                .arg("-D")
                .arg(&data)
                .args(["-p", &cluster.port.to_string(), "-k"])
                .arg(&cluster.dir)
                .args(["-c", "listen_addresses=127.0.0.1"])
                .args(["-c", "max_connections=500"])
                .args(["-c", "fsync=off"])
                .args(["-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("the server's log file"))
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("postgres starts: {e}"));
            match cluster.wait_ready(server, &log) {
                Ok(()) => return cluster,
                Err(log_text) if attempt < 3 && log_text.contains("Address already in use") => {}
                Err(log_text) => panic!(
                    "PostgreSQL ({}) did not start on 127.0.0.1:{}: {log_text}",
                    cluster.bin.display(),
                    cluster.port
                ),
            }
        }
    }

    /// Polls `pg_isready` until the server accepts connections; the server's log when it
    /// exits or does not get there in time.
    fn wait_ready(&self, mut server: Child, log: &Path) -> Result<(), String> {
        let started = Instant::now();
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", SUPERUSER, "-d", "postgres", "-t", "5"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            let read_log = || std::fs::read_to_string(log).unwrap_or_default();
            if let Ok(Some(status)) = server.try_wait() {
                return Err(format!("postgres exited ({status}):\n{}", read_log()));
            }
            if started.elapsed() > START_DEADLINE {
                return Err(format!(
                    "not accepting connections after {START_DEADLINE:?}:\n{}",
                    read_log()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    fn psql(&self, target: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                target,
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("psql starts: {e}"));
        assert_ran(&format!("psql {target} -c {sql:?}"), &out);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// The `bin` dir of the newest major version installed.
fn newest_bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| panic!("no {INITDB} after installing postgresql"))
}

/// Who the server runs as: PostgreSQL refuses to run as root, so root (here and in CI) hands
/// it to `nobody` through `setpriv` (util-linux, which execs rather than forks, so the pid
/// spawned is the server's); anyone else runs it as themselves.
struct Owner {
    ids: Option<(u32, u32)>,
}

impl Owner {
    fn detect() -> Self {
        if !debian::running_as_root() {
            return Self { ids: None };
        }
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, "nobody"])
                .output()
                .unwrap_or_else(|e| panic!("id starts: {e}"));
            assert_ran("id nobody", &out);
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("id prints a number")
        };
        Self {
            ids: Some((id("-u"), id("-g"))),
        }
    }

    /// `program` as the owner, in `dir` (`nobody` cannot enter root's working directory).
    fn command(&self, program: &Path, dir: &Path) -> Command {
        let mut cmd = match self.ids {
            None => Command::new(program),
            Some((uid, gid)) => {
                let mut cmd = Command::new("setpriv");
                cmd.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .args(["--clear-groups", "--"])
                    .arg(program);
                cmd
            }
        };
        cmd.current_dir(dir).stdin(Stdio::null());
        cmd
    }
}

fn start_watchdog(dir: &Path) {
    let started = Command::new("sh")
        .args(["-c", WATCHDOG, "ohfp-postgres-watchdog"])
        .arg(std::process::id().to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .status()
        .unwrap_or_else(|e| panic!("the cluster's watchdog starts: {e}"));
    assert!(
        started.success(),
        "the cluster's watchdog starts: {started}"
    );
}

fn assert_ran(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
