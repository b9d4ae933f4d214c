//! The broadcast of deletes and overwrites (`stent_conformance::broadcast`): two stores
//! built separately (two pools) on one database and schema, as two processes would hold
//! them, against the server in `STENT_POSTGRES_URL` (or a container).
//!
//! The lost subscription is made with `pg_terminate_backend` on the listening session, and
//! an unanswered one by stopping that session's server process (`SIGSTOP`, then `SIGCONT`):
//! both found by the session's `application_name`, so no other test's session is touched.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use stent_conformance::broadcast::{Action, Processes};
use stent_conformance::servers::{self, Server};
use stent_postgres::PostgresStore;

mod support;

async fn store(url: &str, schema: &str) -> Result<PostgresStore, String> {
    let builder = PostgresStore::builder()
        .url(url)
        .schema(schema)
        .and_then(|b| b.table_prefix("app_"))
        .map_err(|e| e.to_string())?;
    let built = builder
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(20))
        .build()
        .await;
    built.map_err(|e| e.to_string())
}

/// The server process of `store`'s listening session.
async fn listener_pid(store: &PostgresStore) -> i32 {
    let name = format!("stent listener {}", store.channel());
    let start = std::time::Instant::now();
    loop {
        let pid: Option<i32> =
            sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
                .bind(&name)
                .fetch_optional(store.pool())
                .await
                .unwrap();
        if let Some(pid) = pid {
            return pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no session {name:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `signal` to a process.
fn signal(pid: i32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// Resumes a stopped session's process when dropped (the case's end, however it ends).
struct Stopped(Arc<Mutex<Option<i32>>>);

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some(pid) = self.0.lock().unwrap().take() {
            signal(pid, "-CONT");
        }
    }
}

/// Two stores, each with its own pool, in the schema of `case`; A's listening session is
/// terminated with `pg_terminate_backend`, and stopped with `SIGSTOP` to its process.
async fn processes(case: String) -> Result<Processes<PostgresStore>, String> {
    let url = servers::url(Server::Postgres).await?;
    support::sweep_old_schemas(&url).await;
    let schema = support::schema_for(&case);
    let (a, b) = (store(&url, &schema).await?, store(&url, &schema).await?);
    let (listening, admin) = (a.clone(), b.clone());
    let kill: Action = Box::new(move || {
        let (listening, admin) = (listening.clone(), admin.clone());
        async move {
            listener_pid(&listening).await;
            // Every session of that name: one of a connection lost before may linger.
            let name = format!("stent listener {}", listening.channel());
            let killed: i64 = sqlx::query_scalar(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) \
                 FROM pg_stat_activity WHERE application_name = $1",
            )
            .bind(name)
            .fetch_one(admin.pool())
            .await
            .unwrap();
            assert!(killed >= 1, "no listening session was terminated");
        }
        .boxed()
    });
    let stopped = Arc::new(Mutex::new(None));
    let (listening, frozen) = (a.clone(), Arc::clone(&stopped));
    let freeze: Action = Box::new(move || {
        let (listening, frozen) = (listening.clone(), Arc::clone(&frozen));
        async move {
            let pid = listener_pid(&listening).await;
            signal(pid, "-STOP");
            *frozen.lock().unwrap() = Some(pid);
        }
        .boxed()
    });
    let thawed = Arc::clone(&stopped);
    let thaw: Action = Box::new(move || {
        if let Some(pid) = thawed.lock().unwrap().take() {
            signal(pid, "-CONT");
        }
        async {}.boxed()
    });
    Ok(Processes {
        a,
        b,
        kill,
        freeze,
        thaw,
        // A `SELECT 1` after a second of silence, unanswered for a second: two, and a margin.
        heartbeat_bound: Duration::from_secs(5),
        keep: Box::new(Stopped(stopped)),
    })
}

stent_conformance::broadcast_tests!(processes);
