//! The record layout: one Redis hash per record, with named fields readable in `redis-cli`.
//!
//! | field | content |
//! |---|---|
//! | `state` | `in_progress` or `completed` |
//! | `value` | the encoded result (completed records) |
//! | `lease_token`, `lease_expires_ms` | the owner's token and lease end (in progress; a completed record keeps its last ones, which nothing reads) |
//! | `attempt` | 1, +1 per takeover |
//! | `fingerprint`, `function`, `version` | metadata, present when set |
//! | `created_ms`, `completed_ms`, `expires_ms` | UTC milliseconds since the epoch |

use stent_core::{Error, LeaseToken, Record, RecordMeta, RecordState, Result, Timestamp};

/// The metadata fields of a claim or put, as `field, value` script arguments; absent
/// fields are left out, so `None` and `Some("")` stay distinct.
pub(crate) fn meta_args<'a>(meta: &RecordMeta<'a>) -> Vec<&'a str> {
    let mut args = Vec::with_capacity(6);
    for (field, value) in [
        ("function", meta.function),
        ("version", meta.version),
        ("fingerprint", meta.fingerprint),
    ] {
        if let Some(value) = value {
            args.extend([field, value]);
        }
    }
    args
}

/// Builds a record from `HGETALL` pairs (`field, value, field, value, …`).
pub(crate) fn decode_record(key: &str, pairs: &[Vec<u8>]) -> Result<Record> {
    let mut state = None;
    let mut created = None;
    let mut record = Record::new(key, RecordState::Completed, Timestamp::default());
    for pair in pairs.chunks(2) {
        let [field, value] = pair else {
            return Err(Error::decode(
                key,
                "record hash reply has an odd number of elements",
            ));
        };
        match field.as_slice() {
            b"state" => {
                let s = text(key, "state", value)?;
                state = Some(RecordState::parse(&s).ok_or_else(|| {
                    Error::decode(
                        key,
                        format!("record field `state` is {s:?}, not a known state"),
                    )
                })?);
            }
            b"value" => record.value = Some(value.clone()),
            b"lease_token" => {
                record.lease_token = Some(LeaseToken::from_string(text(key, "lease_token", value)?))
            }
            b"lease_expires_ms" => {
                record.lease_expires_at = Some(millis(key, "lease_expires_ms", value)?)
            }
            b"attempt" => {
                let n: u64 = number(key, "attempt", value)?;
                record.attempt = u32::try_from(n).unwrap_or(u32::MAX);
            }
            b"fingerprint" => record.fingerprint = Some(text(key, "fingerprint", value)?),
            b"function" => record.function = Some(text(key, "function", value)?),
            b"version" => record.version = Some(text(key, "version", value)?),
            b"created_ms" => created = Some(millis(key, "created_ms", value)?),
            b"completed_ms" => record.completed_at = Some(millis(key, "completed_ms", value)?),
            b"expires_ms" => record.expires_at = Some(millis(key, "expires_ms", value)?),
            _ => {}
        }
    }
    record.state = state.ok_or_else(|| Error::decode(key, "record hash has no `state` field"))?;
    record.created_at =
        created.ok_or_else(|| Error::decode(key, "record hash has no `created_ms` field"))?;
    if record.state == RecordState::Completed && record.value.is_none() {
        return Err(Error::decode(
            key,
            "completed record hash has no `value` field",
        ));
    }
    match record.state {
        RecordState::InProgress => record.value = None,
        // Completion leaves the last lease in the hash: it no longer belongs to anyone.
        RecordState::Completed => {
            record.lease_token = None;
            record.lease_expires_at = None;
        }
    }
    Ok(record)
}

fn text(key: &str, field: &str, value: &[u8]) -> Result<String> {
    String::from_utf8(value.to_vec())
        .map_err(|_| Error::decode(key, format!("record field `{field}` is not UTF-8")))
}

fn number<T: std::str::FromStr>(key: &str, field: &str, value: &[u8]) -> Result<T> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            Error::decode(
                key,
                format!(
                    "record field `{field}` is {:?}, not a number",
                    String::from_utf8_lossy(value)
                ),
            )
        })
}

fn millis(key: &str, field: &str, value: &[u8]) -> Result<Timestamp> {
    number(key, field, value).map(Timestamp::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(fields: &[(&str, &[u8])]) -> Vec<Vec<u8>> {
        fields
            .iter()
            .flat_map(|(f, v)| [f.as_bytes().to_vec(), v.to_vec()])
            .collect()
    }

    #[test]
    fn decodes_every_field() {
        let r = decode_record(
            "k",
            &pairs(&[
                ("state", b"in_progress"),
                ("lease_token", b"abc"),
                ("lease_expires_ms", b"2000"),
                ("attempt", b"3"),
                ("function", b"f"),
                ("version", b""),
                ("created_ms", b"1000"),
            ]),
        )
        .unwrap();
        assert_eq!(r.state, RecordState::InProgress);
        assert_eq!(r.lease_token, Some(LeaseToken::from_string("abc")));
        assert_eq!(r.lease_expires_at, Some(Timestamp::from_millis(2000)));
        assert_eq!(r.attempt, 3);
        assert_eq!(
            (r.function.as_deref(), r.version.as_deref(), r.fingerprint),
            (Some("f"), Some(""), None)
        );
        assert_eq!(r.created_at, Timestamp::from_millis(1000));
    }

    #[test]
    fn a_completed_record_shows_no_lease() {
        let r = decode_record(
            "k",
            &pairs(&[
                ("state", b"completed"),
                ("value", b"v"),
                ("lease_token", b"abc"),
                ("lease_expires_ms", b"2000"),
                ("created_ms", b"1000"),
                ("completed_ms", b"1500"),
            ]),
        )
        .unwrap();
        assert_eq!(r.state, RecordState::Completed);
        assert_eq!((r.lease_token, r.lease_expires_at), (None, None));
        assert_eq!(r.value.as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn rejects_broken_hashes_naming_the_key() {
        for broken in [
            pairs(&[("created_ms", b"1")]),
            pairs(&[("state", b"weird"), ("created_ms", b"1")]),
            pairs(&[("state", b"completed"), ("created_ms", b"1")]),
            pairs(&[
                ("state", b"completed"),
                ("value", b""),
                ("created_ms", b"soon"),
            ]),
        ] {
            let e = decode_record("k", &broken).unwrap_err();
            assert_eq!(e.kind(), stent_core::ErrorKind::Decode);
            assert_eq!(e.key(), Some("k"));
        }
    }

    #[test]
    fn meta_leaves_out_absent_fields() {
        let meta = RecordMeta {
            function: Some("f"),
            version: None,
            fingerprint: Some(""),
        };
        assert_eq!(meta_args(&meta), ["function", "f", "fingerprint", ""]);
    }
}
