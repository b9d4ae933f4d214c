//! Transactional calls: the claim, the function's writes and the result commit together in
//! one SQL transaction, on stores whose records live in that database.

use sqlx::{AssertSqlSafe, Connection as _, Database};

use super::call::{Served, check_fingerprint};
use super::lease::in_flight;
use super::*;

/// The connection of a store's database, which a transactional function writes through.
pub type SqlConnection<S> = <<S as SqlStore>::Db as Database>::Connection;

/// A store whose records live in an SQL database, so that a claim and its result can be
/// written in a transaction with the function's own writes: the store side of
/// [`DurableBuilder::wrap_tx`], implemented by the PostgreSQL and SQLite stores.
#[async_trait::async_trait]
pub trait SqlStore: ResultStore + Clone {
    /// The database: `sqlx::Postgres` or `sqlx::Sqlite`.
    type Db: Database;

    /// The pool the records live in, for the caller's own queries.
    fn pool(&self) -> &sqlx::Pool<Self::Db>;

    /// Runs `job`, one try of a [`TxDurable::call`] with its transactions, on a connection
    /// of the store's own that nothing else uses until `job` is done: not on the
    /// [pool](Self::pool), whose acquire and release cost more than a statement.
    async fn on_own_connection(
        &self,
        job: &mut dyn OnConnection<SqlConnection<Self>>,
    ) -> Result<()>;

    /// The statement that begins [`TxDurable::call`]'s transactions, in which a statement
    /// waits at most `lock_wait` (at least 1 ms) for a lock another transaction holds.
    fn begin_statement(&self, lock_wait: Duration) -> String;

    /// [`ResultStore::claim`], sent on `conn` inside its transaction.
    async fn claim_in(
        &self,
        conn: &mut SqlConnection<Self>,
        ns: Namespace,
        key: &str,
        claim: &Claim<'_>,
    ) -> Result<ClaimOutcome>;

    /// [`ResultStore::complete`], sent on `conn` inside its transaction.
    async fn complete_in(
        &self,
        conn: &mut SqlConnection<Self>,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()>;

    /// A driver error met while `what` ran on `key`, as stent's.
    fn error(&self, err: sqlx::Error, what: &str, key: Option<&str>) -> Error;
}

/// Work that runs on a connection lent to it: see [`SqlStore::on_own_connection`].
pub trait OnConnection<C>: Send {
    /// Runs on `conn`, which nothing else uses until the returned future is done.
    fn run<'c>(&'c mut self, conn: &'c mut C) -> BoxFuture<'c, Result<()>>;
}

/// The function a [`TxDurable`] runs: it writes through the connection it is given, which is
/// inside the transaction that also records its result.
type TxFunc<S, A, R, E> =
    Box<dyn for<'c> Fn(&'c mut SqlConnection<S>, A) -> BoxFuture<'c, Result<R, E>> + Send + Sync>;

impl<K> DurableBuilder<K> {
    /// Wraps a function whose effects are writes to the database `store` keeps its records
    /// in: its claim, its writes and its result commit in one transaction, or none does.
    /// Always idempotent; see [`TxDurable`] for what each call sends and how callers meet.
    ///
    /// The function gets the transaction's connection (`&mut PgConnection` or `&mut
    /// SqliteConnection`, which `&mut *tx` gives), writes through it with the re-exported
    /// [`sqlx`](crate::sqlx), and returns a boxed future, as the closures of sqlx's
    /// `Connection::transaction` do. The `stent` README ("Exactly once inside your
    /// database") and `examples/transactional.rs` show it on SQLite.
    pub fn wrap_tx<S, A, R, E, F>(self, store: &S, f: F) -> TxDurable<S, A, R, E>
    where
        S: SqlStore,
        K: KeyStrategy<A>,
        A: Serialize + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        E: Send + 'static,
        F: for<'c> Fn(&'c mut SqlConnection<S>, A) -> BoxFuture<'c, Result<R, E>>,
        F: Send + Sync + 'static,
    {
        let (cached, store) = (self.config.cached, store.clone());
        let mut builder = self.idempotent();
        builder.store = Arc::new(store.clone());
        // The plain call path is never taken: a `TxDurable` runs `f` in its transaction.
        let durable = builder.wrap(|_: A| std::future::pending());
        let durable = durable.configure(|inner| {
            if cached {
                inner.invalid = Some(format!(
                    "function {:?} is transactional and cannot be .cached(): its result is \
                     recorded in the transaction, and a cache write outside it would not be",
                    &*inner.config.name
                ));
            }
        });
        TxDurable {
            durable,
            store,
            func: Box::new(f),
        }
    }
}

/// What one try of a transactional call came to.
enum Tried<R, E, A> {
    /// Executed, or a recorded result replayed.
    Served(Result<Traced<R>, E>),
    /// The function failed; its transaction was rolled back.
    Failed(E),
    /// Another caller holds the key; the arguments come back for the next try.
    InFlight(Record, A),
}

/// An idempotent function whose claim, database writes and result commit in one SQL
/// transaction ([`DurableBuilder::wrap_tx`]): exactly once inside the database.
///
/// - [`call`](Self::call) begins a transaction with [`SqlStore::begin_statement`] on a
///   connection of the store's own ([`SqlStore::on_own_connection`]), and in it claims the
///   key, runs the function, records the result and commits; a replay claims, then rolls back.
/// - [`call_in`](Self::call_in) does the same under a savepoint of a transaction the caller
///   holds, and leaves the commit to the caller.
///
/// On SQLite the store's own connection is its writer: the store's other writes in the
/// process wait for the transaction (as for its write lock), and one made through the store
/// from inside the function is refused at once, since it would wait for its own transaction.
/// On PostgreSQL it is one of the store's connections, held until the commit: a store
/// operation from inside the function takes another, so size `max_connections` for both.
///
/// The transaction is the lease: no renewal, and a process that dies mid-call leaves nothing
/// behind. A concurrent call of the same key waits on the claim's row lock (at most the
/// in-flight policy's wait, then [`ErrorKind::Busy`]), then replays if the first commits or
/// executes if it rolled back. On PostgreSQL that wait is the transaction's `lock_timeout`,
/// so the function's own statements also wait at most that long for a row lock. A key held
/// by a lease-mode caller is in flight as usual: `call` waits per the policy, its
/// transaction rolled back meanwhile; `call_in` fails at once with [`ErrorKind::InFlight`]
/// rather than hold the caller's transaction open.
///
/// A function error rolls back everything it wrote, the claim with it. With
/// [`store_errors_if`](Self::store_errors_if), an error to keep is then recorded: by `call`
/// in a transaction of its own, by `call_in` in the caller's. The records are the lease
/// mode's: a key recorded here replays through a [`Durable`] of the same name, and the reverse.
pub struct TxDurable<S: SqlStore, A, R, E> {
    durable: Durable<A, R, E>,
    store: S,
    func: TxFunc<S, A, R, E>,
}

impl<S: SqlStore, A, R, E> fmt::Debug for TxDurable<S, A, R, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxDurable")
            .field("config", &self.durable.inner.config)
            .field("store", &self.durable.inner.store)
            .finish()
    }
}

impl<S, A, R, E> TxDurable<S, A, R, E>
where
    S: SqlStore,
    A: Serialize + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
    E: Send + 'static,
{
    /// Store errors for which `pred` is true and replay them: see [`Durable::store_errors_if`].
    pub fn store_errors_if(mut self, pred: impl Fn(&E) -> bool + Send + Sync + 'static) -> Self
    where
        E: Serialize + DeserializeOwned,
    {
        self.durable = self.durable.store_errors_if(pred);
        self
    }

    /// The key a call with `args` is stored under.
    pub fn key_for(&self, args: &A) -> Result<String> {
        self.durable.key_for(args)
    }

    /// Runs the function in a transaction of its own, or returns the recorded result.
    pub async fn call(&self, args: A) -> Result<R, Error<E>> {
        self.call_traced(args).await.map(|t| t.value)
    }

    /// Like [`call`](Self::call), and also says how the call was served.
    pub async fn call_traced(&self, args: A) -> Result<Traced<R>, Error<E>> {
        let run = |key, args| self.run(key, args);
        self.durable.observed(args, run).await
    }

    /// Runs the function inside the transaction `tx` (a `sqlx::Transaction` derefs to it),
    /// under a savepoint, or returns the recorded result; the result commits when the caller
    /// commits `tx`. A connection outside a transaction is an [`ErrorKind::Config`] error.
    pub async fn call_in(&self, tx: &mut SqlConnection<S>, args: A) -> Result<R, Error<E>> {
        let run = self.durable.observed(args, |k, a| self.run_in(tx, k, a));
        run.await.map(|t| t.value)
    }

    async fn run(&self, key: String, args: A) -> Served<Traced<R>, E> {
        let (d, started) = (&self.durable, Instant::now());
        let fingerprint = d.fingerprint_of(&args)?;
        let begin = (self.store).begin_statement(d.in_flight_wait().max(Duration::from_millis(1)));
        let fingerprint = fingerprint.as_deref();
        let mut job = Try {
            call: self,
            begin: &begin,
            key: &key,
            fingerprint,
            args: Some(args),
            joined: false,
            tried: None,
        };
        loop {
            self.store.on_own_connection(&mut job).await?;
            match job.tried.take().expect("set by a job that succeeded") {
                Tried::Served(served) => return Ok(served),
                Tried::Failed(e) => return Ok(Err(e)),
                Tried::InFlight(record, back) => {
                    job.args = Some(back);
                    let joined = &mut job.joined;
                    let nap = d.wait_or_reject(&key, fingerprint, &record, started, joined)?;
                    tokio::time::sleep(nap.min(Duration::from_millis(50))).await;
                }
            }
        }
    }

    async fn run_in(
        &self,
        conn: &mut SqlConnection<S>,
        key: String,
        args: A,
    ) -> Served<Traced<R>, E> {
        if !conn.is_in_transaction() {
            let why = "call_in needs a connection inside a transaction: begin one, or use call";
            return Err(Error::config(why));
        }
        let fingerprint = self.durable.fingerprint_of(&args)?;
        let fingerprint = fingerprint.as_deref();
        let savepoint = conn.begin().await;
        let sp = savepoint.map_err(|e| self.store.error(e, "savepoint", Some(&key)))?;
        match self.try_in(sp, &key, fingerprint, args, false).await? {
            Tried::Served(served) => Ok(served),
            Tried::Failed(e) => {
                if let Some(bytes) = self.durable.stored_error(&e) {
                    self.record_error(conn, &key, fingerprint, bytes?).await?;
                }
                Ok(Err(e))
            }
            // Waiting would hold the caller's transaction (and its locks) open.
            Tried::InFlight(record, _) => {
                check_fingerprint(&key, fingerprint, &record)?;
                Err(in_flight(&key, &record, None))
            }
        }
    }

    /// One try in `tx`, the call's own transaction or a savepoint of the caller's: the
    /// claim, then the function, the completion and the commit. Anything else rolls `tx`
    /// back (a `?` drops it, which rolls it back too).
    async fn try_in(
        &self,
        mut tx: sqlx::Transaction<'_, S::Db>,
        key: &str,
        fingerprint: Option<&str>,
        args: A,
        joined: bool,
    ) -> Result<Tried<R, E, A>> {
        let (d, ns) = (&self.durable, Namespace::Idempotency);
        let token = LeaseToken::generate();
        let claim = d.claim(&token, fingerprint);
        let attempt = match self.store.claim_in(&mut tx, ns, key, &claim).await? {
            ClaimOutcome::Acquired { attempt, .. } => attempt,
            ClaimOutcome::Completed(record) => {
                self.rollback(tx, key).await?;
                let replayed = d.replay_completed(key.to_owned(), fingerprint, &record, joined);
                return Ok(Tried::Served(replayed.await?));
            }
            ClaimOutcome::InFlight(record) => {
                self.rollback(tx, key).await?;
                return Ok(Tried::InFlight(record, args));
            }
        };
        let ran = d.execute(key.into(), attempt, |_| (self.func)(&mut tx, args));
        let value = match ran.await? {
            Ok(value) => value,
            Err(e) => {
                self.rollback(tx, key).await?;
                return Ok(Tried::Failed(e));
            }
        };
        let bytes = codec::encode_value(&value)?;
        let retention = d.inner.config.retention;
        let completed = (self.store).complete_in(&mut tx, ns, key, &token, &bytes, retention);
        completed.await?;
        self.commit(tx, key).await?;
        let traced = Traced::new(value, Status::Executed, attempt, key.to_owned());
        Ok(Tried::Served(Ok(traced)))
    }

    /// Records a function error that [`store_errors_if`](Self::store_errors_if) keeps, as
    /// `bytes`, in the transaction on `conn`.
    async fn record_error(
        &self,
        conn: &mut SqlConnection<S>,
        key: &str,
        fingerprint: Option<&str>,
        bytes: Vec<u8>,
    ) -> Result<()> {
        let (token, ns) = (LeaseToken::generate(), Namespace::Idempotency);
        let claim = self.durable.claim(&token, fingerprint);
        // Someone else may have claimed the key since the rollback: then theirs stands.
        let ClaimOutcome::Acquired { .. } = self.store.claim_in(conn, ns, key, &claim).await?
        else {
            return Ok(());
        };
        let retention = self.durable.inner.config.retention;
        let completed = (self.store).complete_in(conn, ns, key, &token, &bytes, retention);
        completed.await
    }

    async fn commit(&self, tx: sqlx::Transaction<'_, S::Db>, key: &str) -> Result<()> {
        tx.commit().await.map_err(|e| {
            let e = self.store.error(e, "commit", Some(key));
            Error::new(
                ErrorKind::Unavailable,
                "the commit failed or its reply was lost: the function's writes and its \
                 result were committed together or not at all; call again to find out",
            )
            .with_key(key)
            .with_source(e)
        })
    }

    async fn rollback(&self, tx: sqlx::Transaction<'_, S::Db>, key: &str) -> Result<()> {
        let rolled_back = tx.rollback().await;
        rolled_back.map_err(|e| self.store.error(e, "rollback", Some(key)))
    }
}

/// One try of a [`TxDurable::call`], the job the store runs on its own connection:
/// [`TxDurable::try_in`] in a transaction begun with `begin`, then, when the function failed
/// with an error to keep, its record in a transaction of its own.
struct Try<'a, S: SqlStore, A, R, E> {
    call: &'a TxDurable<S, A, R, E>,
    begin: &'a str,
    key: &'a str,
    fingerprint: Option<&'a str>,
    args: Option<A>,
    joined: bool,
    tried: Option<Tried<R, E, A>>,
}

impl<S, A, R, E> OnConnection<SqlConnection<S>> for Try<'_, S, A, R, E>
where
    S: SqlStore,
    A: Serialize + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
    E: Send + 'static,
{
    fn run<'c>(&'c mut self, conn: &'c mut SqlConnection<S>) -> BoxFuture<'c, Result<()>> {
        Box::pin(async move {
            let (call, key, fingerprint) = (self.call, self.key, self.fingerprint);
            let fail = |e| call.store.error(e, "begin", Some(key));
            let tx = conn.begin_with(AssertSqlSafe(self.begin.to_owned())).await;
            let args = self.args.take().expect("run once");
            let tried = call.try_in(tx.map_err(fail)?, key, fingerprint, args, self.joined);
            let tried = self.tried.insert(tried.await?);
            if let Tried::Failed(e) = tried
                && let Some(bytes) = call.durable.stored_error(e)
            {
                let mut tx = conn.begin().await.map_err(fail)?;
                call.record_error(&mut tx, key, fingerprint, bytes?).await?;
                call.commit(tx, key).await?;
            }
            Ok(())
        })
    }
}
