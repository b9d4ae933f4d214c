//! PostgreSQL (`STENT_POSTGRES_URL`) through stent next to sqlx on the store's own pool.
//!
//! `cargo bench -p stent-benches --bench postgres`

use criterion::{Criterion, criterion_group, criterion_main};
use sqlx::{AssertSqlSafe, PgPool};
use stent::{Namespace, PostgresStore, Stent};
use stent_benches::{Backend, Raw, bench_backend, env_url, runtime};

/// sqlx on the pool stent uses, against stent's own tables.
struct PostgresRaw {
    pool: PgPool,
    read: [String; 2],
    insert_in_progress: String,
    complete: String,
    upsert: String,
}

impl PostgresRaw {
    fn new(store: &PostgresStore) -> Self {
        let table = |ns| format!("\"{}\"", store.table(ns));
        let (idem, cache) = (table(Namespace::Idempotency), table(Namespace::Cache));
        PostgresRaw {
            pool: store.pool().clone(),
            read: [idem.clone(), cache.clone()]
                .map(|t| format!("SELECT value FROM {t} WHERE key = $1")),
            insert_in_progress: format!(
                "INSERT INTO {idem} (key, state, lease_token, lease_expires_at) \
                 VALUES ($1, 'in_progress', $2, now() + interval '30 seconds')"
            ),
            complete: format!(
                "UPDATE {idem} SET state = 'completed', value = $2, lease_token = NULL, \
                 lease_expires_at = NULL, completed_at = now() WHERE key = $1"
            ),
            upsert: format!(
                "INSERT INTO {cache} (key, state, value, completed_at) \
                 VALUES ($1, 'completed', $2, now()) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                 completed_at = excluded.completed_at"
            ),
        }
    }
}

impl Raw for PostgresRaw {
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
        sqlx::query(AssertSqlSafe(self.insert_in_progress.as_str()))
            .bind(key)
            .bind("token")
            .execute(&self.pool)
            .await
            .expect("INSERT");
        sqlx::query(AssertSqlSafe(self.complete.as_str()))
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await
            .expect("UPDATE");
    }

    async fn read_then_write(&self, key: &str, value: &[u8]) {
        assert!(!self.read(Namespace::Cache, key).await);
        sqlx::query(AssertSqlSafe(self.upsert.as_str()))
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await
            .expect("INSERT");
    }
}

fn postgres(c: &mut Criterion) {
    let url = env_url("STENT_POSTGRES_URL");
    let rt = runtime();
    let store = rt
        .block_on(async {
            PostgresStore::builder()
                .url(url)
                .table_prefix("bench_")?
                .build()
                .await
        })
        .expect("connecting stent to STENT_POSTGRES_URL");
    let raw = PostgresRaw::new(&store);
    let backend = Backend {
        name: "postgres",
        stent: Stent::new(store),
        raw,
        slow: false,
    };
    bench_backend(c, &rt, backend);
}

criterion_group! {
    name = benches;
    config = stent_benches::config();
    targets = postgres
}
criterion_main!(benches);
