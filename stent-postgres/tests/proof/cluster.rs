//! A PostgreSQL server of the test's own, in a temporary directory on a free port, that a
//! test may stop and start (never the shared server). Password authentication over TCP.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// The superuser's password on a [`TempCluster`].
pub(crate) const PASSWORD: &str = "pw-Sekr1t-4711";

pub(crate) struct TempCluster {
    dir: TempDir,
    bindir: PathBuf,
    port: u16,
}

impl std::fmt::Debug for TempCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TempCluster(127.0.0.1:{})", self.port)
    }
}

/// The server binaries: `STENT_PG_BINDIR`, else `pg_config --bindir`, else Debian's path.
fn bindir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("STENT_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let candidates = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .into_iter()
        .chain(
            std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join("bin")),
        );
    candidates
        .into_iter()
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
        .ok_or_else(|| "no initdb/pg_ctl found (set STENT_PG_BINDIR)".to_string())
}

/// A free loopback port (free when asked; the server binds it a moment later).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl TempCluster {
    /// Creates and starts a server, or says why it cannot.
    pub(crate) fn start() -> Result<Self, String> {
        let bindir = bindir()?;
        let dir = tempfile::Builder::new()
            .prefix("stent-pg-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        // The server runs as `postgres` when the tests run as root (it refuses root).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .map_err(|e| format!("chmod: {e}"))?;
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, PASSWORD).map_err(|e| format!("pwfile: {e}"))?;
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| format!("chmod: {e}"))?;
        let cluster = TempCluster {
            dir,
            bindir,
            port: free_port(),
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data().display().to_string(),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
            ],
        )?;
        cluster.start_server()?;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bindir.join(program);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
            Err(format!(
                "{program} failed: {}{}\n{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub(crate) fn start_server(&self) -> Result<(), String> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        let data = self.data().display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &opts, "-w", "-t", "60", "start",
            ],
        )
    }

    /// Stops the server: `fast` ends every session at once, as an operator's restart does.
    pub(crate) fn stop_server(&self) {
        let data = self.data().display().to_string();
        if let Err(e) = self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]) {
            panic!("stopping the test server: {e}");
        }
    }

    /// A URL for the superuser with `password`, to database `db`.
    pub(crate) fn url(&self, password: &str, db: &str) -> String {
        format!(
            "postgres://postgres:{password}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    #[allow(dead_code)]
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let data = self.data().display().to_string();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}

/// A started cluster, or `None` after a loud skip (a panic under `STENT_REQUIRE_BACKENDS=1`).
pub(crate) fn start_or_skip(test: &str) -> Option<TempCluster> {
    match TempCluster::start() {
        Ok(c) => Some(c),
        Err(reason) if crate::support::required() => {
            panic!("{test}: cannot start a PostgreSQL server of its own: {reason}")
        }
        Err(reason) => {
            eprintln!("SKIPPED {test}: cannot start a PostgreSQL server of its own: {reason}");
            None
        }
    }
}
