//! What several test binaries share: a private `redis-server` for the tests that stop,
//! freeze or restart one (never the shared server other tests use).

#![allow(dead_code)] // each test binary uses its own part of this module

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process on a loopback port, killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) port: u16,
}

impl Server {
    /// Starts `redis-server` on `port`, keeping its files in `dir`, with `args` added to
    /// the command line; returns once it answers `PING`.
    pub(crate) fn start(port: u16, dir: &Path, args: &[&str]) -> std::io::Result<Server> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(args)
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = Server { child, port };
        server.wait_ready();
        Ok(server)
    }

    /// Waits until the server answers `PING`; returns a connection to it.
    pub(crate) fn wait_ready(&self) -> redis::Connection {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("redis://127.0.0.1:{}", self.port);
        loop {
            let conn = redis::Client::open(url.as_str()).and_then(|c| c.get_connection());
            if let Ok(mut conn) = conn
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return conn;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on {} never answered",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (`-STOP`, `-CONT`, …) to the server process.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }

    /// Kills the server (`SIGKILL`) and waits for it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nothing listens on (at the time of asking).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `redis-server` is installed; when it is not, the test is skipped with a loud
/// message, or fails under `STENT_REQUIRE_BACKENDS=1`.
pub(crate) fn redis_server_available(test: &str) -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            !stent_conformance::backends_required(),
            "redis-server is not installed and STENT_REQUIRE_BACKENDS=1"
        );
        eprintln!("SKIPPED {test}: redis-server is not installed");
    }
    found
}
