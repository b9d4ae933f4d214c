//! What each command does against the store: each returns its JSON document and its text.

use std::io::{self, IsTerminal as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use stent::key::function_prefix;
use stent::store::delete_prefix;
use stent::{ListQuery, Namespace, Record, RecordState, ResultStore, Stent, Timestamp};

use crate::output::{self, Condition, duration, table};
use crate::{Args, Command, Failure, IdempotencyCommand, LsArgs, RecordCommand, RmArgs};

/// Records per `list` page when walking a namespace, and expired records deleted per
/// `purge_expired` call on the SQL stores (so that progress shows between calls).
const BATCH: usize = 1000;

/// What `stats` counts in a namespace, as its JSON names them: every record, one count per
/// [`Condition`] in its order, then the bytes of the values.
const COUNTS: [&str; 7] = [
    "records",
    "completed",
    "stored_errors",
    "in_progress",
    "lease_lapsed",
    "expired",
    "value_bytes",
];

/// A command's output: the document `--json` prints, and the text printed otherwise.
type Output = Result<(Value, String), Failure>;

/// The command line and the store it names.
struct Session<'a> {
    args: &'a Args,
    store: Arc<dyn ResultStore>,
}

pub(crate) async fn run(args: &Args) -> Result<(), Failure> {
    let store = crate::open::open(&args.store).await?;
    let s = Session { args, store };
    let (doc, mut text) = match &args.command {
        Command::Cache(command) => s.on(Namespace::Cache, command).await?,
        Command::Idempotency(IdempotencyCommand::Record(command)) => {
            s.on(Namespace::Idempotency, command).await?
        }
        Command::Idempotency(IdempotencyCommand::Release(arg)) => s.release(&arg.key).await?,
        Command::Stats => s.stats().await?,
        Command::Progress { execution } => s.progress(execution).await?,
    };
    if args.json {
        text = format!("{doc:#}\n");
    }
    // A reader that went away (`stent cache ls | head`) is not an error.
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(Failure(format!("cannot write the output: {e}")))
        }
        _ => Ok(()),
    }
}

/// A spinner with a message and the time elapsed on stderr, drawn only when stderr is a
/// terminal, and erased when dropped.
fn spinner(message: String) -> ProgressBar {
    let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a template");
    let bar = ProgressBar::new_spinner().with_style(style);
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

impl Session<'_> {
    /// Runs a command that both namespaces offer on `ns`.
    async fn on(&self, ns: Namespace, command: &RecordCommand) -> Output {
        match command {
            RecordCommand::Ls(args) => self.ls(ns, args).await,
            RecordCommand::Show(arg) => self.show(ns, &arg.key).await,
            RecordCommand::Rm(RmArgs { key: Some(key), .. }) => self.rm(ns, key).await,
            RecordCommand::Rm(args) => self.rm_function(ns, args).await,
            RecordCommand::Clear => self.clear(ns).await,
            RecordCommand::Purge => self.purge(ns).await,
        }
    }

    /// Asks `{action} in {store}? [y/N]` on a terminal; refuses without one. `--yes` skips both.
    fn confirm(&self, action: String) -> Result<(), Failure> {
        let action = format!("{action} in {}", stent::redact(&self.args.store));
        if self.args.yes {
            return Ok(());
        } else if !io::stdin().is_terminal() {
            return Err(Failure(format!(
                "refusing to {action} without confirmation: stdin is not a terminal (pass --yes)"
            )));
        }
        eprint!("{}{}? [y/N] ", action[..1].to_uppercase(), &action[1..]);
        let mut answer = String::new();
        io::stdin()
            .read_line(&mut answer)
            .map_err(|e| Failure(format!("cannot read the answer: {e}")))?;
        match answer.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => Ok(()),
            _ => Err(Failure("not confirmed; nothing was changed".into())),
        }
    }

    /// Hands `each` the records of `ns` that `query` selects, page by page, until there are
    /// no more or `max` were handed.
    async fn walk(
        &self,
        ns: Namespace,
        mut query: ListQuery,
        max: usize,
        mut each: impl FnMut(Record),
    ) -> Result<(), Failure> {
        let bar = spinner(format!("reading {ns}"));
        let mut seen = 0;
        while seen < max {
            query.limit = (max - seen).min(BATCH);
            let page = self.store.list(ns, &query).await?;
            seen += page.records.len();
            page.records.into_iter().for_each(&mut each);
            bar.set_message(format!("reading {ns}: {seen} records"));
            let Some(next) = page.next_cursor else { break };
            query.cursor = Some(next);
        }
        Ok(())
    }

    async fn ls(&self, ns: Namespace, args: &LsArgs) -> Output {
        let wanted = Some(args.limit).filter(|&n| n > 0).unwrap_or(usize::MAX);
        let query = ListQuery::new().prefix(args.prefix.as_str());
        let query = query.include_expired(args.all);
        let mut records = Vec::new();
        // One record past the limit tells whether more follow.
        (self.walk(ns, query, wanted.saturating_add(1), |r| records.push(r))).await?;
        let more = records.len() > wanted;
        records.truncate(wanted);
        let now = Timestamp::now();
        let docs = Value::from_iter(records.iter().map(|r| output::record_json(r, now)));
        let mut text = output::records_table(&records, now);
        if records.is_empty() {
            text = match args.prefix.as_str() {
                "" => format!("no {ns} records\n"),
                p => format!("no {ns} records with a key starting with {p:?}\n"),
            };
        } else if more {
            let more = "more follow: raise --limit, 0 for all, or narrow --prefix";
            text += &format!("(first {} records; {more})\n", records.len());
        }
        let json = json!({ "namespace": ns.as_str(), "records": docs, "more": more });
        Ok((json, text))
    }

    async fn show(&self, ns: Namespace, key: &str) -> Output {
        let record = self.find(ns, key).await?;
        let now = Timestamp::now();
        let mut json = output::record_json(&record, now);
        output::add_value(&mut json, ns, &record);
        Ok((json, output::record_page(ns, &record, now)))
    }

    async fn rm(&self, ns: Namespace, key: &str) -> Output {
        let record = self.find(ns, key).await?;
        let condition = Condition::of(&record, Timestamp::now()).label();
        self.confirm(format!("delete the {condition} {ns} record {key:?}"))?;
        if !self.store.delete(ns, key).await? {
            return Err(missing(ns, key));
        }
        let json = json!({ "namespace": ns.as_str(), "key": key, "deleted": true });
        Ok((json, format!("deleted {ns} record {key:?}\n")))
    }

    /// Deletes every record of function `--function` (of one `--version`), page by page.
    async fn rm_function(&self, ns: Namespace, args: &RmArgs) -> Output {
        let (name, version) = (args.function.as_deref().unwrap_or_default(), &args.version);
        let prefix = function_prefix(name, version.as_deref())?;
        let of = match version {
            Some(v) => format!("function {name:?} version {v:?}"),
            None => format!("function {name:?}"),
        };
        self.confirm(format!("delete every {ns} record of {of}"))?;
        let bar = spinner(format!("deleting {ns} records of {of}"));
        let progress = |n| bar.set_message(format!("deleting {ns} records of {of}: {n} deleted"));
        let deleted = delete_prefix(self.store.as_ref(), ns, &prefix, BATCH, progress).await?;
        let text = format!("deleted {deleted} {ns} {} of {of}\n", records(deleted));
        let json = json!({ "namespace": ns.as_str(), "function": name, "version": version, "deleted": deleted });
        Ok((json, text))
    }

    async fn clear(&self, ns: Namespace) -> Output {
        self.confirm(format!("delete every {ns} record"))?;
        let _bar = spinner(format!("clearing {ns}"));
        let deleted = self.store.clear(ns).await?;
        let text = format!("deleted {deleted} {ns} {}\n", records(deleted));
        let json = json!({ "namespace": ns.as_str(), "deleted": deleted });
        Ok((json, text))
    }

    async fn purge(&self, ns: Namespace) -> Output {
        self.confirm(format!("delete the expired {ns} records"))?;
        let bar = spinner(format!("purging expired {ns} records"));
        // A store that removes expired records by itself (Redis, DynamoDB) has no index of
        // them: each call sweeps the keys from the first, so one call takes them all. The
        // others find them by their expiry index and delete a batch per transaction.
        let native = self.store.capabilities().native_ttl;
        let (mut purged, limit) = (0, if native { usize::MAX } else { BATCH });
        loop {
            let batch = self.store.purge_expired(ns, limit).await?;
            purged += batch;
            bar.set_message(format!("purging expired {ns} records: {purged} deleted"));
            if batch < limit as u64 {
                break;
            }
        }
        let text = format!("purged {purged} expired {ns} {}\n", records(purged));
        Ok((json!({ "namespace": ns.as_str(), "purged": purged }), text))
    }

    async fn release(&self, key: &str) -> Output {
        let ns = Namespace::Idempotency;
        let record = self.find(ns, key).await?;
        if record.state != RecordState::InProgress {
            return Err(Failure(format!(
                "the {ns} record {key:?} is completed, not in progress: release only frees a \
                 stuck claim (`stent {ns} rm` deletes a record)"
            )));
        }
        let Some(token) = &record.lease_token else {
            let why = "the store returned no lease token for the in-progress record";
            return Err(Failure(format!("{why} {key:?}")));
        };
        let now = Timestamp::now();
        let when = |t| output::relative(t, now);
        let lease = match record.lease_expires_at {
            Some(t) if t > now => format!("its lease ends {}: a caller may still run it", when(t)),
            Some(t) => format!("its lease lapsed {}", when(t)),
            None => "it has no lease".into(),
        };
        let attempt = record.attempt;
        self.confirm(format!(
            "release the in-progress {ns} record {key:?} (attempt {attempt}; {lease})"
        ))?;
        if !self.store.release(ns, key, token).await? {
            return Err(Failure(format!(
                "the {ns} record {key:?} changed since it was read (completed, taken over or \
                 released): nothing was released"
            )));
        }
        let text = format!("released {ns} record {key:?}: the next call runs it\n");
        let json = json!({ "namespace": ns.as_str(), "key": key, "released": true });
        Ok((json, text))
    }

    async fn progress(&self, execution: &str) -> Output {
        let stent = Stent::from_arc(Arc::clone(&self.store));
        let state = stent.state_of(execution).await?;
        if state.progress.is_empty() {
            let none = "no progress recorded for execution";
            return Err(Failure(format!("{none} {execution:?}")));
        }
        let (mut steps, mut rows) = (Vec::new(), Vec::new());
        for (i, p) in state.progress.iter().enumerate() {
            let (started, finished) = (p.started_at.to_string(), p.finished_at.to_string());
            let took = duration(p.finished_at.since(p.started_at));
            steps.push(json!({
                "step": p.step, "status": p.status, "detail": p.detail, "attempt": p.attempt,
                "key": p.key, "started_at": started, "finished_at": finished,
            }));
            let (n, attempt) = ((i + 1).to_string(), p.attempt.to_string());
            let (step, status, detail) = (p.step.clone(), p.status.clone(), p.detail.clone());
            let key = output::key(&p.key);
            rows.push([n, step, status, detail, attempt, started, took, key]);
        }
        let header = [
            "#", "STEP", "STATUS", "DETAIL", "ATTEMPT", "STARTED", "TOOK", "KEY",
        ];
        let text = format!("execution {:?}\n\n{}", state.id, table(&header, rows));
        Ok((json!({ "execution": state.id, "progress": steps }), text))
    }

    async fn stats(&self) -> Output {
        let (now, mut rows, mut total) = (Timestamp::now(), Vec::new(), [0; COUNTS.len()]);
        for ns in Namespace::ALL {
            let mut counts = [0_u64; COUNTS.len()];
            let query = ListQuery::new().include_expired(true);
            self.walk(ns, query, usize::MAX, |record| {
                counts[0] += 1;
                counts[1 + Condition::of(&record, now) as usize] += 1;
                counts[COUNTS.len() - 1] += record.value.map_or(0, |v| v.len() as u64);
            })
            .await?;
            total.iter_mut().zip(counts).for_each(|(t, n)| *t += n);
            rows.push((ns.as_str(), counts));
        }
        let doc = |counts: [u64; COUNTS.len()]| Value::from_iter(COUNTS.into_iter().zip(counts));
        let namespaces = Value::from_iter(rows.iter().map(|&(ns, c)| (ns, doc(c))));
        let store = stent::redact(&self.args.store);
        let json = json!({ "store": store, "namespaces": namespaces, "total": doc(total) });
        rows.push(("total", total));
        let columns = ["namespace"].into_iter().chain(COUNTS);
        let header = Vec::from_iter(columns.map(|c| c.to_uppercase().replace('_', " ")));
        let rows = rows.iter().map(|(name, c)| {
            let counts = c[..6].iter().map(u64::to_string);
            let row = [name.to_string()].into_iter().chain(counts);
            row.chain([output::bytes(c[6])]).collect::<Vec<_>>()
        });
        let text = format!("store: {store}\n\n{}", table(&header, rows));
        Ok((json, text))
    }

    /// The record under `key`, expired or not; a missing key is an error.
    async fn find(&self, ns: Namespace, key: &str) -> Result<Record, Failure> {
        if let Some(record) = self.store.get(ns, key).await? {
            return Ok(record);
        }
        // `get` hides expired records; `list` still sees them until they are purged.
        let query = ListQuery::new().prefix(key).limit(1).include_expired(true);
        let page = self.store.list(ns, &query).await?;
        let found = page.records.into_iter().find(|r| r.key == key);
        found.ok_or_else(|| missing(ns, key))
    }
}

fn missing(ns: Namespace, key: &str) -> Failure {
    Failure(format!("no record with key {key:?} in {ns}"))
}

fn records(n: u64) -> &'static str {
    if n == 1 { "record" } else { "records" }
}
