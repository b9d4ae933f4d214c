//! The leanest client of each SQL server, doing the round trips stent's calls make: what the
//! `limits` comparison measures stent's distance from. SQLite: rusqlite on a connection held
//! for the run, each statement prepared once. PostgreSQL: tokio-postgres on a connection held
//! for the run, each statement prepared once.

use std::sync::Mutex;

use stent::{Namespace, PostgresStore, SqliteStore};

use crate::{Raw, env_url, now_ms};

/// rusqlite on a held connection to the store's file, against the store's tables.
#[derive(Debug)]
pub struct SqliteLean {
    conn: Mutex<rusqlite::Connection>,
    read: [String; 2],
    insert_in_progress: String,
    complete: String,
    upsert: String,
}

impl SqliteLean {
    /// A connection to `store`'s file.
    pub fn new(store: &SqliteStore) -> Self {
        let conn = rusqlite::Connection::open(store.path()).expect("opening the SQLite file");
        // The store's default durability (its writes commit to the WAL without syncing).
        conn.pragma_update(None, "synchronous", "NORMAL")
            .expect("PRAGMA");
        let table = |ns| format!("\"{}\"", store.table(ns));
        let (idem, cache) = (table(Namespace::Idempotency), table(Namespace::Cache));
        SqliteLean {
            conn: Mutex::new(conn),
            upsert: format!(
                "INSERT INTO {cache} (key, state, value, attempt, created_ms, completed_ms) \
                 VALUES (?1, 'completed', ?2, 1, ?3, ?3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                 completed_ms = excluded.completed_ms"
            ),
            read: [idem.clone(), cache].map(|t| format!("SELECT value FROM {t} WHERE key = ?1")),
            insert_in_progress: format!(
                "INSERT INTO {idem} (key, state, lease_token, lease_expires_ms, attempt, created_ms) \
                 VALUES (?1, 'in_progress', ?2, ?3, 1, ?4)"
            ),
            complete: format!(
                "UPDATE {idem} SET state = 'completed', value = ?2, lease_token = NULL, \
                 lease_expires_ms = NULL, completed_ms = ?3 WHERE key = ?1"
            ),
        }
    }
}

impl Raw for SqliteLean {
    async fn read(&self, ns: Namespace, key: &str) -> bool {
        let conn = self.conn.lock().expect("not poisoned");
        let mut stmt = conn
            .prepare_cached(&self.read[usize::from(ns == Namespace::Cache)])
            .expect("SELECT");
        let value: Option<Option<Vec<u8>>> =
            rusqlite::OptionalExtension::optional(stmt.query_row([key], |row| row.get(0)))
                .expect("SELECT");
        value.is_some()
    }

    async fn two_writes(&self, key: &str, value: &[u8]) {
        let conn = self.conn.lock().expect("not poisoned");
        let now = now_ms();
        let mut insert = conn
            .prepare_cached(&self.insert_in_progress)
            .expect("INSERT");
        insert
            .execute((key, "token", now + 30_000, now))
            .expect("INSERT");
        let mut update = conn.prepare_cached(&self.complete).expect("UPDATE");
        update.execute((key, value, now_ms())).expect("UPDATE");
    }

    async fn read_then_write(&self, key: &str, value: &[u8]) {
        assert!(!self.read(Namespace::Cache, key).await);
        let conn = self.conn.lock().expect("not poisoned");
        let mut upsert = conn.prepare_cached(&self.upsert).expect("INSERT");
        upsert.execute((key, value, now_ms())).expect("INSERT");
    }
}

/// tokio-postgres on a held connection to `STENT_POSTGRES_URL`, against the store's tables.
#[derive(Debug)]
pub struct PostgresLean {
    client: tokio_postgres::Client,
    read: [tokio_postgres::Statement; 2],
    insert_in_progress: tokio_postgres::Statement,
    complete: tokio_postgres::Statement,
    upsert: tokio_postgres::Statement,
}

impl PostgresLean {
    /// A connection to the server `store` is on, its statements prepared.
    pub async fn new(store: &PostgresStore) -> Self {
        let url = env_url("STENT_POSTGRES_URL");
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connecting tokio-postgres to STENT_POSTGRES_URL");
        tokio::spawn(connection);
        let table = |ns| format!("\"{}\"", store.table(ns));
        let (idem, cache) = (table(Namespace::Idempotency), table(Namespace::Cache));
        let prepare = async |sql: String| client.prepare(&sql).await.expect("PREPARE");
        PostgresLean {
            read: [
                prepare(format!("SELECT value FROM {idem} WHERE key = $1")).await,
                prepare(format!("SELECT value FROM {cache} WHERE key = $1")).await,
            ],
            insert_in_progress: prepare(format!(
                "INSERT INTO {idem} (key, state, lease_token, lease_expires_at) \
                 VALUES ($1, 'in_progress', $2, now() + interval '30 seconds')"
            ))
            .await,
            complete: prepare(format!(
                "UPDATE {idem} SET state = 'completed', value = $2, lease_token = NULL, \
                 lease_expires_at = NULL, completed_at = now() WHERE key = $1"
            ))
            .await,
            upsert: prepare(format!(
                "INSERT INTO {cache} (key, state, value, completed_at) \
                 VALUES ($1, 'completed', $2, now()) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                 completed_at = excluded.completed_at"
            ))
            .await,
            client,
        }
    }
}

impl Raw for PostgresLean {
    async fn read(&self, ns: Namespace, key: &str) -> bool {
        let stmt = &self.read[usize::from(ns == Namespace::Cache)];
        let row = self.client.query_opt(stmt, &[&key]).await.expect("SELECT");
        row.is_some_and(|row| row.get::<_, Option<Vec<u8>>>(0).is_some())
    }

    async fn two_writes(&self, key: &str, value: &[u8]) {
        let client = &self.client;
        let insert = client
            .execute(&self.insert_in_progress, &[&key, &"token"])
            .await;
        insert.expect("INSERT");
        let update = client.execute(&self.complete, &[&key, &value]).await;
        update.expect("UPDATE");
    }

    async fn read_then_write(&self, key: &str, value: &[u8]) {
        assert!(!self.read(Namespace::Cache, key).await);
        let upsert = self.client.execute(&self.upsert, &[&key, &value]).await;
        upsert.expect("INSERT");
    }
}
