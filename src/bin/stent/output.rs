//! How records, tables, sizes and durations read, for people and as JSON.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};
use stent::codec::{self, Stored, TAG_JSON_ERROR};
use stent::{Namespace, Record, RecordState, Timestamp};

/// Where a record stands at a given time: each record is exactly one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Condition {
    /// Holds the function's value.
    Completed,
    /// Holds a terminal error that is replayed to callers.
    StoredError,
    /// Claimed, and the owner's lease is live.
    InProgress,
    /// Claimed, but the owner's lease has lapsed: the next caller takes over.
    Lapsed,
    /// Past its expiry, invisible to callers, not purged yet.
    Expired,
}

impl Condition {
    pub(crate) fn of(record: &Record, now: Timestamp) -> Self {
        if record.is_expired(now) {
            Condition::Expired
        } else if record.state == RecordState::InProgress {
            if record.lease_lapsed(now) {
                Condition::Lapsed
            } else {
                Condition::InProgress
            }
        } else if record.value.as_deref().and_then(<[u8]>::first) == Some(&TAG_JSON_ERROR) {
            Condition::StoredError
        } else {
            Condition::Completed
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Condition::Completed => "completed",
            Condition::StoredError => "stored error",
            Condition::InProgress => "in progress",
            Condition::Lapsed => "in progress, lease lapsed",
            Condition::Expired => "expired",
        }
    }
}

/// A record as one JSON object (no value).
pub(crate) fn record_json(record: &Record, now: Timestamp) -> Value {
    let condition = Condition::of(record, now);
    json!({
        "key": record.key,
        "state": record.state.as_str(),
        "expired": condition == Condition::Expired,
        "stored_error": condition == Condition::StoredError,
        "lease_lapsed": record.state == RecordState::InProgress && record.lease_lapsed(now),
        "attempt": record.attempt,
        "size": record.value.as_ref().map(Vec::len),
        "function": record.function,
        "version": record.version,
        "fingerprint": record.fingerprint,
        "created_at": record.created_at.to_string(),
        "completed_at": record.completed_at.map(|t| t.to_string()),
        "expires_at": record.expires_at.map(|t| t.to_string()),
        "lease_expires_at": record.lease_expires_at.map(|t| t.to_string()),
    })
}

/// A record with its decoded value: `value`, or `error` for a stored error, or
/// `decode_error` when the bytes are not a stent value.
pub(crate) fn record_json_with_value(ns: Namespace, record: &Record, now: Timestamp) -> Value {
    let mut doc = record_json(record, now);
    let fields = doc.as_object_mut().expect("record_json returns an object");
    fields.insert("namespace".into(), ns.as_str().into());
    if let Some(bytes) = &record.value {
        match codec::to_json(&record.key, bytes) {
            Ok(Stored::Value(v)) => fields.insert("value".into(), v),
            Ok(Stored::Error(e)) => fields.insert("error".into(), e),
            Err(e) => fields.insert("decode_error".into(), e.message().into()),
        };
    }
    doc
}

/// The `ls` table.
pub(crate) fn records_table(records: &[Record], now: Timestamp) -> String {
    let mut table = Table::new(["KEY", "STATE", "ATTEMPT", "SIZE", "CREATED", "EXPIRES"]);
    for r in records {
        table.row([
            key(&r.key).into_owned(),
            Condition::of(r, now).label().to_owned(),
            r.attempt.to_string(),
            r.value
                .as_ref()
                .map_or("-".into(), |v| bytes(v.len() as u64)),
            r.created_at.to_string(),
            r.expires_at.map_or("never".into(), |t| t.to_string()),
        ]);
    }
    table.render()
}

/// The `show` page: one field a line, then the decoded value pretty-printed.
pub(crate) fn record_page(ns: Namespace, record: &Record, now: Timestamp) -> String {
    let condition = Condition::of(record, now);
    let mut fields: Vec<(&str, String)> = vec![
        ("namespace", ns.as_str().to_owned()),
        ("key", key(&record.key).into_owned()),
        ("state", state_line(record, condition)),
        (
            "function",
            record.function.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "version",
            record.version.clone().unwrap_or_else(|| "-".into()),
        ),
        ("attempt", record.attempt.to_string()),
        ("created", record.created_at.to_string()),
    ];
    if let Some(t) = record.completed_at {
        fields.push(("completed", t.to_string()));
    }
    if record.state == RecordState::InProgress {
        let lease = match record.lease_expires_at {
            Some(t) => format!("{t} ({})", relative(t, now)),
            None => "-".into(),
        };
        fields.push(("lease until", lease));
    }
    fields.push((
        "expires",
        match record.expires_at {
            Some(t) => format!("{t} ({})", relative(t, now)),
            None => "never".into(),
        },
    ));
    if let Some(fp) = &record.fingerprint {
        fields.push(("fingerprint", fp.clone()));
    }
    let mut body = None;
    match &record.value {
        None => fields.push(("size", "- (no value while in progress)".into())),
        Some(v) => {
            let size = match v.len() {
                n @ ..1024 => format!("{n} bytes"),
                n => format!("{} ({n} bytes)", bytes(n as u64)),
            };
            fields.push(("size", size));
            match codec::to_json(&record.key, v) {
                Ok(Stored::Value(v)) => body = Some(("value", v)),
                Ok(Stored::Error(e)) => body = Some(("stored error", e)),
                Err(e) => fields.push(("value", format!("not decodable: {}", e.message()))),
            }
        }
    }
    let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (name, value) in &fields {
        let _ = writeln!(out, "{name:width$}  {value}");
    }
    if let Some((name, value)) = body {
        let pretty = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
        let _ = writeln!(out, "{name}:");
        for line in pretty.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

fn state_line(record: &Record, condition: Condition) -> String {
    match condition {
        Condition::Completed => "completed".into(),
        Condition::StoredError => "completed with a stored error (replayed to every caller)".into(),
        Condition::InProgress => "in progress (a caller holds the lease)".into(),
        Condition::Lapsed => {
            "in progress, lease lapsed (the next call takes over; `release` frees it now)".into()
        }
        Condition::Expired => format!(
            "{}, expired (invisible to callers; `purge` removes it)",
            record.state.as_str().replace('_', " ")
        ),
    }
}

/// An aligned table: columns two spaces apart, the last one unpadded.
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new<const N: usize>(headers: [&str; N]) -> Self {
        Table {
            rows: vec![headers.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    pub(crate) fn row<const N: usize>(&mut self, cells: [String; N]) {
        self.rows.push(cells.into());
    }

    pub(crate) fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:width$}  ", width = widths[c]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A key as one printable line: control characters escaped, everything else as stored.
pub(crate) fn key(k: &str) -> Cow<'_, str> {
    if k.chars().any(char::is_control) {
        Cow::Owned(
            k.chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect(),
        )
    } else {
        Cow::Borrowed(k)
    }
}

/// `512 B`, `1.5 KiB`, `3.2 MiB`, …
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `850ms`, `42s`, `3m 05s`, `2h 10m`, `4d 03h`: the two largest units.
pub(crate) fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{}ms", d.subsec_millis()),
        1..60 => format!("{secs}s"),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// `in 3m 05s` or `3m 05s ago`.
pub(crate) fn relative(t: Timestamp, now: Timestamp) -> String {
    if t > now {
        format!("in {}", duration(t.since(now)))
    } else {
        format!("{} ago", duration(now.since(t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_every_column_but_the_last() {
        let mut t = Table::new(["KEY", "STATE"]);
        t.row(["a-long-key".into(), "completed".into()]);
        t.row(["k".into(), "in progress".into()]);
        assert_eq!(
            t.render(),
            "KEY         STATE\na-long-key  completed\nk           in progress\n"
        );
    }

    #[test]
    fn sizes_and_durations_read_naturally() {
        assert_eq!(bytes(12), "12 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(duration(Duration::from_millis(850)), "850ms");
        assert_eq!(duration(Duration::from_secs(185)), "3m 05s");
        assert_eq!(duration(Duration::from_secs(7800)), "2h 10m");
        assert_eq!(
            relative(Timestamp::from_millis(0), Timestamp::from_millis(5000)),
            "5s ago"
        );
    }

    #[test]
    fn keys_with_control_characters_stay_on_one_line() {
        assert_eq!(key("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(key("plain|None|[\"é\"]"), "plain|None|[\"é\"]");
    }
}
