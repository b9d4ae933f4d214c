//! Transactional calls ([`wrap_tx`](stent_core::DurableBuilder::wrap_tx)) by 8 processes ×
//! 64 tasks over 200 keys, each execution inserting one row into an effects table in the
//! store's own database, while workers are killed with `SIGKILL` at chosen points of their
//! transactions and replaced, and (on PostgreSQL) the server is stopped mid-run as `pg_ctl
//! stop -m immediate` stops it, then started again. Counted from the database at the end:
//! every key has exactly one effect row if and only if it has a completed record, never
//! two, and every caller that got a value got that row's value.
//!
//! The effects table has no unique constraint on the key, so a duplicate would show as a
//! second row. Keys are dealt in windows ([`Shape::windowed_task_keys`]): every task makes
//! one call per step, and the keys of step `j` are called by about 40 callers from every
//! process at once, so executions (and the kills aimed at them) happen all through the run.
//!
//! Kill points ([`Aim`]): the parent arms each kill at a random time, waits for an
//! execution to reach the point the kill aims at (its start, its insert, its function's
//! return, its `COMMIT`), waits a random 0–[`KILL_DELAY_MS`] ms more and kills that
//! execution's process. The function sleeps a random 0–[`PAUSE_MS`] ms before and after
//! its insert, and the `COMMIT` a random 0–[`COMMIT_PAUSE`] before the commit is written
//! (a deferred trigger on PostgreSQL, a commit hook on SQLite), so each point opens a
//! window a kill can land in. Where every execution ended ([`End`]) is read afterwards from
//! the ledger, the steps the function appends and the effects table.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, UNIX_EPOCH};

use rand::{Rng as _, SeedableRng as _};
use sqlx::{Connection as _, PgConnection};
use stent_conformance::servers::local::PostgresServer;
use stent_core::codec::{Stored, decode};
use stent_core::{Namespace, RecordState, Stent};
use stent_postgres::PostgresStore;
use stent_reliability::effects::{Effect, EffectsStore};
use stent_reliability::harness::start_together;
use stent_reliability::job::{Event, Shape, Summary, TX_FUNCTION, tx_value_of};
use stent_reliability::{Backend, Entry, Ledger, Report, Target, Task, Worker, now_ms};
use stent_sqlite::SqliteStore;

use crate::support::{self, Fixture, PATIENCE, WORKER, figure};

const PROCESSES: usize = 8;
const TASKS: usize = 64;
const KEYS: usize = 200;
/// The longest of the function's two sleeps, before and after its insert.
const PAUSE_MS: u64 = 8;
/// The longest sleep inside a `COMMIT` holding an effect row, before the commit is
/// written (PostgreSQL: the effects table's trigger; SQLite: the commit hook).
const COMMIT_PAUSE: Duration = Duration::from_millis(8);
/// The longest wait from the point a kill is aimed at ([`Aim`]) to the kill.
const KILL_DELAY_MS: u64 = 8;
/// How long PostgreSQL stays down.
const DOWN: Duration = Duration::from_millis(500);
/// How long a store operation may wait for the server (PostgreSQL: for a connection).
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// Steps: calls per task, and windows of keys (8,192 calls, about 41 per key, each key's
/// callers calling it at the same step).
const STEPS: usize = 16;
/// Time between two steps: long enough for one step's calls on SQLite, which runs one
/// write transaction at a time, and every transactional call, a replay too, is one
/// (`BEGIN IMMEDIATE`).
const STEP: Duration = Duration::from_millis(1000);
/// Workers killed, aimed at each point of [`Aim::ALL`] in turn.
const KILLS: usize = 16;

/// What the parent does to the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    /// Kills a worker with `SIGKILL` and starts a replacement.
    Kill,
    /// Stops PostgreSQL as `pg_ctl stop -m immediate` does ([`crash`]) and starts it again.
    Restart,
}

/// A worker killed by the parent.
#[derive(Debug)]
struct Kill {
    pid: u32,
    at_ms: i64,
    /// Where it was aimed.
    aim: Aim,
}

/// The server's outage.
#[derive(Debug, Clone, Copy)]
struct Outage {
    stopped_at: i64,
    back_at: i64,
}

/// Where an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    /// Its effect and its record committed, and its caller got the value.
    Committed,
    /// Committed, but its process was killed before the call returned the value.
    CommittedCallerKilled,
    /// Killed before its insert returned.
    KilledBeforeInsert,
    /// Killed after its insert, before the function returned.
    KilledAfterInsert,
    /// Killed after the function returned, before its `COMMIT` ran (SQLite) or at any
    /// point before it took effect (PostgreSQL, which says nothing of its `COMMIT`s).
    KilledAfterReturn,
    /// Killed inside its `COMMIT`, before the commit was written (SQLite: after the commit
    /// hook's step).
    KilledInCommit,
    /// Cut short by the server's restart.
    RolledBackByRestart,
}

impl End {
    const fn name(self) -> &'static str {
        match self {
            End::Committed => "committed",
            End::CommittedCallerKilled => "committed_caller_killed",
            End::KilledBeforeInsert => "killed_before_insert",
            End::KilledAfterInsert => "killed_after_insert",
            End::KilledAfterReturn => "killed_after_return",
            End::KilledInCommit => "killed_in_commit",
            End::RolledBackByRestart => "rolled_back_by_restart",
        }
    }
}

/// Where a kill is aimed: the moment an execution reaches a point of its transaction, plus
/// a random 0–[`KILL_DELAY_MS`] ms (none for [`Aim::Commit`] on PostgreSQL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aim {
    /// An execution starts (its line in the ledger): the kill lands before its insert, or
    /// just after.
    Start,
    /// An execution's insert returned (its step): the kill lands before the function
    /// returns.
    Inserted,
    /// An execution's function returned (its step): the kill lands while the wrapper
    /// records the result or commits, or just after.
    Returned,
    /// A worker's `COMMIT` runs, and sleeps before its commit is written. PostgreSQL:
    /// the server runs it, in the trigger's sleep (`pg_stat_activity`, by the session's
    /// application name), and the kill comes at once: the caller dies while the server
    /// commits. SQLite: the commit hook appended its step: the kill lands in the hook's
    /// sleep, while the commit is written, or after.
    Commit,
}

impl Aim {
    const ALL: [Aim; 4] = [Aim::Start, Aim::Inserted, Aim::Returned, Aim::Commit];

    const fn name(self) -> &'static str {
        match self {
            Aim::Start => "start",
            Aim::Inserted => "inserted",
            Aim::Returned => "returned",
            Aim::Commit => "commit",
        }
    }

    /// The process of the next execution of one of `live` to reach this point, after
    /// what the ledgers held when armed (`seen`), if one does within `within`.
    async fn next(
        self,
        ledgers: &[Ledger; 2],
        seen: [usize; 2],
        live: &[u32],
        target: &Target,
        within: Duration,
    ) -> Option<u32> {
        let deadline = Instant::now() + within;
        let mut pg = match self {
            Aim::Commit if target.backend == Backend::Postgres => {
                Some(PgConnection::connect(&target.url).await.unwrap())
            }
            _ => None,
        };
        loop {
            let pid = match (self, &mut pg) {
                (Aim::Commit, Some(conn)) => {
                    let names: Vec<String> = sqlx::query_scalar(
                        "SELECT application_name FROM pg_stat_activity WHERE state = 'active' \
                         AND query = 'COMMIT' AND wait_event = 'PgSleep'",
                    )
                    .fetch_all(&mut *conn)
                    .await
                    .unwrap();
                    let pids = names.iter().filter_map(|n| n.strip_prefix("worker-"));
                    pids.filter_map(|p| p.parse().ok())
                        .find(|p| live.contains(p))
                }
                _ => {
                    let (ledger, seen, suffix) = match self {
                        Aim::Start => (&ledgers[0], seen[0], ""),
                        Aim::Inserted => (&ledgers[1], seen[1], " inserted"),
                        Aim::Returned => (&ledgers[1], seen[1], " returned"),
                        Aim::Commit => (&ledgers[1], seen[1], " committing"),
                    };
                    let mut next = ledger.entries().into_iter().skip(seen);
                    let next = next.find(|e| live.contains(&e.pid) && e.note.ends_with(suffix));
                    next.map(|e| e.pid)
                }
            };
            if pid.is_some() || Instant::now() >= deadline {
                return pid;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Stops the server as `pg_ctl stop -m immediate` does (every session ended at once, no
/// checkpoint; the next start recovers from the write-ahead log): `SIGQUIT` to the
/// postmaster, sent by `kill`, then waits for it to exit. Under the scenario's load,
/// [`PostgresServer::crash`] (`pg_ctl`, through `runuser`) took 160–280 ms, and the step's
/// transactions it was started among had all committed before the server stopped (none
/// was cut short in five runs).
fn crash(server: &PostgresServer) {
    let pidfile = server.dir().join("data").join("postmaster.pid");
    let pid = std::fs::read_to_string(&pidfile).expect("the postmaster's pid file");
    let pid = pid.lines().next().expect("the postmaster's pid");
    let killed = std::process::Command::new("kill")
        .args(["-QUIT", pid])
        .status();
    assert!(killed.is_ok_and(|s| s.success()), "SIGQUIT to PostgreSQL");
    let deadline = Instant::now() + PATIENCE;
    while pidfile.exists() {
        assert!(Instant::now() < deadline, "PostgreSQL did not stop");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap()
}

/// The completed record of each key, as the value it holds.
async fn records<S: EffectsStore>(store: &S, keys: &BTreeSet<String>) -> BTreeMap<String, String> {
    // The wrapper derives the record's key from the function's name and the argument.
    let probe = Stent::new(store.clone())
        .durable(TX_FUNCTION)
        .wrap_tx(store, |_, _: String| {
            Box::pin(async { Err::<String, String>("never called".into()) })
        });
    let mut records = BTreeMap::new();
    for key in keys {
        let id = probe.key_for(key).unwrap();
        let Some(record) = store.get(Namespace::Idempotency, &id).await.unwrap() else {
            continue;
        };
        assert_eq!(
            (record.state, record.attempt),
            (RecordState::Completed, 1),
            "{key}: a claim outlived its transaction: {record:?}"
        );
        let bytes = record.value.as_deref().expect("a completed record's value");
        let Stored::Value(value) = decode::<String, String>(&id, bytes).unwrap() else {
            panic!("{key}: a stored error")
        };
        records.insert(key.clone(), value);
    }
    records
}

async fn killed_workers_leave_one_effect_per_recorded_key<S: EffectsStore>(backend: Backend) {
    // PostgreSQL is restarted mid-run; SQLite is a file, and has no server to restart.
    let restart = backend == Backend::Postgres;
    let test = if restart {
        "postgres_killed_workers_and_a_restart_leave_one_effect_per_recorded_key"
    } else {
        "sqlite_killed_workers_leave_one_effect_per_recorded_key"
    };
    // PostgreSQL: a server of the scenario's own, to restart. SQLite: a file.
    let (mut server, mut fx) = if restart {
        let turn = support::turn().await;
        let server = match PostgresServer::start() {
            Ok(s) => s,
            Err(reason) => {
                support::unavailable::<()>(test, &format!("cannot start a server: {reason}"));
                return;
            }
        };
        let target = Target::new(backend, server.url(), "reliability").timeout(STORE_TIMEOUT);
        (Some(server), Fixture::own(target, turn))
    } else {
        let Some(fx) = support::fixture(backend, "transactional", test).await else {
            return;
        };
        (None, fx)
    };
    // SQLite: one writer at a time whatever the pool; PostgreSQL: 64 sessions in all.
    let connections = if restart { 8 } else { 4 };
    fx.target = fx.target.clone().connections(connections);
    fx.target.prepare().await.unwrap();
    let store = S::open(&fx.target).await.unwrap();
    let table = fx.target.effects_table();
    store.create_effects(&table, COMMIT_PAUSE).await.unwrap();

    let events_dir = fx.path("events");
    std::fs::create_dir(&events_dir).unwrap();
    let steps_path = fx.path("steps");
    let job = |process| {
        let task = Task::Transactional {
            shape: Shape {
                process,
                processes: PROCESSES,
                tasks: TASKS,
                keys: KEYS,
                calls_per_task: Some(STEPS),
                seed: 0x5eed_0029,
                work_ms: 0,
            },
            step_ms: u64::try_from(STEP.as_millis()).unwrap(),
            pause_ms: PAUSE_MS,
            commit_pause_ms: ms(COMMIT_PAUSE).try_into().unwrap(),
            give_up_ms: 90_000,
            events: events_dir.clone(),
            steps: steps_path.clone(),
        };
        fx.job(stent_core::DEFAULT_LEASE, task)
    };
    let spawn = |process: usize, generation: usize| {
        let name = format!("process-{process}.{generation}");
        Worker::spawn(WORKER.as_ref(), name, &job(process))
    };
    let mut workers: Vec<Worker> = (0..PROCESSES).map(|p| spawn(p, 0)).collect();
    start_together(&mut workers, &fx.go(), PATIENCE).await;
    let epoch = std::fs::metadata(fx.go()).unwrap().modified().unwrap();
    let epoch_ms = ms(epoch.duration_since(UNIX_EPOCH).unwrap());
    let ledgers = [fx.ledger(), Ledger::new(&steps_path)];

    // The faults, in time order: kills armed at random times spread over all but the last
    // two steps; the restart armed at the start of the middle step.
    let seed: u64 = rand::random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let first = STEP / 2;
    let span = STEP * u32::try_from(STEPS - 2).unwrap() - first;
    let slot = span / u32::try_from(KILLS).unwrap();
    let mut faults: Vec<(i64, Fault)> = (0..KILLS)
        .map(|k| {
            let at = first + slot * u32::try_from(k).unwrap() + slot.mul_f64(rng.random());
            (epoch_ms + ms(at), Fault::Kill)
        })
        .collect();
    if restart {
        let middle = STEP * u32::try_from(STEPS / 2).unwrap();
        faults.push((epoch_ms + ms(middle) - 100, Fault::Restart));
    }
    faults.sort_unstable();

    let mut kills: Vec<Kill> = Vec::new();
    let mut outage: Option<Outage> = None;
    let mut generation = 0;
    // Replacements that may still be connecting.
    let mut starting: Vec<usize> = Vec::new();
    let last_kill = epoch_ms + ms(STEP * u32::try_from(STEPS - 2).unwrap());
    for (at, fault) in faults {
        if let Ok(wait) = u64::try_from(at - now_ms()) {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        let seen = || [ledgers[0].entries().len(), ledgers[1].entries().len()];
        let live: Vec<u32> = workers.iter().map(Worker::pid).collect();
        match fault {
            Fault::Restart => {
                // No worker is connecting while the server is down.
                for p in starting.drain(..) {
                    let ready = |r: &Report| matches!(r, Report::Ready { .. });
                    workers[p].expect(PATIENCE, ready).await;
                }
                // Among a step's executions, at every point of their transactions.
                Aim::Start
                    .next(&ledgers, seen(), &live, &fx.target, STEP)
                    .await;
                let delay = rng.random_range(0..=KILL_DELAY_MS * 2);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let server = server.as_mut().unwrap();
                let stopped_at = now_ms();
                tokio::task::block_in_place(|| crash(server));
                tokio::time::sleep(DOWN).await;
                tokio::task::block_in_place(|| server.start_again()).expect("start PostgreSQL");
                let back_at = now_ms();
                outage = Some(Outage {
                    stopped_at,
                    back_at,
                });
            }
            // The restart took the time this kill was due in: the last steps are left for
            // the calls to finish.
            Fault::Kill if now_ms() > last_kill => {}
            Fault::Kill => {
                let aim = Aim::ALL[kills.len() % Aim::ALL.len()];
                // A worker that ran an execution is past connecting, and not done.
                let Some(pid) = aim.next(&ledgers, seen(), &live, &fx.target, STEP).await else {
                    continue;
                };
                if aim != Aim::Commit || backend == Backend::Sqlite {
                    let delay = rng.random_range(0..=KILL_DELAY_MS);
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                let process = live.iter().position(|&p| p == pid).unwrap();
                let at_ms = now_ms();
                workers[process].kill().await;
                kills.push(Kill { pid, at_ms, aim });
                // The replacement does the same work: it catches up with the steps
                // already taken (mostly replays), then keeps step.
                generation += 1;
                workers[process] = spawn(process, generation);
                starting.retain(|&p| p != process);
                starting.push(process);
            }
        }
    }

    let mut summaries: Vec<Summary> = Vec::new();
    for w in workers {
        summaries.push(support::summary(&w.finish(PATIENCE).await));
    }
    let wall = now_ms() - epoch_ms;
    let events = support::read_events(&events_dir);

    verify(
        backend,
        &store,
        &table,
        &Evidence {
            summaries: &summaries,
            events: &events,
            executions: &ledgers[0].entries(),
            steps: &ledgers[1].entries(),
            kills: &kills,
            outage,
        },
        &[
            ("seed", format!("{seed:#x}")),
            ("wall_ms", wall.to_string()),
        ],
    )
    .await;
    // The server goes before the fixture gives up the suite's turn.
    drop(server);
    drop(fx);
}

/// What the run left outside the database.
struct Evidence<'a> {
    summaries: &'a [Summary],
    events: &'a [Event],
    executions: &'a [Entry],
    steps: &'a [Entry],
    kills: &'a [Kill],
    outage: Option<Outage>,
}

async fn verify<S: EffectsStore>(
    backend: Backend,
    store: &S,
    table: &str,
    ev: &Evidence<'_>,
    extra: &[(&str, String)],
) {
    // From the database: the effect rows and the records, for every key called and every
    // key that has a row.
    let effects: Vec<Effect> = store.effects(table).await.unwrap();
    let mut rows = BTreeMap::<String, Vec<&Effect>>::new();
    for e in &effects {
        rows.entry(e.key.clone()).or_default().push(e);
    }
    let mut keys: BTreeSet<String> = (0..KEYS).map(Shape::key).collect();
    keys.extend(rows.keys().cloned());
    let records = records(store, &keys).await;

    // One effect row if and only if a completed record, never two, with the record's value.
    let mut duplicates = 0;
    let mut lost = 0;
    for key in &keys {
        let (rows, record) = (
            rows.get(key).map_or(&[][..], Vec::as_slice),
            records.get(key),
        );
        duplicates += rows.len().saturating_sub(1);
        lost += usize::from(rows.is_empty() != record.is_none());
        match (rows, record) {
            ([row], Some(value)) => assert_eq!(
                &row.value, value,
                "{key}: the effect row and the record hold different values"
            ),
            ([], None) => {}
            _ => panic!("{key}: effect rows {rows:?}, record {record:?}"),
        }
    }
    assert_eq!((duplicates, lost), (0, 0));
    // Every caller got its value in the end, so every key is recorded.
    assert_eq!(
        records.len(),
        KEYS,
        "every key called was recorded: {:?}",
        keys.iter()
            .filter(|k| !records.contains_key(*k))
            .collect::<Vec<_>>()
    );
    for s in ev.summaries {
        assert_eq!(
            (s.calls, s.unfinished),
            ((TASKS * STEPS) as u64, 0),
            "process {}: {:?}",
            s.pid,
            s.error_samples
        );
        assert!(s.conflicts.is_empty(), "{:?}", s.conflicts);
    }

    // Every caller that got a value, killed or not, got its key's row's value.
    let mut callers = BTreeMap::<&str, BTreeSet<u32>>::new();
    for e in ev.events.iter().filter(|e| e.error.is_none()) {
        let value = e.value.as_deref().expect("a successful call's value");
        assert_eq!(
            Some(value),
            records.get(&e.key).map(String::as_str),
            "pid {} got a value for {} that is not its row's",
            e.pid,
            e.key
        );
        callers.entry(&e.key).or_default().insert(e.pid);
    }
    assert!(
        callers.len() == KEYS && callers.values().all(|pids| pids.len() >= 2),
        "every key is called from several processes"
    );

    // Every failed attempt was retryable, and retried.
    let mut failures = BTreeMap::<String, usize>::new();
    for e in ev.events.iter().filter(|e| e.error.is_some()) {
        assert!(e.retryable, "a call failed for good: {e:?}");
        *failures.entry(e.error.clone().unwrap()).or_default() += 1;
    }

    // The ledger: every row is one execution's, and every execution that left no row was
    // cut short by a kill of its process or by the restart.
    let killed_at: BTreeMap<u32, i64> = ev.kills.iter().map(|k| (k.pid, k.at_ms)).collect();
    let step = |e: &Entry, name: &str| {
        let note = format!("{} {name}", e.note);
        ev.steps
            .iter()
            .any(|s| s.key == e.key && s.pid == e.pid && s.note == note)
    };
    let values: BTreeSet<&str> = effects.iter().map(|e| e.value.as_str()).collect();
    // Values each process got.
    let reported: BTreeSet<(u32, &str)> = ev
        .events
        .iter()
        .filter_map(|e| Some((e.pid, e.value.as_deref()?)))
        .collect();
    let mut ends = BTreeMap::<End, usize>::new();
    let mut runs = BTreeSet::new();
    for e in ev.executions {
        assert_eq!(e.attempt, 1, "a claim outlived its transaction: {e:?}");
        assert!(runs.insert((&e.key, e.pid, &e.note)), "{e:?} twice");
        let value = tx_value_of(&e.key, e.pid, &e.note);
        let killed = killed_at.get(&e.pid).copied();
        // In flight when the server stopped (no transaction runs for seconds), in a
        // process still alive then.
        let cut_by_restart = ev.outage.is_some_and(|o| {
            (o.stopped_at - ms(STEP * 5)..o.back_at).contains(&e.at_ms)
                && killed.is_none_or(|k| k >= o.stopped_at)
        });
        let end = if values.contains(value.as_str()) {
            if reported.contains(&(e.pid, value.as_str())) {
                End::Committed
            } else {
                assert!(
                    killed.is_some(),
                    "{e:?} committed, but its caller never said"
                );
                End::CommittedCallerKilled
            }
        } else if cut_by_restart {
            End::RolledBackByRestart
        } else {
            assert!(
                killed.is_some_and(|k| e.at_ms <= k),
                "{e:?} left no row, but neither a kill nor the restart cut it short"
            );
            if step(e, "committing") {
                End::KilledInCommit
            } else if step(e, "returned") {
                End::KilledAfterReturn
            } else if step(e, "inserted") {
                End::KilledAfterInsert
            } else {
                End::KilledBeforeInsert
            }
        };
        *ends.entry(end).or_default() += 1;
    }
    assert_eq!(
        effects.len(),
        ends.get(&End::Committed).unwrap_or(&0)
            + ends.get(&End::CommittedCallerKilled).unwrap_or(&0)
    );
    let killed_after_insert = [
        End::KilledAfterInsert,
        End::KilledAfterReturn,
        End::KilledInCommit,
    ]
    .iter()
    .map(|end| ends.get(end).unwrap_or(&0))
    .sum::<usize>();
    assert!(
        killed_after_insert > 0,
        "no kill landed between an insert and its commit: {ends:?}"
    );
    if backend == Backend::Postgres {
        // The kills aimed at a running `COMMIT`: the server went on and committed both.
        assert!(
            ends.contains_key(&End::CommittedCallerKilled),
            "no caller was killed while the server committed: {ends:?}"
        );
    }

    let mut pairs: Vec<(&str, String)> = vec![
        ("processes", PROCESSES.to_string()),
        ("tasks", (PROCESSES * TASKS).to_string()),
        ("keys", KEYS.to_string()),
        ("steps", STEPS.to_string()),
        (
            "calls",
            ev.events
                .iter()
                .filter(|e| e.error.is_none())
                .count()
                .to_string(),
        ),
        ("kills", ev.kills.len().to_string()),
        (
            "kills_aimed_at",
            Aim::ALL
                .iter()
                .map(|a| {
                    let n = ev.kills.iter().filter(|k| k.aim == *a).count();
                    format!("{}:{n}", a.name())
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("executions", ev.executions.len().to_string()),
        ("effect_rows", effects.len().to_string()),
        ("records", records.len().to_string()),
        ("duplicates", duplicates.to_string()),
        ("lost", lost.to_string()),
    ];
    for (end, n) in &ends {
        pairs.push((end.name(), n.to_string()));
    }
    let failed: Vec<String> = failures.iter().map(|(k, n)| format!("{k}:{n}")).collect();
    pairs.push((
        "failed_calls",
        if failed.is_empty() {
            "none".to_owned()
        } else {
            failed.join(",")
        },
    ));
    if let Some(o) = ev.outage {
        let first_ok = ev
            .events
            .iter()
            .filter(|e| e.error.is_none() && e.start_ms >= o.back_at)
            .map(|e| e.end_ms - o.back_at)
            .min()
            .unwrap_or_default();
        let last_failure = ev
            .events
            .iter()
            .filter(|e| e.error.is_some())
            .map(|e| e.end_ms - o.back_at)
            .max()
            .unwrap_or_default();
        pairs.push(("down_ms", (o.back_at - o.stopped_at).to_string()));
        pairs.push(("first_success_after_back_ms", first_ok.to_string()));
        pairs.push(("last_failure_after_back_ms", last_failure.to_string()));
    }
    pairs.extend(extra.iter().cloned());
    figure("transactional", backend, &pairs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_workers_and_a_restart_leave_one_effect_per_recorded_key() {
    killed_workers_leave_one_effect_per_recorded_key::<PostgresStore>(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_killed_workers_leave_one_effect_per_recorded_key() {
    killed_workers_leave_one_effect_per_recorded_key::<SqliteStore>(Backend::Sqlite).await;
}
