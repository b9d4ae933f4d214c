//! Servers a test starts itself, on a free loopback port, to kill, freeze, crash or restart:
//! never the shared ones the other tests use. Each one is stopped when dropped.
//!
//! [`RedisServer`] (`redis-server`), [`MotoServer`] (`STENT_MOTO_SERVER`, the DynamoDB
//! API) and [`PostgresServer`] (`initdb` and `pg_ctl`, run as the `postgres` user when the
//! tests run as root). [`or_skip`] turns "cannot start" into a loud skip, or a failure
//! under `STENT_REQUIRE_BACKENDS=1`.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A loopback port that was free when asked (a server binds it a moment later).
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

/// `started`, or `None` after a loud skip naming `test`; under `STENT_REQUIRE_BACKENDS=1`
/// a server that cannot start fails the test instead.
///
/// # Panics
///
/// `started` is an error and backends are required.
pub fn or_skip<S>(test: &str, started: Result<S, String>) -> Option<S> {
    match started {
        Ok(server) => Some(server),
        Err(reason) if crate::backends_required() => {
            panic!("{test}: cannot start a server of its own: {reason}")
        }
        Err(reason) => {
            eprintln!("SKIPPED {test}: cannot start a server of its own: {reason}");
            None
        }
    }
}

fn temp_dir(prefix: &str) -> Result<TempDir, String> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))
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

fn spawn(command: &mut Command, what: &str) -> Result<Child, String> {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))
}

fn kill_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A `redis-server` of the test's own, in a fresh directory, with the test's arguments
/// (e.g. `--appendonly yes --appendfsync always` to keep every acknowledged write across
/// a kill, `--cluster-enabled yes`).
#[derive(Debug)]
pub struct RedisServer {
    dir: TempDir,
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server with `args` added to its command line; returns once it answers
    /// `PING`.
    ///
    /// # Errors
    ///
    /// `redis-server` is missing or does not answer within 30 s.
    pub fn start(args: &[&str]) -> Result<RedisServer, String> {
        let mut server = RedisServer {
            dir: temp_dir("stent-redis-")?,
            port: free_port(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
        };
        server.start_again()?;
        Ok(server)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server with `SIGKILL`.
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
    }

    /// Sends `signal` (`-STOP`, `-CONT`, …) to the server process.
    ///
    /// # Panics
    ///
    /// The server is not running or `kill` fails.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("a running server").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Starts the server again on the same port, directory and arguments, waiting until
    /// it has loaded its data and answers `PING`.
    ///
    /// # Errors
    ///
    /// It does not start or answer within 30 s.
    pub fn start_again(&mut self) -> Result<(), String> {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--daemonize", "no"])
            .args(&self.args)
            .arg("--dir")
            .arg(self.dir.path());
        self.child = Some(spawn(&mut command, "redis-server")?);
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

/// A moto server (the DynamoDB API) of the test's own. moto keeps everything in memory: a
/// killed server comes back empty, without the table.
#[derive(Debug)]
pub struct MotoServer {
    command: String,
    port: u16,
    child: Option<Child>,
}

impl MotoServer {
    /// Starts the command in `STENT_MOTO_SERVER` (which `scripts/test` sets) on a free
    /// port.
    ///
    /// # Errors
    ///
    /// The variable is not set, or the server cannot be started or does not listen
    /// within 60 s.
    pub fn start() -> Result<MotoServer, String> {
        let command = std::env::var("STENT_MOTO_SERVER")
            .map_err(|_| "STENT_MOTO_SERVER is not set (scripts/test sets it)".to_owned())?;
        let mut server = MotoServer {
            command,
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
        let mut command = Command::new(&self.command);
        command.args(["-H", "127.0.0.1", "-p", &self.port.to_string()]);
        self.child = Some(spawn(&mut command, &self.command)?);
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

/// A PostgreSQL server of the test's own, in a temporary data directory: trust
/// authentication, or with [`with_password`](Self::with_password) a password
/// (`scram-sha-256`) over TCP.
#[derive(Debug)]
pub struct PostgresServer {
    dir: TempDir,
    bindir: PathBuf,
    port: u16,
    password: Option<String>,
    as_postgres: bool,
}

impl PostgresServer {
    /// Creates a cluster with trust authentication and starts it.
    ///
    /// # Errors
    ///
    /// The server binaries are missing (`STENT_PG_BINDIR`, `pg_config --bindir` or
    /// `/usr/lib/postgresql/*/bin`), or `initdb` or the start fails.
    pub fn start() -> Result<PostgresServer, String> {
        Self::create(None)
    }

    /// Creates a cluster whose superuser `postgres` needs `password` over TCP, and starts
    /// it.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn with_password(password: &str) -> Result<PostgresServer, String> {
        Self::create(Some(password))
    }

    fn create(password: Option<&str>) -> Result<PostgresServer, String> {
        let dir = temp_dir("stent-pg-")?;
        // The server runs as `postgres` when the tests run as root (it refuses root).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .map_err(|e| format!("chmod: {e}"))?;
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let server = PostgresServer {
            dir,
            bindir: pg_bindir()?,
            port: free_port(),
            password: password.map(str::to_owned),
            as_postgres,
        };
        let data = server.data();
        let mut initdb = vec!["-D", &data, "-U", "postgres", "-E", "UTF8", "--no-sync"];
        let pwfile = server.dir.path().join("pwfile");
        let pwfile_arg = format!("--pwfile={}", pwfile.display());
        match password {
            None => initdb.push("--auth=trust"),
            Some(password) => {
                std::fs::write(&pwfile, password).map_err(|e| format!("pwfile: {e}"))?;
                std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o644))
                    .map_err(|e| format!("chmod: {e}"))?;
                initdb.extend([
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    &pwfile_arg,
                ]);
            }
        }
        server.run("initdb", &initdb)?;
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

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of its `postgres` database, as the superuser (with the password, if any).
    pub fn url(&self) -> String {
        let password = self
            .password
            .as_deref()
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        format!(
            "postgres://postgres{password}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// The directory holding its data, log and socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server the way a crash does (`pg_ctl stop -m immediate`: no checkpoint,
    /// every session cut); the next start recovers from the write-ahead log.
    ///
    /// # Errors
    ///
    /// `pg_ctl` fails.
    pub fn crash(&self) -> Result<(), String> {
        self.stop("immediate")
    }

    /// Stops the server as an operator's restart does (`pg_ctl stop -m fast`: every
    /// session ended at once, a checkpoint written).
    ///
    /// # Errors
    ///
    /// `pg_ctl` fails.
    pub fn shut_down(&self) -> Result<(), String> {
        self.stop("fast")
    }

    fn stop(&self, mode: &str) -> Result<(), String> {
        self.run("pg_ctl", &["-D", &self.data(), "-m", mode, "-w", "stop"])
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
        let data = self.data();
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &opts, "-w", "-t", "60", "start",
            ],
        )
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = self.stop("immediate");
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
