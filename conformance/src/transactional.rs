//! Transactional calls ([`wrap_tx`](stent_core::DurableBuilder::wrap_tx)) on a SQL store: the
//! function's writes, its claim and its result commit together or not at all, and the
//! transactional and lease modes meet on one key.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use stent_core::codec::encode_value;
use stent_core::{
    ErrorKind, InFlight, RecordState, ResultStore, SqlConnection, SqlStore, Status, Stent,
    TxDurable,
};

use crate::support::{IDEM, LIVE, SHORT, acquire, eventually};

/// What the transactional cases need of a SQL backend besides its store: a table of
/// effects, written inside a call's transaction and read back from the database.
pub trait SqlBackend: Send + Sync + 'static {
    /// The store under test.
    type Store: SqlStore;

    /// Creates a table `name (key TEXT PRIMARY KEY, value TEXT NOT NULL)` beside the
    /// store's own tables; returns the table as SQL names it.
    fn create_effects<'a>(store: &'a Self::Store, name: &'a str) -> BoxFuture<'a, String>;

    /// Inserts one effect row on `conn`.
    fn insert_effect<'a>(
        conn: &'a mut SqlConnection<Self::Store>,
        table: &'a str,
        key: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, sqlx::Result<()>>;

    /// Every effect row, in key order.
    fn effects<'a>(store: &'a Self::Store, table: &'a str) -> BoxFuture<'a, Vec<(String, String)>>;
}

type Post<X> = TxDurable<<X as SqlBackend>::Store, (String, i64), String, String>;

/// A ledger of effects in the store's database, and functions that post to it.
struct Ledger<X: SqlBackend> {
    store: X::Store,
    stent: Stent,
    table: String,
    runs: Arc<AtomicU32>,
}

impl<X: SqlBackend> Ledger<X> {
    async fn new(store: X::Store) -> Self {
        let table = X::create_effects(&store, &format!("effects_{}", crate::unique_id())).await;
        Ledger {
            stent: Stent::new(store.clone()),
            store,
            table,
            runs: Arc::new(AtomicU32::new(0)),
        }
    }

    /// `ledger::post`, which inserts `(account, "{cents}:run{n}")`, sleeps `delay`, then
    /// fails with `fail` if given, else returns `"{account}:{cents}:run{n}"`.
    fn post(&self, policy: InFlight, delay: Duration, fail: Option<&'static str>) -> Post<X> {
        let (table, runs) = (self.table.clone(), Arc::clone(&self.runs));
        let builder = self.stent.durable("ledger::post").in_flight(policy);
        builder.wrap_tx(&self.store, move |tx, (account, cents): (String, i64)| {
            let (table, runs) = (table.clone(), Arc::clone(&runs));
            Box::pin(async move {
                let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                let effect = format!("{cents}:run{n}");
                let inserted = X::insert_effect(tx, &table, &account, &effect).await;
                inserted.map_err(|e| format!("insert failed: {e}"))?;
                tokio::time::sleep(delay).await;
                match fail {
                    Some(error) => Err(error.to_owned()),
                    None => Ok(format!("{account}:{cents}:run{n}")),
                }
            })
        })
    }

    fn runs(&self) -> u32 {
        self.runs.load(Ordering::SeqCst)
    }

    async fn effects(&self) -> Vec<(String, String)> {
        X::effects(&self.store, &self.table).await
    }
}

fn args() -> (String, i64) {
    ("acct-1".to_owned(), 500)
}

const WAIT: InFlight = InFlight::Wait {
    timeout: Duration::from_secs(20),
};

/// A transactional call commits its effect and its record together; the next call, in
/// either mode, replays the record without running again.
pub async fn transactional_call_commits_the_effect_and_the_record_together<X: SqlBackend>(
    store: X::Store,
) {
    let ledger = Ledger::<X>::new(store).await;
    let post = ledger.post(WAIT, Duration::ZERO, None);
    let first = post.call_traced(args()).await.expect("first call");
    assert_eq!(first.outcome.status, Status::Executed);
    assert_eq!(
        (first.value.as_str(), first.outcome.attempt),
        ("acct-1:500:run1", 1)
    );
    let effect = ("acct-1".to_owned(), "500:run1".to_owned());
    assert_eq!(ledger.effects().await, vec![effect.clone()]);
    let key = post.key_for(&args()).unwrap();
    let record = ledger
        .store
        .get(IDEM, &key)
        .await
        .unwrap()
        .expect("a record");
    assert_eq!(record.state, RecordState::Completed);
    assert_eq!(record.value, Some(encode_value("acct-1:500:run1").unwrap()));

    let again = post.call_traced(args()).await.expect("replay");
    assert_eq!(again.outcome.status, Status::Replayed);
    assert_eq!(again.value, "acct-1:500:run1");
    let lease_mode =
        ledger
            .stent
            .durable("ledger::post")
            .idempotent()
            .wrap(|(_, _): (String, i64)| async {
                panic!("a recorded key must not run again") as Result<String, Infallible>
            });
    let replayed = lease_mode
        .call_traced(args())
        .await
        .expect("lease-mode replay");
    assert_eq!(replayed.outcome.status, Status::Replayed);
    assert_eq!(replayed.value, "acct-1:500:run1");
    assert_eq!((ledger.runs(), ledger.effects().await), (1, vec![effect]));
}

/// Keys holding quotes, backslashes and what SQL quoting is made of run once and replay,
/// each its own record.
pub async fn transactional_keys_with_quotes_and_backslashes_replay<X: SqlBackend>(store: X::Store) {
    let ledger = Ledger::<X>::new(store).await;
    let post = ledger.post(WAIT, Duration::ZERO, None);
    let accounts = [
        "it's",
        "back\\slash\\",
        "E'\\'",
        "$$'); --",
        "\\'\\''",
        "é\u{1F600}",
    ];
    for account in accounts {
        let args = (account.to_owned(), 500);
        let first = post.call_traced(args.clone()).await.expect("first call");
        assert_eq!(first.outcome.status, Status::Executed, "{account}");
        let again = post.call_traced(args).await.expect("replay");
        assert_eq!(again.outcome.status, Status::Replayed, "{account}");
        assert_eq!(again.value, first.value, "{account}");
    }
    assert_eq!(ledger.runs(), accounts.len() as u32);
    assert_eq!(ledger.effects().await.len(), accounts.len());
}

/// A function error rolls back its writes and its claim: nothing is recorded and the next
/// call runs as attempt 1.
pub async fn transactional_function_error_rolls_back_its_writes_and_its_claim<X: SqlBackend>(
    store: X::Store,
) {
    let ledger = Ledger::<X>::new(store).await;
    let failing = ledger.post(WAIT, Duration::ZERO, Some("gateway timeout"));
    let err = failing.call(args()).await.expect_err("the function fails");
    assert_eq!(
        err.function_error().map(String::as_str),
        Some("gateway timeout")
    );
    assert_eq!(ledger.effects().await, vec![]);
    let key = failing.key_for(&args()).unwrap();
    assert!(ledger.store.get(IDEM, &key).await.unwrap().is_none());

    let post = ledger.post(InFlight::Reject, Duration::ZERO, None);
    let t = post.call_traced(args()).await.expect("the retry runs");
    assert_eq!((t.outcome.status, t.outcome.attempt), (Status::Executed, 1));
    assert_eq!(
        ledger.effects().await,
        vec![("acct-1".into(), "500:run2".into())]
    );
}

/// With `store_errors_if`, a terminal error is recorded without the function's writes and
/// replays without running again.
pub async fn transactional_terminal_error_is_recorded_without_the_writes<X: SqlBackend>(
    store: X::Store,
) {
    let ledger = Ledger::<X>::new(store).await;
    let post = ledger
        .post(WAIT, Duration::ZERO, Some("card declined"))
        .store_errors_if(|e: &String| e == "card declined");
    for _ in 0..2 {
        let err = post.call(args()).await.expect_err("declined");
        assert_eq!(
            err.function_error().map(String::as_str),
            Some("card declined")
        );
    }
    assert_eq!((ledger.runs(), ledger.effects().await), (1, vec![]));
    let key = post.key_for(&args()).unwrap();
    let record = ledger
        .store
        .get(IDEM, &key)
        .await
        .unwrap()
        .expect("a record");
    assert_eq!(record.state, RecordState::Completed);
}

/// 16 concurrent transactional calls of one key: the first runs, the others wait on its
/// claim's lock and replay its result; one effect row.
pub async fn transactional_duplicates_wait_for_the_first_and_replay<X: SqlBackend>(
    store: X::Store,
) {
    let ledger = Ledger::<X>::new(store).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let (post, barrier) = (
                ledger.post(WAIT, Duration::from_millis(200), None),
                Arc::clone(&barrier),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                post.call_traced(args()).await
            })
        })
        .collect();
    let mut executed = 0;
    for call in calls {
        let t = call
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("a caller failed: {e}"));
        assert_eq!(t.value, "acct-1:500:run1");
        executed += usize::from(t.outcome.status == Status::Executed);
    }
    assert_eq!((executed, ledger.runs()), (1, 1));
    assert_eq!(
        ledger.effects().await,
        vec![("acct-1".into(), "500:run1".into())]
    );
}

/// A key a lease-mode caller holds is in flight for a transactional call: rejected under
/// `InFlight::Reject`, and waited for (then replayed) under `InFlight::Wait`.
pub async fn transactional_call_waits_for_a_lease_mode_holder<X: SqlBackend>(store: X::Store) {
    let ledger = Ledger::<X>::new(store).await;
    let key = ledger
        .post(WAIT, Duration::ZERO, None)
        .key_for(&args())
        .unwrap();
    let (token, _) = acquire(&ledger.store, IDEM, &key, LIVE).await;
    let rejecting = ledger.post(InFlight::Reject, Duration::ZERO, None);
    let err = rejecting.call(args()).await.expect_err("in flight");
    assert_eq!(err.kind(), ErrorKind::InFlight);

    let holder = ledger.store.clone();
    let completing = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let value = encode_value("held:value").unwrap();
        holder.complete(IDEM, &key, &token, &value, None).await
    });
    let t = ledger
        .post(WAIT, Duration::ZERO, None)
        .call_traced(args())
        .await;
    let t = t.expect("the waiter replays the holder's result");
    assert_eq!(
        (t.value.as_str(), t.outcome.status),
        ("held:value", Status::Joined)
    );
    completing.await.unwrap().expect("the holder completes");
    assert_eq!((ledger.runs(), ledger.effects().await), (0, vec![]));
}

/// A lease-mode call of a key a transactional call holds waits for its commit and replays
/// its result.
pub async fn lease_mode_call_waits_for_a_transactional_holder<X: SqlBackend>(store: X::Store) {
    let ledger = Ledger::<X>::new(store).await;
    let post = ledger.post(WAIT, Duration::from_millis(500), None);
    let holder = tokio::spawn(async move { post.call(args()).await });
    // The holder's function runs once its claim is written in its transaction.
    let started = || async { (ledger.runs() >= 1).then_some(()) };
    eventually("the transactional holder runs", started).await;
    let lease_mode = ledger
        .stent
        .durable("ledger::post")
        .idempotent()
        .wrap(|(_, _): (String, i64)| async { Ok::<String, Infallible>("lease mode ran".into()) });
    let t = lease_mode
        .call_traced(args())
        .await
        .expect("the lease-mode caller");
    assert_eq!(t.value, "acct-1:500:run1");
    assert_ne!(t.outcome.status, Status::Executed);
    assert_eq!(
        holder.await.unwrap().expect("the holder"),
        "acct-1:500:run1"
    );
    assert_eq!(
        ledger.effects().await,
        vec![("acct-1".into(), "500:run1".into())]
    );
}

/// `call_in` commits and rolls back with the caller's transaction, and a function error
/// inside it rolls back only the function's writes.
pub async fn call_in_commits_and_rolls_back_with_the_callers_transaction<X: SqlBackend>(
    store: X::Store,
) {
    let ledger = Ledger::<X>::new(store).await;
    let post = ledger.post(InFlight::Reject, Duration::ZERO, None);
    let key = post.key_for(&args()).unwrap();
    let pool = ledger.store.pool();

    let mut tx = pool.begin().await.unwrap();
    X::insert_effect(&mut tx, &ledger.table, "caller", "one")
        .await
        .unwrap();
    assert_eq!(
        post.call_in(&mut tx, args()).await.unwrap(),
        "acct-1:500:run1"
    );
    tx.rollback().await.unwrap();
    assert_eq!(ledger.effects().await, vec![]);
    assert!(ledger.store.get(IDEM, &key).await.unwrap().is_none());

    let mut tx = pool.begin().await.unwrap();
    let failing = ledger.post(InFlight::Reject, Duration::ZERO, Some("declined"));
    let err = failing.call_in(&mut tx, args()).await.expect_err("fails");
    assert_eq!(err.function_error().map(String::as_str), Some("declined"));
    X::insert_effect(&mut tx, &ledger.table, "caller", "two")
        .await
        .unwrap();
    assert_eq!(
        post.call_in(&mut tx, args()).await.unwrap(),
        "acct-1:500:run3"
    );
    tx.commit().await.unwrap();
    let effects = vec![
        ("acct-1".into(), "500:run3".into()),
        ("caller".into(), "two".into()),
    ];
    assert_eq!(ledger.effects().await, effects);
    let t = post.call_traced(args()).await.expect("replay");
    assert_eq!(
        (t.value.as_str(), t.outcome.status),
        ("acct-1:500:run3", Status::Replayed)
    );
}

/// `call_in` on a connection outside a transaction is a `Config` error, and sends nothing.
pub async fn call_in_outside_a_transaction_is_a_config_error<X: SqlBackend>(store: X::Store) {
    let ledger = Ledger::<X>::new(store).await;
    let post = ledger.post(WAIT, Duration::ZERO, None);
    let mut conn = ledger.store.pool().acquire().await.unwrap();
    let err = post.call_in(&mut conn, args()).await.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!((ledger.runs(), ledger.effects().await), (0, vec![]));
}

/// A transactional call takes over a key whose lease-mode holder's lease lapsed, as
/// attempt 2.
pub async fn transactional_call_takes_over_a_lapsed_lease<X: SqlBackend>(store: X::Store) {
    let ledger = Ledger::<X>::new(store).await;
    let post = ledger.post(InFlight::Reject, Duration::ZERO, None);
    let key = post.key_for(&args()).unwrap();
    acquire(&ledger.store, IDEM, &key, SHORT).await;
    tokio::time::sleep(SHORT * 2).await;
    let t = post.call_traced(args()).await.expect("takes over");
    assert_eq!((t.outcome.status, t.outcome.attempt), (Status::Executed, 2));
    assert_eq!(
        ledger.effects().await,
        vec![("acct-1".into(), "500:run1".into())]
    );
}

/// A cancelled transactional call leaves nothing behind: no effect, and no claim for the
/// next caller to wait for.
pub async fn cancelled_transactional_call_leaves_nothing_behind<X: SqlBackend>(store: X::Store) {
    let ledger = Ledger::<X>::new(store).await;
    let slow = ledger.post(WAIT, Duration::from_secs(30), None);
    let cancelled = tokio::time::timeout(Duration::from_millis(300), slow.call(args())).await;
    assert!(cancelled.is_err(), "the call should still be running");
    let post = ledger.post(WAIT, Duration::ZERO, None);
    let t = post.call_traced(args()).await.expect("runs afresh");
    assert_eq!((t.outcome.status, t.outcome.attempt), (Status::Executed, 1));
    assert_eq!(
        ledger.effects().await,
        vec![("acct-1".into(), "500:run2".into())]
    );
}
