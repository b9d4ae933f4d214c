//! The broadcast of deletes and overwrites (`stent_conformance::broadcast`): two stores
//! built separately (two pools) on one database and schema, as two processes would hold
//! them, against the server in `STENT_POSTGRES_URL` (or a container).
//!
//! The lost subscription is made with `pg_terminate_backend` on the listening session, and
//! an unanswered one by stopping that session's server process (`SIGSTOP`, then `SIGCONT`):
//! both found by the session's `application_name`, so no other test's session is touched.

use std::time::Duration;

use stent_conformance::broadcast::{
    broadcast_delete_and_overwrite_reach_another_process,
    broadcast_lost_subscription_never_serves_stale,
    broadcast_unanswered_subscription_is_taken_as_lost,
};
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

/// Two stores, each with its own pool, in the schema of `case`.
async fn processes(case: String) -> Result<(PostgresStore, PostgresStore), String> {
    let url = servers::url(Server::Postgres).await?;
    support::sweep_old_schemas(&url).await;
    let schema = support::schema_for(&case);
    Ok((store(&url, &schema).await?, store(&url, &schema).await?))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_delete_and_overwrite_reach_another_process() {
    let name = "postgres_delete_and_overwrite_reach_another_process";
    stent_conformance::run(processes, name, |pair| {
        broadcast_delete_and_overwrite_reach_another_process(pair)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lost_subscription_never_serves_stale() {
    let name = "postgres_lost_subscription_never_serves_stale";
    stent_conformance::run(processes, name, |(a, b)| async move {
        let admin = b.clone();
        let listening = a.clone();
        let kill = || {
            let (admin, listening) = (admin.clone(), listening.clone());
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
        };
        broadcast_lost_subscription_never_serves_stale((a, b), kill).await;
    })
    .await;
}

/// Sends `SIGCONT` to a stopped process when dropped, so that a failing test leaves no
/// session stopped.
struct Stopped(i32);

impl Stopped {
    fn signal(pid: i32, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        Self::signal(self.0, "-CONT");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unanswered_subscription_is_taken_as_lost() {
    let name = "postgres_unanswered_subscription_is_taken_as_lost";
    stent_conformance::run(processes, name, |(a, b)| async move {
        let listening = a.clone();
        // The tier subscribes when it is built: find its session once it has.
        let pid = tokio::spawn(async move { listener_pid(&listening).await });
        let stopped = std::sync::Mutex::new(None);
        let pid = std::sync::Mutex::new(Some(pid));
        let freeze = || {
            let pid = pid.lock().unwrap().take().unwrap();
            let pid = futures_util::FutureExt::now_or_never(pid)
                .expect("the listening session is known by now")
                .unwrap();
            Stopped::signal(pid, "-STOP");
            *stopped.lock().unwrap() = Some(Stopped(pid));
        };
        let thaw = || drop(stopped.lock().unwrap().take());
        // A `SELECT 1` after a second of silence, unanswered for a second: two, and a margin.
        let bound = Duration::from_secs(5);
        broadcast_unanswered_subscription_is_taken_as_lost((a, b), bound, freeze, thaw).await;
    })
    .await;
}
