//! How records, tables, sizes and durations read, for people and as JSON.

use std::time::Duration;

use comfy_table::{Row, Table, presets::NOTHING};
use indicatif::HumanBytes;
use serde_json::{Value, json};
use stent::codec::{self, Stored, TAG_JSON_ERROR};
use stent::{Namespace, Record, RecordState, Timestamp};

/// Where a record stands at a given time: each record is exactly one of these (the `show`
/// page says what each means for callers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Condition {
    Completed,
    StoredError,
    InProgress,
    Lapsed,
    Expired,
}

impl Condition {
    pub(crate) fn of(record: &Record, now: Timestamp) -> Self {
        if record.is_expired(now) {
            Condition::Expired
        } else if record.lease_lapsed(now) {
            Condition::Lapsed
        } else if record.state == RecordState::InProgress {
            Condition::InProgress
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

/// A record as one JSON object, without its value.
pub(crate) fn record_json(record: &Record, now: Timestamp) -> Value {
    let (condition, time) = (Condition::of(record, now), |t: Timestamp| t.to_string());
    json!({
        "key": record.key, "state": record.state.as_str(), "attempt": record.attempt,
        "expired": condition == Condition::Expired,
        "stored_error": condition == Condition::StoredError,
        "lease_lapsed": record.lease_lapsed(now), "size": record.value.as_ref().map(Vec::len),
        "function": record.function, "version": record.version, "fingerprint": record.fingerprint,
        "created_at": time(record.created_at), "completed_at": record.completed_at.map(time),
        "expires_at": record.expires_at.map(time),
        "lease_expires_at": record.lease_expires_at.map(time),
    })
}

/// Adds `ns` and the record's decoded value to `doc`: `value`, or `error` for a stored
/// error, or `decode_error` when the bytes are not a stent value.
pub(crate) fn add_value(doc: &mut Value, ns: Namespace, record: &Record) {
    doc["namespace"] = ns.as_str().into();
    let Some(bytes) = &record.value else { return };
    match codec::to_json(&record.key, bytes) {
        Ok(Stored::Value(v)) => doc["value"] = v,
        Ok(Stored::Error(e)) => doc["error"] = e,
        Err(e) => doc["decode_error"] = e.message().into(),
    }
}

/// The `ls` table.
pub(crate) fn records_table(records: &[Record], now: Timestamp) -> String {
    let header = ["KEY", "STATE", "ATTEMPT", "SIZE", "CREATED", "EXPIRES"];
    let rows = records.iter().map(|r| {
        [
            key(&r.key),
            Condition::of(r, now).label().to_owned(),
            r.attempt.to_string(),
            r.value.as_ref().map_or("-".into(), |v| bytes(v.len())),
            r.created_at.to_string(),
            r.expires_at.map_or("never".into(), |t| t.to_string()),
        ]
    });
    table(&header, rows)
}

/// The `show` page: one field a line, then the decoded value pretty-printed.
pub(crate) fn record_page(ns: Namespace, record: &Record, now: Timestamp) -> String {
    let when = |t: Timestamp| format!("{t} ({})", relative(t, now));
    let state = match Condition::of(record, now) {
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
    };
    let expires = record.expires_at.map_or("never".into(), when);
    let size = record.value.as_ref().map(|v| format!("{} bytes", v.len()));
    let fields = [
        ("namespace", Some(ns.to_string())),
        ("key", Some(key(&record.key))),
        ("state", Some(state)),
        ("function", record.function.clone()),
        ("version", record.version.clone()),
        ("attempt", Some(record.attempt.to_string())),
        ("created", Some(record.created_at.to_string())),
        ("completed", record.completed_at.map(|t| t.to_string())),
        ("lease until", record.lease_expires_at.map(when)),
        ("expires", Some(expires)),
        ("fingerprint", record.fingerprint.clone()),
        ("size", size),
    ];
    let rows = fields.map(|(name, value)| value.map(|v| [name.to_owned(), v]));
    let mut page = table::<&str, _>(&[], rows.into_iter().flatten());
    let Some(bytes) = &record.value else {
        return page;
    };
    let (name, body) = match codec::to_json(&record.key, bytes) {
        Ok(Stored::Value(value)) => ("value", format!("{value:#}")),
        Ok(Stored::Error(error)) => ("stored error", format!("{error:#}")),
        Err(e) => ("value", format!("not decodable: {}", e.message())),
    };
    page += &format!("{name}:\n");
    body.lines().for_each(|line| page += &format!("  {line}\n"));
    page
}

/// Rows under `header` (none when empty) in columns two spaces apart, without borders.
pub(crate) fn table<H, R>(header: &[H], rows: impl IntoIterator<Item = R>) -> String
where
    H: AsRef<str>,
    R: Into<Row>,
{
    let mut table = Table::new();
    table.load_style(NOTHING).add_rows(rows);
    if !header.is_empty() {
        table.set_header(header.iter().map(AsRef::as_ref));
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table.trim_fmt() + "\n"
}

/// A key as one printable line: control characters escaped, everything else as stored.
pub(crate) fn key(k: &str) -> String {
    let escape = |c: char| c.escape_default().to_string();
    k.chars()
        .map(|c| if c.is_control() { escape(c) } else { c.into() })
        .collect()
}

/// `512 B`, `1.50 KiB`, `3.20 MiB`, …
pub(crate) fn bytes(n: impl TryInto<u64>) -> String {
    HumanBytes(n.try_into().unwrap_or(u64::MAX)).to_string()
}

/// `850ms`, `42s`, `3m 05s`, `2h 10m`, `4d 03h`: the two largest units.
pub(crate) fn duration(d: Duration) -> String {
    match d.as_secs() {
        0 => format!("{}ms", d.subsec_millis()),
        s @ 1..60 => format!("{s}s"),
        s @ 60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        s @ 3600..86_400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600),
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
        let rows = [["a-long-key", "completed"], ["k", "in progress"]];
        assert_eq!(
            table(&["KEY", "STATE"], rows),
            "KEY         STATE\na-long-key  completed\nk           in progress\n"
        );
        assert_eq!(table::<&str, _>(&[], [["a", "b"]]), "a  b\n");
    }

    #[test]
    fn sizes_and_durations_read_naturally() {
        assert_eq!(bytes(12u64), "12 B");
        assert_eq!(bytes(1536u64), "1.50 KiB");
        assert_eq!(bytes(5 * 1024 * 1024u64), "5.00 MiB");
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
