//! Servers a scenario starts, kills and starts again on its own loopback port: never the
//! shared ones.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A loopback port that was free when asked (the server binds it a moment later).
///
/// # Panics
///
/// If the system has no free port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn wait_until(within: Duration, what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + within;
    while !ready() {
        if Instant::now() >= deadline {
            return Err(format!("{what} not ready within {within:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn kill_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A `redis-server` of the scenario's own, persisting every write before it answers
/// (`appendfsync always`), so a killed and restarted server keeps what it acknowledged.
#[derive(Debug)]
pub struct RedisServer {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port, in a fresh directory.
    ///
    /// # Errors
    ///
    /// `redis-server` is missing or does not answer within 30 s.
    pub fn start() -> Result<RedisServer, String> {
        let dir = tempfile::Builder::new()
            .prefix("stent-redis-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let mut server = RedisServer {
            dir,
            port: free_port(),
            child: None,
        };
        server.start_again()?;
        Ok(server)
    }

    /// The URL to connect to.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server with `SIGKILL`.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// Starts the server again on the same port and directory, waiting until it has
    /// loaded its data and answers `PING`.
    ///
    /// # Errors
    ///
    /// It does not start or answer within 30 s.
    pub fn start_again(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no"])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e}"))?;
        self.child = Some(child);
        let port = self.port;
        wait_until(Duration::from_secs(30), "redis-server", || redis_pong(port))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a Redis server on `port` answers `PING` with `PONG` (not `LOADING`).
fn redis_pong(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// A moto server (the DynamoDB API) of the scenario's own. moto keeps everything in
/// memory: a killed server comes back empty, without the table.
#[derive(Debug)]
pub struct MotoServer {
    command: String,
    port: u16,
    child: Option<Child>,
}

impl MotoServer {
    /// Starts `command` (`STENT_MOTO_SERVER`: moto_server handling one request at a time)
    /// on a free port.
    ///
    /// # Errors
    ///
    /// It cannot be started or does not listen within 60 s.
    pub fn start(command: &str) -> Result<MotoServer, String> {
        let mut server = MotoServer {
            command: command.to_owned(),
            port: free_port(),
            child: None,
        };
        server.start_again()?;
        Ok(server)
    }

    /// The endpoint URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the server with `SIGKILL`.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// Starts a new, empty server on the same port, waiting until it listens.
    ///
    /// # Errors
    ///
    /// It cannot be started or does not listen within 60 s.
    pub fn start_again(&mut self) -> Result<(), String> {
        let child = Command::new(&self.command)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", self.command))?;
        self.child = Some(child);
        let port = self.port;
        wait_until(Duration::from_secs(60), &self.command, || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A PostgreSQL server of the scenario's own, in a temporary data directory, run as the
/// `postgres` user when this process is root (PostgreSQL refuses to run as root). Trust
/// authentication on loopback.
#[derive(Debug)]
pub struct PostgresServer {
    dir: TempDir,
    bindir: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PostgresServer {
    /// Creates a cluster with `initdb` and starts it on a free port.
    ///
    /// # Errors
    ///
    /// The server binaries are missing (`STENT_PG_BINDIR`, `pg_config --bindir` or
    /// `/usr/lib/postgresql/*/bin`), or `initdb` or the start fails.
    pub fn start() -> Result<PostgresServer, String> {
        let bindir = pg_bindir()?;
        let dir = tempfile::Builder::new()
            .prefix("stent-pg-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .map_err(|e| format!("chmod: {e}"))?;
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let server = PostgresServer {
            dir,
            bindir,
            port: free_port(),
            as_postgres,
        };
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "--auth=trust",
            ],
        )?;
        server.start_again()?;
        Ok(server)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bindir.join(program);
        let mut cmd = if self.as_postgres {
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
            return Ok(());
        }
        let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        Err(format!(
            "{program} failed: {}{}\n{log}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server the way a crash does (`pg_ctl stop -m immediate`: no checkpoint,
    /// every session cut); the next start recovers from the write-ahead log.
    ///
    /// # Errors
    ///
    /// `pg_ctl` fails.
    pub fn crash(&self) -> Result<(), String> {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        )
    }

    /// Starts the server (again), waiting until it accepts connections.
    ///
    /// # Errors
    ///
    /// It does not start within 60 s.
    pub fn start_again(&self) -> Result<(), String> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }
}

fn pg_bindir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("STENT_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"));
    from_pg_config
        .into_iter()
        .chain(installed)
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
        .ok_or_else(|| "no initdb/pg_ctl found (set STENT_PG_BINDIR)".to_owned())
}
