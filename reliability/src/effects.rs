//! The effects of the transactional scenario: a table in the store's own database that a
//! [`wrap_tx`](stent_core::DurableBuilder::wrap_tx) function inserts one row into per
//! execution, inside the transaction that also claims the key and records the result.
//!
//! The table has no unique constraint on the key, so a key whose effect committed twice
//! shows as two rows: the scenario counts duplicates and lost effects from the database.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use stent_core::{Result, SqlConnection, SqlStore};
use stent_postgres::PostgresStore;
use stent_sqlite::SqliteStore;

use crate::target::Target;

/// One row of the effects table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effect {
    /// The row's id, in insertion order.
    pub id: i64,
    /// The key whose execution inserted it.
    pub key: String,
    /// The value that execution returned.
    pub value: String,
}

/// A SQL store with an effects table beside its records.
#[async_trait]
pub trait EffectsStore: SqlStore {
    /// Opens the target's store ([`Target::postgres`], [`Target::sqlite`]).
    async fn open(target: &Target) -> Result<Self>;

    /// Creates `table`: `id` (generated primary key), `key` and `value`, with no constraint
    /// on `key`. On PostgreSQL, a nonzero `commit_pause` adds a deferred trigger that makes
    /// every `COMMIT` holding an effect row sleep a random time up to it (in a function
    /// named `{table}_pause`), before the commit record: a caller can then be killed while
    /// the server commits. SQLite ignores it (see [`on_commit`](Self::on_commit)).
    async fn create_effects(&self, table: &str, commit_pause: Duration) -> Result<()>;

    /// Inserts one effect row on `conn`, inside the caller's transaction.
    async fn insert_effect(
        conn: &mut SqlConnection<Self>,
        table: &str,
        key: &str,
        value: &str,
    ) -> sqlx::Result<()>;

    /// Every row, in insertion order.
    async fn effects(&self, table: &str) -> Result<Vec<Effect>>;

    /// Has `hook` run inside the next `COMMIT` on `conn`, before the commit is written,
    /// where a client can (SQLite's commit hook, on the connection's own thread). A no-op
    /// on PostgreSQL, whose `COMMIT` runs on the server: there the effects table's trigger
    /// pauses it ([`create_effects`](Self::create_effects)).
    async fn on_commit(
        conn: &mut SqlConnection<Self>,
        hook: Box<dyn FnMut() + Send>,
    ) -> sqlx::Result<()>;
}

fn rows(rows: Vec<(i64, String, String)>) -> Vec<Effect> {
    rows.into_iter()
        .map(|(id, key, value)| Effect { id, key, value })
        .collect()
}

#[async_trait]
impl EffectsStore for PostgresStore {
    /// Its sessions carry the application name `worker-{pid}`, so that the parent can
    /// tell whose `COMMIT` the server is running (`pg_stat_activity`).
    async fn open(target: &Target) -> Result<Self> {
        let mut target = target.clone();
        let sep = if target.url.contains('?') { '&' } else { '?' };
        let name = format!("application_name=worker-{}", std::process::id());
        target.url = format!("{}{sep}{name}", target.url);
        target.postgres().await
    }

    async fn create_effects(&self, table: &str, commit_pause: Duration) -> Result<()> {
        let mut script = vec![format!(
            "CREATE TABLE {table} (id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, value TEXT NOT NULL)"
        )];
        if !commit_pause.is_zero() {
            let secs = commit_pause.as_secs_f64();
            script.push(format!(
                "CREATE FUNCTION {table}_pause() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN PERFORM pg_sleep(random() * {secs}); RETURN NULL; END $$"
            ));
            script.push(format!(
                "CREATE CONSTRAINT TRIGGER effects_pause AFTER INSERT ON {table} \
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {table}_pause()"
            ));
        }
        for statement in script {
            sqlx::query(AssertSqlSafe(statement))
                .execute(self.pool())
                .await
                .map_err(|e| self.error(e, "create the effects table", None))?;
        }
        Ok(())
    }

    async fn insert_effect(
        conn: &mut SqlConnection<Self>,
        table: &str,
        key: &str,
        value: &str,
    ) -> sqlx::Result<()> {
        let insert = format!("INSERT INTO {table} (key, value) VALUES ($1, $2)");
        let q = sqlx::query(AssertSqlSafe(insert)).bind(key).bind(value);
        q.execute(conn).await.map(drop)
    }

    async fn effects(&self, table: &str) -> Result<Vec<Effect>> {
        let select = format!("SELECT id, key, value FROM {table} ORDER BY id");
        let q = sqlx::query_as(AssertSqlSafe(select)).fetch_all(self.pool());
        q.await
            .map(rows)
            .map_err(|e| self.error(e, "read the effects", None))
    }

    async fn on_commit(
        _conn: &mut SqlConnection<Self>,
        _hook: Box<dyn FnMut() + Send>,
    ) -> sqlx::Result<()> {
        Ok(())
    }
}

#[async_trait]
impl EffectsStore for SqliteStore {
    async fn open(target: &Target) -> Result<Self> {
        target.sqlite().await
    }

    async fn create_effects(&self, table: &str, _commit_pause: Duration) -> Result<()> {
        let create = format!(
            "CREATE TABLE {table} (id INTEGER PRIMARY KEY, key TEXT NOT NULL, value TEXT NOT NULL)"
        );
        sqlx::query(AssertSqlSafe(create))
            .execute(self.pool())
            .await
            .map_err(|e| self.error(e, "create the effects table", None))?;
        Ok(())
    }

    async fn insert_effect(
        conn: &mut SqlConnection<Self>,
        table: &str,
        key: &str,
        value: &str,
    ) -> sqlx::Result<()> {
        let insert = format!("INSERT INTO {table} (key, value) VALUES (?1, ?2)");
        let q = sqlx::query(AssertSqlSafe(insert)).bind(key).bind(value);
        q.execute(conn).await.map(drop)
    }

    async fn effects(&self, table: &str) -> Result<Vec<Effect>> {
        let select = format!("SELECT id, key, value FROM {table} ORDER BY id");
        let q = sqlx::query_as(AssertSqlSafe(select)).fetch_all(self.pool());
        q.await
            .map(rows)
            .map_err(|e| self.error(e, "read the effects", None))
    }

    async fn on_commit(
        conn: &mut SqlConnection<Self>,
        mut hook: Box<dyn FnMut() + Send>,
    ) -> sqlx::Result<()> {
        // Returning true lets the commit go on.
        let mut handle = conn.lock_handle().await?;
        handle.set_commit_hook(move || {
            hook();
            true
        });
        Ok(())
    }
}
