//! SQLite (a file in WAL mode) through stent next to sqlx on the store's own pool.
//!
//! `cargo bench -p stent-benches --bench sqlite`

use criterion::{Criterion, criterion_group, criterion_main};
use sqlx::{AssertSqlSafe, SqlitePool};
use stent::{Namespace, SqliteStore, Stent};
use stent_benches::{Backend, Raw, bench_backend, now_ms, runtime};

/// sqlx on the pool stent uses, against stent's own tables.
struct SqliteRaw {
    pool: SqlitePool,
    read: [String; 2],
    insert_in_progress: String,
    complete: String,
    upsert: String,
}

impl SqliteRaw {
    fn new(store: &SqliteStore) -> Self {
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
        let now = now_ms();
        sqlx::query(AssertSqlSafe(self.insert_in_progress.as_str()))
            .bind(key)
            .bind("token")
            .bind(now + 30_000)
            .bind(now)
            .execute(&self.pool)
            .await
            .expect("INSERT");
        sqlx::query(AssertSqlSafe(self.complete.as_str()))
            .bind(key)
            .bind(value)
            .bind(now_ms())
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
}

fn sqlite(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = rt
        .block_on(SqliteStore::open(dir.path().join("bench.db")))
        .expect("opening the SQLite file");
    let raw = SqliteRaw::new(&store);
    let backend = Backend {
        name: "sqlite",
        stent: Stent::new(store),
        raw,
        slow: false,
    };
    bench_backend(c, &rt, backend);
}

criterion_group! {
    name = benches;
    config = stent_benches::config();
    targets = sqlite
}
criterion_main!(benches);
