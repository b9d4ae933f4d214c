//! A network namespace of the test's own, joined to this machine by a veth pair on a
//! private /30, with a server inside it and faults put on the link between them.
//!
//! The host keeps `10.77.a.b+1`, the namespace `10.77.a.b+2`; the clients (the test and its
//! workers) stay on the host, so everything they send the server crosses the veth pair, and
//! nothing else does. The faults are iptables rules in the namespace's filter table, on its
//! end of the pair, switched atomically with `iptables-restore`:
//!
//! - **latency**: the namespace's outgoing packets go to an NFQUEUE, where
//!   `nfqueue_delay.py` holds each for the delay (this machine's kernel has no netem
//!   qdisc), so every round trip takes that much longer;
//! - **loss**: the `statistic` match drops a share of the packets, each way;
//! - **partition**: every packet is dropped, each way. The routes stay as they are, so
//!   nothing is sent anywhere else meanwhile.
//!
//! Names carry this process's id (`stnet{pid}`, veth `stnh{pid}`/`stnn{pid}`), so runs in
//! parallel do not meet. Dropping the lab kills its servers and removes the namespace and
//! the veth pair, on a panic too; a lab left by a killed test (its pid gone) is removed by
//! the next one.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The NFQUEUE number the delayer reads (queues are per namespace).
const QUEUE: u16 = 0;

/// A fault on the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Every packet from the server held this long.
    Latency(Duration),
    /// This many packets in a hundred dropped, each way.
    Loss(u32),
    /// Every packet dropped, each way.
    Partition,
}

/// A namespace, its veth pair, and what runs inside.
pub(crate) struct NetLab {
    ns: String,
    host_if: String,
    ns_if: String,
    host_ip: String,
    ns_ip: String,
    dir: TempDir,
    children: Vec<Child>,
    /// The data directory of a PostgreSQL started inside (stopped with `pg_ctl`).
    postgres: Option<(PathBuf, PathBuf)>,
    delayer: Option<(Child, BufReader<ChildStdout>)>,
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn root() -> bool {
    run("id", &["-u"]).is_ok_and(|u| u.trim() == "0")
}

/// Removes the labs of test processes that are gone (killed before their lab was dropped).
fn sweep() {
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return;
    };
    let dead = |pid: &str| !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists();
    for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = ns.strip_prefix("stnet") else {
            continue;
        };
        if !dead(pid) {
            continue;
        }
        if let Ok(pids) = run("ip", &["netns", "pids", ns]) {
            for p in pids.split_whitespace() {
                let _ = run("kill", &["-9", p]);
            }
        }
        let _ = run("ip", &["link", "del", &format!("stnh{pid}")]);
        let _ = run("ip", &["netns", "del", ns]);
    }
    if let Ok(links) = run("ip", &["-o", "link", "show"]) {
        for link in links.lines() {
            let name = link.split(':').nth(1).unwrap_or("").trim();
            let name = name.split('@').next().unwrap_or("");
            if let Some(pid) = name.strip_prefix("stnh")
                && dead(pid)
            {
                let _ = run("ip", &["link", "del", name]);
            }
        }
    }
}

/// A /30 in 10.77.0.0/16 that no interface of this machine uses: `(host, namespace)`.
fn free_subnet() -> Result<(String, String), String> {
    let used = run("ip", &["-o", "-4", "addr", "show"])?;
    let start = std::process::id() as usize;
    for i in 0..16_384 {
        let n = (start + i) % 16_384;
        let (a, b) = (n / 64, (n % 64) * 4);
        let net = format!("10.77.{a}.");
        let taken = (b..b + 4).any(|h| used.contains(&format!("{net}{h}/")));
        if !taken {
            return Ok((format!("{net}{}", b + 1), format!("{net}{}", b + 2)));
        }
    }
    Err("no free /30 in 10.77.0.0/16".to_owned())
}

impl NetLab {
    /// Creates the namespace and the veth pair, and checks that the host reaches the
    /// namespace's address through it and that iptables works inside.
    ///
    /// # Errors
    ///
    /// Not root, `ip`, `iptables` or `python3` missing (`scripts/services.sh` installs
    /// them), or a step fails.
    pub(crate) fn create() -> Result<NetLab, String> {
        if !root() {
            return Err("network namespaces need root".to_owned());
        }
        for (tool, args) in [
            ("ip", &["-V"][..]),
            ("iptables", &["-V"][..]),
            ("python3", &["-V"][..]),
        ] {
            run(tool, args).map_err(|e| format!("{e} (scripts/services.sh installs it)"))?;
        }
        sweep();
        let pid = std::process::id();
        let (host_ip, ns_ip) = free_subnet()?;
        let dir = tempfile::Builder::new()
            .prefix("stent-netlab-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let ns = format!("stnet{pid}");
        run("ip", &["netns", "add", &ns])?;
        // From here on, dropping the lab undoes what was done.
        let lab = NetLab {
            ns,
            host_if: format!("stnh{pid}"),
            ns_if: format!("stnn{pid}"),
            host_ip,
            ns_ip,
            dir,
            children: Vec::new(),
            postgres: None,
            delayer: None,
        };
        let (h, n) = (lab.host_if.as_str(), lab.ns_if.as_str());
        run("ip", &["link", "add", h, "type", "veth", "peer", "name", n])?;
        run("ip", &["link", "set", n, "netns", &lab.ns])?;
        run(
            "ip",
            &["addr", "add", &format!("{}/30", lab.host_ip), "dev", h],
        )?;
        run("ip", &["link", "set", h, "up"])?;
        lab.ns_run(
            "ip",
            &["addr", "add", &format!("{}/30", lab.ns_ip), "dev", n],
        )?;
        lab.ns_run("ip", &["link", "set", n, "up"])?;
        lab.ns_run("ip", &["link", "set", "lo", "up"])?;
        // The clients' packets for the server must take the pair and nothing else.
        let route = run("ip", &["route", "get", &lab.ns_ip])?;
        if !route.contains(&format!("dev {h} ")) {
            return Err(format!("{} is not routed through {h}: {route}", lab.ns_ip));
        }
        lab.ns_run("iptables", &["-S"])?;
        Ok(lab)
    }

    /// Runs a command inside the namespace and waits for it.
    fn ns_run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["netns", "exec", &self.ns, program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Starts a server inside the namespace, stopped when the lab is dropped.
    fn spawn(&mut self, program: &str, args: &[&str]) -> Result<(), String> {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{program}: {e}"))?;
        self.children.push(child);
        Ok(())
    }

    fn wait_for_port(&self, port: u16, what: &str) -> Result<(), String> {
        let addr = format!("{}:{port}", self.ns_ip);
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(&addr).is_err() {
            if Instant::now() > deadline {
                return Err(format!("{what} did not listen on {addr} within 60 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// A `redis-server` inside, nothing kept on disk; returns its URL.
    ///
    /// # Errors
    ///
    /// It does not start or listen.
    pub(crate) fn start_redis(&mut self) -> Result<String, String> {
        let dir = self.dir.path().display().to_string();
        let ip = self.ns_ip.clone();
        self.spawn(
            "redis-server",
            &[
                "--port",
                "6379",
                "--bind",
                &ip,
                "--protected-mode",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                &dir,
            ],
        )?;
        self.wait_for_port(6379, "redis-server")?;
        Ok(format!("redis://{ip}:6379"))
    }

    /// A DynamoDB-API server (`$STENT_MOTO_SERVER`) inside; returns its endpoint.
    ///
    /// # Errors
    ///
    /// The variable is not set, or the server does not start or listen.
    pub(crate) fn start_moto(&mut self) -> Result<String, String> {
        let command = std::env::var("STENT_MOTO_SERVER")
            .map_err(|_| "STENT_MOTO_SERVER is not set (scripts/test sets it)".to_owned())?;
        let ip = self.ns_ip.clone();
        self.spawn(&command, &["-H", &ip, "-p", "5000"])?;
        self.wait_for_port(5000, &command)?;
        Ok(format!("http://{ip}:5000"))
    }

    /// A PostgreSQL inside (`initdb` in a temporary directory, run as `postgres`), trusting
    /// the host's address; returns the URL of its `postgres` database.
    ///
    /// # Errors
    ///
    /// The server binaries are missing (`STENT_PG_BINDIR`, or `/usr/lib/postgresql/*/bin`),
    /// or `initdb` or the start fails.
    pub(crate) fn start_postgres(&mut self) -> Result<String, String> {
        let bindir = pg_bindir()?;
        let base = self.dir.path().join("pg");
        std::fs::create_dir(&base).map_err(|e| format!("mkdir: {e}"))?;
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| format!("chmod: {e}"))?;
        let data = base.join("data");
        let as_postgres = |program: &str| {
            let exe = bindir.join(program).display().to_string();
            vec!["-u".to_owned(), "postgres".to_owned(), "--".to_owned(), exe]
        };
        let data_s = data.display().to_string();
        let mut initdb = as_postgres("initdb");
        initdb.extend(
            ["-D", &data_s, "-U", "postgres", "-E", "UTF8", "--no-sync"]
                .map(str::to_owned)
                .into_iter()
                .chain(["--auth=trust".to_owned()]),
        );
        run(
            "runuser",
            &initdb.iter().map(String::as_str).collect::<Vec<_>>(),
        )?;
        let mut hba = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("pg_hba.conf"))
            .map_err(|e| format!("pg_hba.conf: {e}"))?;
        writeln!(hba, "host all all {}/32 trust", self.host_ip)
            .map_err(|e| format!("pg_hba.conf: {e}"))?;
        let opts = format!(
            "-p 5432 -k {} -c listen_addresses={} -c fsync=off -c max_connections=200",
            base.display(),
            self.ns_ip
        );
        let log = base.join("log").display().to_string();
        let mut start = as_postgres("pg_ctl");
        start.extend(
            [
                "-D", &data_s, "-l", &log, "-o", &opts, "-w", "-t", "60", "start",
            ]
            .map(str::to_owned),
        );
        self.postgres = Some((bindir, data));
        let args: Vec<&str> = start.iter().map(String::as_str).collect();
        self.ns_run("runuser", &args).map_err(|e| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            format!("{e}\n{log}")
        })?;
        Ok(format!("postgres://postgres@{}:5432/postgres", self.ns_ip))
    }

    /// Puts `fault` on the link, or none, in place of the one before (atomically). Returns
    /// the packets the rules it replaces dropped.
    ///
    /// # Errors
    ///
    /// iptables or the delayer fail.
    pub(crate) fn set(&mut self, fault: Option<Fault>) -> Result<u64, String> {
        let dropped = self.dropped()?;
        let n = self.ns_if.clone();
        let rules = match fault {
            None => String::new(),
            Some(Fault::Latency(delay)) => {
                self.start_delayer(delay)?;
                format!("-A OUTPUT -o {n} -j NFQUEUE --queue-num {QUEUE} --queue-bypass\n")
            }
            Some(Fault::Loss(percent)) => {
                let p = f64::from(percent) / 100.0;
                let drop = format!("-m statistic --mode random --probability {p} -j DROP");
                format!("-A INPUT -i {n} {drop}\n-A OUTPUT -o {n} {drop}\n")
            }
            Some(Fault::Partition) => {
                format!("-A INPUT -i {n} -j DROP\n-A OUTPUT -o {n} -j DROP\n")
            }
        };
        let table = format!(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{rules}COMMIT\n"
        );
        let mut restore = Command::new("ip")
            .args(["netns", "exec", &self.ns, "iptables-restore"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("iptables-restore: {e}"))?;
        restore
            .stdin
            .take()
            .expect("piped")
            .write_all(table.as_bytes())
            .map_err(|e| format!("iptables-restore: {e}"))?;
        let out = restore
            .wait_with_output()
            .map_err(|e| format!("iptables-restore: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "iptables-restore failed on {table:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(dropped)
    }

    /// Packets the current rules dropped.
    fn dropped(&self) -> Result<u64, String> {
        let mut total = 0;
        for chain in ["INPUT", "OUTPUT"] {
            let listing = self.ns_run("iptables", &["-L", chain, "-v", "-x", "-n"])?;
            for line in listing.lines().skip(2) {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.get(2) == Some(&"DROP") {
                    total += f[0].parse::<u64>().map_err(|e| format!("{line:?}: {e}"))?;
                }
            }
        }
        Ok(total)
    }

    /// Packets the kernel has handed the delayer so far.
    pub(crate) fn delayed(&self) -> Result<u64, String> {
        let stats = self.ns_run("cat", &["/proc/net/netfilter/nfnetlink_queue"])?;
        // queue, portid, waiting, copy mode, copy range, queue dropped, user dropped, id sequence, 1
        for line in stats.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.first() == Some(&QUEUE.to_string().as_str()) && f.len() >= 8 {
                let dropped: u64 = f[5].parse().unwrap_or(0) + f[6].parse().unwrap_or(0);
                if dropped > 0 {
                    return Err(format!("the delay queue overflowed: {line}"));
                }
                return f[7].parse().map_err(|e| format!("{line:?}: {e}"));
            }
        }
        Ok(0)
    }

    fn start_delayer(&mut self, delay: Duration) -> Result<(), String> {
        if self.delayer.is_some() {
            return Ok(());
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/reliability/network_faults/nfqueue_delay.py");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "python3"])
            .arg(&script)
            .args([QUEUE.to_string(), delay.as_millis().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{}: {e}", script.display()))?;
        let mut out = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        let read = out.read_line(&mut line);
        // Kept until the lab goes: packets it holds are dropped when it exits.
        self.delayer = Some((child, out));
        match read {
            Ok(_) if line.trim() == "ready" => Ok(()),
            other => Err(format!("the delayer did not start: {other:?} {line:?}")),
        }
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        if let Some((mut child, _)) = self.delayer.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some((bindir, data)) = &self.postgres {
            let pg_ctl = bindir.join("pg_ctl").display().to_string();
            let data = data.display().to_string();
            let _ = run(
                "runuser",
                &[
                    "-u",
                    "postgres",
                    "--",
                    &pg_ctl,
                    "-D",
                    &data,
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
        }
        if let Ok(pids) = run("ip", &["netns", "pids", &self.ns]) {
            for p in pids.split_whitespace() {
                let _ = run("kill", &["-9", p]);
            }
        }
        // Deleting one end deletes both; the namespace may outlive its name while the
        // kernel drops its last connections.
        let _ = run("ip", &["link", "del", &self.host_if]);
        let _ = run("ip", &["netns", "del", &self.ns]);
    }
}

fn pg_bindir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("STENT_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
        .ok_or_else(|| {
            "no initdb/pg_ctl under /usr/lib/postgresql (set STENT_PG_BINDIR)".to_owned()
        })
}
