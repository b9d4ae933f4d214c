//! The raw drivers of the embedded and AWS backends, doing the requests stent makes: shared
//! by the criterion benches and the interleaved example.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use sqlx::{AssertSqlSafe, SqlitePool};
use stent::{DynamoDbStore, Namespace, SqliteStore};

use crate::{Raw, env_url, now_ms};

/// The DynamoDB table of the benches.
pub const DYNAMODB_TABLE: &str = "stent_bench";

/// A store on [`DYNAMODB_TABLE`] at `STENT_DYNAMODB_URL`, the table created if missing.
pub async fn dynamodb_store() -> DynamoDbStore {
    let url = env_url("STENT_DYNAMODB_URL");
    async {
        let store = DynamoDbStore::builder()
            .endpoint_url(url)?
            .table(DYNAMODB_TABLE)?
            .build()
            .await?;
        store.migrate().await?;
        Ok::<_, stent::Error>(store)
    }
    .await
    .expect("connecting stent to STENT_DYNAMODB_URL")
}

/// sqlx on the pool stent uses, against stent's own tables.
#[derive(Debug)]
pub struct SqliteRaw {
    pool: SqlitePool,
    read: [String; 2],
    insert_in_progress: String,
    complete: String,
    upsert: String,
}

impl SqliteRaw {
    /// Statements against `store`'s tables, on its pool.
    pub fn new(store: &SqliteStore) -> Self {
        let table = |ns| format!("\"{}\"", store.table(ns));
        let (idem, cache) = (table(Namespace::Idempotency), table(Namespace::Cache));
        SqliteRaw {
            pool: store.pool().clone(),
            read: [idem.clone(), cache.clone()]
                .map(|t| format!("SELECT value FROM {t} WHERE key = ?1")),
            insert_in_progress: format!(
                "INSERT INTO {idem} (key, state, lease_token, lease_expires_ms, attempt, created_ms) \
                 VALUES (?1, 'in_progress', ?2, ?3, 1, ?4)"
            ),
            complete: format!(
                "UPDATE {idem} SET state = 'completed', value = ?2, lease_token = NULL, \
                 lease_expires_ms = NULL, completed_ms = ?3 WHERE key = ?1"
            ),
            upsert: format!(
                "INSERT INTO {cache} (key, state, value, attempt, created_ms, completed_ms) \
                 VALUES (?1, 'completed', ?2, 1, ?3, ?3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                 completed_ms = excluded.completed_ms"
            ),
        }
    }
}

/// One of [`SqliteRaw`]'s statements, bound and ready to run on a pool or a connection.
type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

impl SqliteRaw {
    /// The first of [`Raw::two_writes`]: the in-progress record of `key`.
    fn insert_claimed<'q>(&'q self, key: &'q str) -> SqliteQuery<'q> {
        let now = now_ms();
        sqlx::query(AssertSqlSafe(self.insert_in_progress.as_str()))
            .bind(key)
            .bind("token")
            .bind(now + 30_000)
            .bind(now)
    }

    /// The second of [`Raw::two_writes`]: `key` completed with `value`.
    fn update_completed<'q>(&'q self, key: &'q str, value: &'q [u8]) -> SqliteQuery<'q> {
        sqlx::query(AssertSqlSafe(self.complete.as_str()))
            .bind(key)
            .bind(value)
            .bind(now_ms())
    }

    /// [`Raw::two_writes`] on one connection held for the run, as the store holds its own:
    /// the same statements without the pool's acquire and release around each.
    pub async fn two_writes_on(&self, conn: &mut sqlx::SqliteConnection, key: &str, value: &[u8]) {
        self.insert_claimed(key)
            .execute(&mut *conn)
            .await
            .expect("INSERT");
        self.update_completed(key, value)
            .execute(&mut *conn)
            .await
            .expect("UPDATE");
    }

    /// One of the pool's connections, to hold.
    pub async fn connection(&self) -> sqlx::pool::PoolConnection<sqlx::Sqlite> {
        self.pool.acquire().await.expect("a connection of the pool")
    }
}

impl Raw for SqliteRaw {
    async fn read(&self, ns: Namespace, key: &str) -> bool {
        let sql = &self.read[usize::from(ns == Namespace::Cache)];
        let row: Option<(Option<Vec<u8>>,)> = sqlx::query_as(AssertSqlSafe(sql.as_str()))
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .expect("SELECT");
        row.is_some()
    }

    async fn two_writes(&self, key: &str, value: &[u8]) {
        self.insert_claimed(key)
            .execute(&self.pool)
            .await
            .expect("INSERT");
        self.update_completed(key, value)
            .execute(&self.pool)
            .await
            .expect("UPDATE");
    }

    async fn read_then_write(&self, key: &str, value: &[u8]) {
        assert!(!self.read(Namespace::Cache, key).await);
        sqlx::query(AssertSqlSafe(self.upsert.as_str()))
            .bind(key)
            .bind(value)
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .expect("INSERT");
    }

    async fn settle(&self) {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await
            .expect("checkpoint");
    }
}

/// The SDK client the store uses, against the store's table and items.
#[derive(Debug)]
pub struct DynamoDbRaw {
    store: DynamoDbStore,
}

impl DynamoDbRaw {
    /// Requests against `store`'s table, with its client.
    pub fn new(store: DynamoDbStore) -> Self {
        DynamoDbRaw { store }
    }

    fn client(&self) -> &Client {
        self.store.client()
    }

    fn pk(&self, ns: Namespace, key: &str) -> AttributeValue {
        AttributeValue::S(self.store.partition_key(ns, key))
    }
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

impl Raw for DynamoDbRaw {
    async fn read(&self, ns: Namespace, key: &str) -> bool {
        let out = self
            .client()
            .get_item()
            .table_name(DYNAMODB_TABLE)
            .key("pk", self.pk(ns, key))
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem");
        out.item.is_some()
    }

    async fn two_writes(&self, key: &str, value: &[u8]) {
        let now = now_ms();
        self.client()
            .put_item()
            .table_name(DYNAMODB_TABLE)
            .item("pk", self.pk(Namespace::Idempotency, key))
            .item("state", s("in_progress"))
            .item("lease_token", s("token"))
            .item("lease_expires_ms", n(now + 30_000))
            .item("attempt", n(1))
            .item("created_ms", n(now))
            .send()
            .await
            .expect("PutItem");
        self.client()
            .update_item()
            .table_name(DYNAMODB_TABLE)
            .key("pk", self.pk(Namespace::Idempotency, key))
            .update_expression(
                "SET #state = :completed, #value = :value, completed_ms = :now \
                 REMOVE lease_token, lease_expires_ms",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#value", "value")
            .expression_attribute_values(":completed", s("completed"))
            .expression_attribute_values(":value", AttributeValue::B(Blob::new(value)))
            .expression_attribute_values(":now", n(now_ms()))
            .send()
            .await
            .expect("UpdateItem");
    }

    async fn read_then_write(&self, key: &str, value: &[u8]) {
        assert!(!self.read(Namespace::Cache, key).await);
        let now = now_ms();
        self.client()
            .put_item()
            .table_name(DYNAMODB_TABLE)
            .item("pk", self.pk(Namespace::Cache, key))
            .item("state", s("completed"))
            .item("value", AttributeValue::B(Blob::new(value)))
            .item("attempt", n(1))
            .item("created_ms", n(now))
            .item("completed_ms", n(now))
            .send()
            .await
            .expect("PutItem");
    }
}
