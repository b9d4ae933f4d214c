//! Containers for the conformance servers: started with testcontainers, shared by every test
//! of a binary or of a nextest run, removed by a watchdog process when that is over.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testcontainers::core::{ContainerPort, IntoContainerPort as _, WaitFor};
use testcontainers::runners::AsyncRunner as _;
use testcontainers::{ContainerAsync, GenericImage, Image, ImageExt, ReuseDirective};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::Server;

/// Longest a container may take from creation to ready (a first start of an image, a
/// loaded machine).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a test process waits for another one that is starting the shared container.
const LOCK_TIMEOUT: Duration = Duration::from_secs(180);
/// The line the cluster container prints once all three masters agree.
const CLUSTER_READY: &str = "stent: redis cluster ready";
/// The label every conformance container carries; its value is the server's name.
const LABEL: &str = "dev.stent.conformance";

/// Whose lifetime a container follows, and who shares it.
struct Run {
    /// Part of the container's name: the nextest run id, or `p<pid>`.
    key: String,
    /// The process whose end removes the container.
    watch: u32,
    /// Whether other processes share the container (nextest: one process per test).
    shared: bool,
}

impl Run {
    fn current() -> Run {
        let run_id: String = std::env::var("NEXTEST_RUN_ID")
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(40)
            .collect();
        if run_id.is_empty() {
            Run {
                key: format!("p{}", std::process::id()),
                watch: std::process::id(),
                shared: false,
            }
        } else {
            // nextest runs each test as a child of its own process, which lives for the run.
            Run {
                key: run_id,
                watch: std::os::unix::process::parent_id(),
                shared: true,
            }
        }
    }
}

/// Starts (or, under nextest, joins) the container for `server`; returns its URL.
pub(super) async fn start(server: Server) -> Result<String, String> {
    let run = Run::current();
    let name = format!("stent-conformance-{}-{}", server.name(), run.key);
    let dir = std::env::temp_dir();
    let lock_path = dir.join(format!("{name}.lock"));
    let url_path = dir.join(format!("{name}.url"));

    let _lock = if run.shared {
        let lock = lock(&lock_path).await?;
        // Written by the process that started the container: its URL, or why it failed,
        // so the other tests of the run neither start another nor retry a slow failure.
        if let Ok(recorded) = std::fs::read_to_string(&url_path) {
            if let Some(url) = recorded.strip_prefix("ok ") {
                return Ok(url.to_owned());
            }
            if let Some(reason) = recorded.strip_prefix("err ") {
                return Err(reason.to_owned());
            }
        }
        Some(lock)
    } else {
        None
    };

    // The watchdog comes first, so a test killed while the container starts leaves nothing.
    spawn_watchdog(&name, run.watch, &[&lock_path, &url_path])?;
    let image = server.image();
    let began = Instant::now();
    let started = match tokio::time::timeout(
        START_TIMEOUT + Duration::from_secs(30),
        launch(server, &image, &name, &run),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(format!(
            "{image} was not ready within {} s",
            START_TIMEOUT.as_secs()
        )),
    };
    let recorded = match &started {
        Ok(url) => {
            log(&format!(
                "started container {name} ({image}) for {}: {url}, ready in {:.1} s",
                server.name(),
                began.elapsed().as_secs_f64()
            ));
            format!("ok {url}")
        }
        Err(reason) => {
            log(&format!(
                "could not start container {name} ({image}) for {}: {reason}",
                server.name()
            ));
            format!("err {reason}")
        }
    };
    if run.shared {
        std::fs::write(&url_path, recorded)
            .map_err(|e| format!("cannot write {}: {e}", url_path.display()))?;
    }
    started
}

/// Takes the file lock at `path`, waiting for the process that holds it.
async fn lock(path: &Path) -> Result<File, String> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let deadline = Instant::now() + LOCK_TIMEOUT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(TryLockError::WouldBlock) => {
                return Err(format!(
                    "{} stayed locked for {} s",
                    path.display(),
                    LOCK_TIMEOUT.as_secs()
                ));
            }
            Err(TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", path.display()));
            }
        }
    }
}

/// A detached process (its own process group, so a test runner that kills the test's group
/// spares it) that removes the container `name` once process `watch` is gone, logs it, and
/// deletes `files`. It needs `sh` and the `docker` command line.
fn spawn_watchdog(name: &str, watch: u32, files: &[&Path]) -> Result<(), String> {
    const SCRIPT: &str = r#"
while kill -0 "$1" 2>/dev/null; do sleep 1; done
if docker rm -f -v "$2" >/dev/null 2>&1; then
  echo "removed container $2" >>"$3"
elif docker inspect "$2" >/dev/null 2>&1; then
  echo "could not remove container $2" >>"$3"
fi
shift 3
rm -f "$@"
"#;
    Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("stent-conformance-watchdog")
        .arg(watch.to_string())
        .arg(name)
        .arg(log_path())
        .args(files)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
        .map_err(|e| format!("cannot start the watchdog (sh): {e}"))
}

fn log_path() -> PathBuf {
    std::env::var_os("STENT_CONTAINERS_LOG")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("stent-conformance-containers.log"))
}

/// One line on stderr and in the container log.
fn log(line: &str) {
    eprintln!("stent-conformance: {line}");
    if let Ok(mut file) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path())
    {
        let _ = writeln!(file, "{line}");
    }
}

/// `name[:tag]`, where a `:` before the last `/` belongs to a registry's port.
fn split_image(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    }
}

async fn launch(server: Server, image: &str, name: &str, run: &Run) -> Result<String, String> {
    let (image_name, tag) = split_image(image);
    match server {
        Server::Postgres => {
            // The official image's variables and readiness lines: the set-up server logs
            // "ready" on stdout, the real one on stderr.
            let ready = "database system is ready to accept connections";
            let postgres = GenericImage::new(image_name, tag)
                .with_exposed_port(5432.tcp())
                .with_wait_for(WaitFor::message_on_stderr(ready))
                .with_wait_for(WaitFor::message_on_stdout(ready))
                .with_env_var("POSTGRES_PASSWORD", "postgres")
                .with_env_var("POSTGRES_HOST_AUTH_METHOD", "trust")
                .with_cmd(["-c", "fsync=off"]);
            let container = create(postgres, image_name, tag, name, server, run).await?;
            let (host, port) = address(&container, 5432.tcp()).await?;
            Ok(format!(
                "postgres://postgres:postgres@{host}:{port}/postgres"
            ))
        }
        Server::Redis => {
            let redis = GenericImage::new(image_name, tag)
                .with_exposed_port(6379.tcp())
                .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"));
            let container = create(redis, image_name, tag, name, server, run).await?;
            let (host, port) = address(&container, 6379.tcp()).await?;
            Ok(format!("redis://{host}:{port}"))
        }
        Server::RedisCluster => {
            let ports = free_ports::<3>()?;
            let mut cluster = GenericImage::new(image_name, tag)
                .with_wait_for(WaitFor::message_on_stdout(CLUSTER_READY))
                .with_cmd(["sh", "-c", &cluster_script(&ports)]);
            for port in ports {
                cluster = cluster.with_mapped_port(port, port.tcp());
            }
            create(cluster, image_name, tag, name, server, run).await?;
            // The nodes announce 127.0.0.1: clients must reach the published ports there.
            let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
            Ok(format!("redis+cluster://{}", nodes.join(",")))
        }
        Server::DynamoDb => {
            let dynamodb = GenericImage::new(image_name, tag).with_exposed_port(8000.tcp());
            let container = create(dynamodb, image_name, tag, name, server, run).await?;
            let (host, port) = address(&container, 8000.tcp()).await?;
            answers_http(&host, port).await?;
            Ok(format!("http://{host}:{port}"))
        }
    }
}

/// Creates and starts the container, named and labelled, and waits until it is ready. It is
/// marked for reuse so that dropping the handle leaves it to the watchdog.
async fn create<I: Image>(
    image: impl ImageExt<I>,
    image_name: &str,
    tag: &str,
    name: &str,
    server: Server,
    run: &Run,
) -> Result<ContainerAsync<I>, String> {
    image
        .with_name(image_name)
        .with_tag(tag)
        .with_container_name(name)
        .with_label(LABEL, server.name())
        .with_label(format!("{LABEL}.watch-pid"), run.watch.to_string())
        .with_label(format!("{LABEL}.run"), run.key.as_str())
        .with_reuse(ReuseDirective::Always)
        .with_startup_timeout(START_TIMEOUT)
        .start()
        .await
        .map_err(|e| format!("{image_name}:{tag}: {e}"))
}

/// The address the host reaches the container's published port `port` at: the loopback
/// when the port answers there (a local daemon, even one that testcontainers takes for a
/// daemon outside this container because of `/.dockerenv`), else the daemon's host as
/// testcontainers sees it.
async fn address<I: Image>(
    container: &ContainerAsync<I>,
    port: ContainerPort,
) -> Result<(String, u16), String> {
    let port = container
        .get_host_port_ipv4(port)
        .await
        .map_err(|e| format!("the host port of {port}: {e}"))?;
    let loopback = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await;
    if matches!(loopback, Ok(Ok(_))) {
        return Ok(("127.0.0.1".to_owned(), port));
    }
    let host = container
        .get_host()
        .await
        .map_err(|e| format!("the container's host: {e}"))?
        .to_string();
    Ok((host, port))
}

/// `N` distinct loopback ports that were free a moment ago.
fn free_ports<const N: usize>() -> Result<[u16; N], String> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind(("127.0.0.1", 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("no free port: {e}"))?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener
            .local_addr()
            .map_err(|e| format!("no free port: {e}"))?
            .port();
    }
    Ok(ports)
}

/// Three cluster-mode masters in one container, each on the same port inside and outside,
/// announcing 127.0.0.1: the nodes reach each other on the container's loopback, and
/// clients on the host reach them through the published ports. The cluster bus stays
/// inside the container.
fn cluster_script(ports: &[u16; 3]) -> String {
    let list = ports.map(|p| p.to_string()).join(" ");
    let nodes = ports.map(|p| format!("127.0.0.1:{p}")).join(" ");
    format!(
        r#"set -e
bus=16379
for p in {list}; do
  bus=$((bus + 1))
  redis-server --port "$p" --cluster-port "$bus" --cluster-enabled yes \
    --cluster-config-file "/tmp/nodes-$p.conf" --cluster-announce-ip 127.0.0.1 \
    --cluster-node-timeout 5000 --protected-mode no --save '' --appendonly no \
    --daemonize yes --logfile "/tmp/redis-$p.log"
done
for p in {list}; do
  until redis-cli -p "$p" ping >/dev/null 2>&1; do sleep 0.1; done
done
redis-cli --cluster create {nodes} --cluster-replicas 0 --cluster-yes >/tmp/create.log 2>&1 \
  || {{ cat /tmp/create.log; exit 1; }}
for p in {list}; do
  until redis-cli -p "$p" cluster info | grep -q '^cluster_state:ok' \
    && [ "$(redis-cli -p "$p" cluster info | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')" = 3 ]; do
    sleep 0.1
  done
done
echo "{CLUSTER_READY}"
exec tail -f /dev/null
"#
    )
}

/// Waits until something answers HTTP at `host:port` (a published port accepts connections
/// before the server inside listens).
async fn answers_http(host: &str, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if http_answer(host, port).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "nothing answered HTTP on {host}:{port} within {} s",
                START_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn http_answer(host: &str, port: u16) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        let request = format!("GET / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 7];
        stream.read_exact(&mut head).await.ok()?;
        (&head == b"HTTP/1.").then_some(())
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Some(()))
    )
}

#[cfg(test)]
mod tests {
    use super::split_image;

    #[test]
    fn image_names_split_at_the_tag_not_the_registry_port() {
        assert_eq!(split_image("postgres:17-alpine"), ("postgres", "17-alpine"));
        assert_eq!(split_image("local/redis"), ("local/redis", "latest"));
        assert_eq!(
            split_image("registry:5000/team/redis"),
            ("registry:5000/team/redis", "latest")
        );
        assert_eq!(
            split_image("registry:5000/team/redis:7"),
            ("registry:5000/team/redis", "7")
        );
    }
}
