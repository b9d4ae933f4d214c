//! What each command does against the store.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use stent::{ListQuery, Namespace, Record, RecordState, ResultStore, Timestamp};

use crate::cli::{Args, Command, IdempotencyCommand, LsArgs, RecordCommand};
use crate::failure::Failure;
use crate::output::{self, Condition, Table};
use crate::term::{self, Progress};

/// Records per `list` page when walking a whole namespace.
const PAGE: usize = 1000;
/// Expired records deleted per `purge_expired` call, so progress can be shown between calls.
const PURGE_BATCH: usize = 1000;

/// The parsed command line and the opened store.
struct Session {
    store: Arc<dyn ResultStore>,
    shown_url: String,
    json: bool,
    yes: bool,
}

pub(crate) async fn run(args: Args) -> Result<(), Failure> {
    let session = Session {
        store: open(&args.store).await?,
        shown_url: stent::redact(&args.store),
        json: args.json,
        yes: args.yes,
    };
    let text = match args.command {
        Command::Cache(command) => session.record_command(Namespace::Cache, command).await?,
        Command::Idempotency(IdempotencyCommand::Record(command)) => {
            session
                .record_command(Namespace::Idempotency, command)
                .await?
        }
        Command::Idempotency(IdempotencyCommand::Release(arg)) => {
            session.release(Namespace::Idempotency, &arg.key).await?
        }
        Command::Stats => session.stats().await?,
        Command::Progress(arg) => session.progress(&arg.execution).await?,
    };
    term::print(&text)
}

/// Opens the store; a SQLite file that does not exist is an error rather than created empty.
async fn open(url: &str) -> Result<Arc<dyn ResultStore>, Failure> {
    if let Some(path) = sqlite_path(url)
        && !Path::new(path).exists()
    {
        return Err(Failure::new(format!(
            "no SQLite database at {path} (from {}): nothing is stored there yet",
            stent::redact(url)
        )));
    }
    Ok(stent::connect(url).await?)
}

/// The file a `sqlite:` URL names, as `SqliteStore::connect` reads it.
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split_once('?').map_or(rest, |(path, _)| path);
    (!path.is_empty()).then_some(path)
}

impl Session {
    async fn record_command(
        &self,
        ns: Namespace,
        command: RecordCommand,
    ) -> Result<String, Failure> {
        match command {
            RecordCommand::Ls(args) => self.ls(ns, &args).await,
            RecordCommand::Show(arg) => self.show(ns, &arg.key).await,
            RecordCommand::Rm(arg) => self.rm(ns, &arg.key).await,
            RecordCommand::Clear => self.clear(ns).await,
            RecordCommand::Purge => self.purge(ns).await,
        }
    }

    async fn ls(&self, ns: Namespace, args: &LsArgs) -> Result<String, Failure> {
        let wanted = if args.limit == 0 {
            usize::MAX
        } else {
            args.limit
        };
        let mut records = Vec::new();
        let mut cursor = None;
        let mut progress = Progress::new();
        // One record past the limit tells whether more follow.
        while records.len() <= wanted {
            let page_size = (wanted - records.len()).saturating_add(1).min(PAGE);
            let query = ListQuery::new()
                .prefix(args.prefix.as_str())
                .cursor(cursor.take())
                .limit(page_size)
                .include_expired(args.all);
            let page = self.store.list(ns, &query).await?;
            records.extend(page.records);
            progress.update(&format!("listing {ns}: {} records", records.len()));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        progress.finish();
        let more = records.len() > wanted;
        records.truncate(wanted);
        let now = Timestamp::now();
        if self.json {
            let list: Vec<Value> = records
                .iter()
                .map(|r| output::record_json(r, now))
                .collect();
            return json_doc(json!({ "namespace": ns.as_str(), "records": list, "more": more }));
        }
        if records.is_empty() {
            let which = if args.prefix.is_empty() {
                String::new()
            } else {
                format!(" with a key starting with {:?}", args.prefix)
            };
            return Ok(format!("no {ns} records{which}\n"));
        }
        let mut text = output::records_table(&records, now);
        if more {
            text.push_str(&format!(
                "(first {} records; more follow: raise --limit, 0 for all, or narrow --prefix)\n",
                records.len()
            ));
        }
        Ok(text)
    }

    async fn show(&self, ns: Namespace, key: &str) -> Result<String, Failure> {
        let record = self.find(ns, key).await?;
        let now = Timestamp::now();
        if self.json {
            return json_doc(output::record_json_with_value(ns, &record, now));
        }
        Ok(output::record_page(ns, &record, now))
    }

    async fn rm(&self, ns: Namespace, key: &str) -> Result<String, Failure> {
        let record = self.find(ns, key).await?;
        term::confirm(
            &format!(
                "delete the {} {ns} record {} from {}",
                Condition::of(&record, Timestamp::now()).label(),
                quoted(key),
                self.shown_url
            ),
            self.yes,
        )?;
        if !self.store.delete(ns, key).await? {
            return Err(missing(ns, key));
        }
        if self.json {
            return json_doc(json!({ "namespace": ns.as_str(), "key": key, "deleted": true }));
        }
        Ok(format!("deleted {ns} record {}\n", quoted(key)))
    }

    async fn clear(&self, ns: Namespace) -> Result<String, Failure> {
        term::confirm(
            &format!("delete every {ns} record in {}", self.shown_url),
            self.yes,
        )?;
        let mut progress = Progress::new();
        let deleted = progress
            .around(&format!("clearing {ns}"), self.store.clear(ns))
            .await?;
        progress.finish();
        if self.json {
            return json_doc(json!({ "namespace": ns.as_str(), "deleted": deleted }));
        }
        Ok(format!("deleted {deleted} {ns} {}\n", plural(deleted)))
    }

    async fn purge(&self, ns: Namespace) -> Result<String, Failure> {
        term::confirm(
            &format!("delete the expired {ns} records in {}", self.shown_url),
            self.yes,
        )?;
        let mut progress = Progress::new();
        let mut purged = 0;
        loop {
            let message = format!("purging expired {ns} records: {purged} deleted");
            let batch = progress
                .around(&message, self.store.purge_expired(ns, PURGE_BATCH))
                .await?;
            purged += batch;
            if batch < PURGE_BATCH as u64 {
                break;
            }
        }
        progress.finish();
        if self.json {
            return json_doc(json!({ "namespace": ns.as_str(), "purged": purged }));
        }
        Ok(format!("purged {purged} expired {ns} {}\n", plural(purged)))
    }

    async fn release(&self, ns: Namespace, key: &str) -> Result<String, Failure> {
        let record = self.find(ns, key).await?;
        if record.state != RecordState::InProgress {
            return Err(Failure::new(format!(
                "the {ns} record {} is completed, not in progress: release only frees a stuck \
                 claim (`stent {ns} rm` deletes a record)",
                quoted(key)
            )));
        }
        let Some(token) = &record.lease_token else {
            return Err(Failure::new(format!(
                "the store returned no lease token for the in-progress record {}",
                quoted(key)
            )));
        };
        let now = Timestamp::now();
        let lease = match record.lease_expires_at {
            Some(t) if t > now => format!(
                "its lease is live for {} more: a caller may still be running it",
                output::duration(t.since(now))
            ),
            Some(t) => format!("its lease lapsed {}", output::relative(t, now)),
            None => "it has no lease".into(),
        };
        term::confirm(
            &format!(
                "release the in-progress {ns} record {} (attempt {}; {lease}) in {}",
                quoted(key),
                record.attempt,
                self.shown_url
            ),
            self.yes,
        )?;
        if !self.store.release(ns, key, token).await? {
            return Err(Failure::new(format!(
                "the {ns} record {} changed since it was read (completed, taken over or \
                 released): nothing was released",
                quoted(key)
            )));
        }
        if self.json {
            return json_doc(json!({ "namespace": ns.as_str(), "key": key, "released": true }));
        }
        Ok(format!(
            "released {ns} record {}: the next call runs it\n",
            quoted(key)
        ))
    }

    async fn progress(&self, execution: &str) -> Result<String, Failure> {
        let state = stent::Stent::from_arc(Arc::clone(&self.store))
            .state_of(execution)
            .await?;
        if state.progress.is_empty() {
            return Err(Failure::new(format!(
                "no progress recorded for execution {}",
                quoted(execution)
            )));
        }
        if self.json {
            let steps: Vec<Value> = state
                .progress
                .iter()
                .map(|p| {
                    json!({
                        "step": p.step,
                        "status": p.status,
                        "detail": p.detail,
                        "attempt": p.attempt,
                        "key": p.key,
                        "started_at": p.started_at.to_string(),
                        "finished_at": p.finished_at.to_string(),
                    })
                })
                .collect();
            return json_doc(json!({ "execution": state.id, "progress": steps }));
        }
        let mut table = Table::new([
            "#", "STEP", "STATUS", "DETAIL", "ATTEMPT", "STARTED", "TOOK", "KEY",
        ]);
        for (i, p) in state.progress.iter().enumerate() {
            table.row([
                (i + 1).to_string(),
                p.step.clone(),
                p.status.clone(),
                p.detail.clone(),
                p.attempt.to_string(),
                p.started_at.to_string(),
                output::duration(p.finished_at.since(p.started_at)),
                output::key(&p.key).into_owned(),
            ]);
        }
        Ok(format!(
            "execution {}\n\n{}",
            quoted(&state.id),
            table.render()
        ))
    }

    async fn stats(&self) -> Result<String, Failure> {
        let now = Timestamp::now();
        let mut progress = Progress::new();
        let mut all = BTreeMap::new();
        for ns in Namespace::ALL {
            let mut counts = Counts::default();
            let mut cursor = None;
            loop {
                let query = ListQuery::new()
                    .cursor(cursor.take())
                    .limit(PAGE)
                    .include_expired(true);
                let page = self.store.list(ns, &query).await?;
                for record in &page.records {
                    counts.add(record, now);
                }
                progress.update(&format!("counting {ns} records: {}", counts.records));
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            all.insert(ns.as_str(), counts);
        }
        progress.finish();
        let mut total = Counts::default();
        for counts in all.values() {
            total.merge(counts);
        }
        if self.json {
            let namespaces: serde_json::Map<String, Value> = all
                .iter()
                .map(|(ns, counts)| ((*ns).to_owned(), counts.json()))
                .collect();
            return json_doc(json!({
                "store": self.shown_url,
                "namespaces": namespaces,
                "total": total.json(),
            }));
        }
        let mut table = Table::new([
            "NAMESPACE",
            "RECORDS",
            "COMPLETED",
            "STORED ERRORS",
            "IN PROGRESS",
            "LEASE LAPSED",
            "EXPIRED",
            "VALUE BYTES",
        ]);
        let rows = Namespace::ALL
            .iter()
            .map(|ns| (ns.as_str(), &all[ns.as_str()]))
            .chain([("total", &total)]);
        for (name, c) in rows {
            table.row([
                name.to_owned(),
                c.records.to_string(),
                c.completed.to_string(),
                c.stored_errors.to_string(),
                c.in_progress.to_string(),
                c.lapsed.to_string(),
                c.expired.to_string(),
                output::bytes(c.value_bytes),
            ]);
        }
        Ok(format!("store: {}\n\n{}", self.shown_url, table.render()))
    }

    /// The record under `key`, expired or not; a missing key is an error.
    async fn find(&self, ns: Namespace, key: &str) -> Result<Record, Failure> {
        if let Some(record) = self.store.get(ns, key).await? {
            return Ok(record);
        }
        // `get` hides expired records; `list` still sees them until they are purged.
        let query = ListQuery::new().prefix(key).limit(1).include_expired(true);
        let page = self.store.list(ns, &query).await?;
        page.records
            .into_iter()
            .find(|r| r.key == key)
            .ok_or_else(|| missing(ns, key))
    }
}

/// How many records of a namespace are in each condition.
#[derive(Debug, Default)]
struct Counts {
    records: u64,
    completed: u64,
    stored_errors: u64,
    in_progress: u64,
    lapsed: u64,
    expired: u64,
    value_bytes: u64,
}

impl Counts {
    fn add(&mut self, record: &Record, now: Timestamp) {
        self.records += 1;
        self.value_bytes += record.value.as_ref().map_or(0, |v| v.len() as u64);
        *match Condition::of(record, now) {
            Condition::Completed => &mut self.completed,
            Condition::StoredError => &mut self.stored_errors,
            Condition::InProgress => &mut self.in_progress,
            Condition::Lapsed => &mut self.lapsed,
            Condition::Expired => &mut self.expired,
        } += 1;
    }

    fn merge(&mut self, other: &Counts) {
        self.records += other.records;
        self.completed += other.completed;
        self.stored_errors += other.stored_errors;
        self.in_progress += other.in_progress;
        self.lapsed += other.lapsed;
        self.expired += other.expired;
        self.value_bytes += other.value_bytes;
    }

    fn json(&self) -> Value {
        json!({
            "records": self.records,
            "completed": self.completed,
            "stored_errors": self.stored_errors,
            "in_progress": self.in_progress,
            "lease_lapsed": self.lapsed,
            "expired": self.expired,
            "value_bytes": self.value_bytes,
        })
    }
}

fn missing(ns: Namespace, key: &str) -> Failure {
    Failure::new(format!("no record with key {} in {ns}", quoted(key)))
}

fn quoted(key: &str) -> String {
    format!("{key:?}")
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "record" } else { "records" }
}

fn json_doc(doc: Value) -> Result<String, Failure> {
    let mut text = serde_json::to_string_pretty(&doc)
        .map_err(|e| Failure::new(format!("cannot encode the output as JSON: {e}")))?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::sqlite_path;

    #[test]
    fn sqlite_paths_are_read_like_the_store_reads_them() {
        assert_eq!(sqlite_path("sqlite://stent.db"), Some("stent.db"));
        assert_eq!(
            sqlite_path("sqlite:///tmp/a.db?table_prefix=x_"),
            Some("/tmp/a.db")
        );
        assert_eq!(sqlite_path("sqlite:b.db"), Some("b.db"));
        assert_eq!(sqlite_path("sqlite://"), None);
        assert_eq!(sqlite_path("postgres://h/db"), None);
    }
}
