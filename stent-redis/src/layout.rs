//! The key and record layout: one Redis string per record, at
//! `{escaped prefix}:{namespace}:{key}`, holding a `|`-separated header, then the metadata
//! and the value, readable with `redis-cli GET`.
//!
//! In the key, the prefix has each `%` written `%25` and each `:` written `%3A`, so it
//! holds no `:` and its end is the key's first `:`; the namespace (`idempotency`, `cache`,
//! `progress`) runs to the second. A Redis key therefore names one prefix and one
//! namespace, and no store's `{escaped prefix}:{namespace}:` starts another's: no `SCAN`
//! of one store's namespace can match a key of another store, whatever the two prefixes
//! are. Anything else in the prefix is kept as written (so a prefix without `%` and `:`
//! reads as is, and braces in it still make a cluster hash tag).
//!
//! ```text
//! stent1|state|lease_token|attempt|created_ms|lease_expires_ms|completed_ms|expires_ms|purge_ms|||meta_len|<meta><value>
//! ```
//!
//! | field | content |
//! |---|---|
//! | `stent1` | the layout's mark: a string without it is not a record, and is never touched |
//! | `state` | `in_progress` or `completed` |
//! | `lease_token`, `lease_expires_ms` | the owner's token and lease end (in progress) |
//! | `attempt` | 1, +1 per takeover |
//! | `created_ms`, `completed_ms`, `expires_ms` | UTC milliseconds since the epoch, by the server's clock |
//! | `purge_ms` | when Redis deletes the record (its `PEXPIREAT`) |
//! | two reserved fields | empty |
//! | `meta_len`, `<meta>` | the length of the metadata, then `function`, `version` and `fingerprint`, each as a letter (`f`, `v`, `p`), its length in bytes, `:` and its bytes; absent ones are left out |
//! | `<value>` | the encoded result (completed records) |
//!
//! Every write is a Lua script (`lua/*.lua`), which reads the server's clock, so every
//! record has its times written out. The two reserved fields are always empty (development
//! builds before 0.1.0 used them for records written by `SET … NX` and `SET … IFEQ`, whose
//! times followed from the key's expiry; such a record, with an empty `created_ms`, reads as
//! broken).

use stent_core::{
    Error, LeaseToken, Namespace, Record, RecordMeta, RecordState, Result, Timestamp,
};

/// The first header field of every record.
pub(crate) const MARK: &[u8] = b"stent1|";

/// Header fields after the mark.
const FIELDS: usize = 11;

/// `{escaped prefix}:{namespace}:`, the start of every key of the namespace (see the
/// module docs).
pub(crate) fn key_base(prefix: &str, ns: Namespace) -> String {
    let mut base = String::with_capacity(prefix.len() + ns.as_str().len() + 2);
    for c in prefix.chars() {
        match c {
            '%' => base.push_str("%25"),
            ':' => base.push_str("%3A"),
            c => base.push(c),
        }
    }
    base.push(':');
    base.push_str(ns.as_str());
    base.push(':');
    base
}

/// A record as stored, with what the header says beyond the [`Record`].
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) record: Record,
    /// When Redis deletes the record.
    pub(crate) purge_ms: Option<i64>,
}

impl Stored {
    /// Whether Redis keeps the record only while it is live: it has no expiry, or Redis
    /// deletes it before it expires (no grace). Such a record is live whenever it exists.
    pub(crate) fn live_while_present(&self) -> bool {
        match self.record.expires_at {
            None => true,
            Some(expires) => self.purge_ms.is_some_and(|p| p < expires.as_millis()),
        }
    }
}

/// The metadata block: `f`, `v`, `p` for function, version and fingerprint, each followed
/// by its length, `:` and its bytes; absent fields are left out, so `None` and `Some("")`
/// stay distinct.
pub(crate) fn encode_meta(meta: &RecordMeta<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    for (tag, value) in [
        (b'f', meta.function),
        (b'v', meta.version),
        (b'p', meta.fingerprint),
    ] {
        if let Some(value) = value {
            out.push(tag);
            out.extend_from_slice(value.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
        }
    }
    out
}

/// Whether `bytes` are in this layout at all (they start with the mark); a string that
/// is not is someone else's.
pub(crate) fn is_record(bytes: &[u8]) -> bool {
    bytes.starts_with(MARK)
}

/// Reads a record; `bytes` must start with [`MARK`].
pub(crate) fn decode(key: &str, bytes: &[u8]) -> Result<Stored> {
    let corrupt = |what: &str| Error::decode(key, format!("stored record: {what}"));
    let mut rest = bytes
        .strip_prefix(MARK)
        .ok_or_else(|| corrupt("it does not start with `stent1|`"))?;
    let mut h: [&str; FIELDS] = [""; FIELDS];
    for (i, field) in h.iter_mut().enumerate() {
        let end = rest
            .iter()
            .position(|&b| b == b'|')
            .ok_or_else(|| corrupt(&format!("the header ends after {i} fields")))?;
        *field =
            std::str::from_utf8(&rest[..end]).map_err(|_| corrupt("the header is not UTF-8"))?;
        rest = &rest[end + 1..];
    }
    let [
        state,
        token,
        attempt,
        created,
        lease,
        completed,
        expires,
        purge,
        _,
        _,
        meta_len,
    ] = h;
    let state = RecordState::parse(state)
        .ok_or_else(|| corrupt(&format!("field `state` is {state:?}, not a known state")))?;
    let meta_len: usize = number(key, "meta_len", meta_len)?;
    if meta_len > rest.len() {
        return Err(corrupt("the metadata is cut short"));
    }
    let (meta, value) = rest.split_at(meta_len);
    let mut record = Record::new(key, state, Timestamp::default());
    decode_meta(key, meta, &mut record)?;
    let attempt: u64 = number(key, "attempt", attempt)?;
    record.attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
    let purge_ms = optional(key, "purge_ms", purge)?;
    record.created_at = Timestamp::from_millis(number(key, "created_ms", created)?);
    record.completed_at = optional(key, "completed_ms", completed)?.map(Timestamp::from_millis);
    record.expires_at = optional(key, "expires_ms", expires)?.map(Timestamp::from_millis);
    match state {
        RecordState::InProgress => {
            if !token.is_empty() {
                record.lease_token = Some(LeaseToken::from_string(token));
            }
            record.lease_expires_at =
                optional(key, "lease_expires_ms", lease)?.map(Timestamp::from_millis);
        }
        RecordState::Completed => record.value = Some(value.to_vec()),
    }
    Ok(Stored { record, purge_ms })
}

fn decode_meta(key: &str, mut meta: &[u8], record: &mut Record) -> Result<()> {
    let corrupt = || Error::decode(key, "stored record: the metadata is malformed");
    while let Some((&tag, rest)) = meta.split_first() {
        let colon = rest.iter().position(|&b| b == b':').ok_or_else(corrupt)?;
        let len: usize = std::str::from_utf8(&rest[..colon])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(corrupt)?;
        let rest = &rest[colon + 1..];
        if len > rest.len() {
            return Err(corrupt());
        }
        let (value, rest) = rest.split_at(len);
        let value = String::from_utf8(value.to_vec())
            .map_err(|_| Error::decode(key, "stored record: the metadata is not UTF-8"))?;
        match tag {
            b'f' => record.function = Some(value),
            b'v' => record.version = Some(value),
            b'p' => record.fingerprint = Some(value),
            _ => return Err(corrupt()),
        }
        meta = rest;
    }
    Ok(())
}

fn number<T: std::str::FromStr>(key: &str, field: &str, value: &str) -> Result<T> {
    value.parse().map_err(|_| {
        Error::decode(
            key,
            format!("stored record: field `{field}` is {value:?}, not a number"),
        )
    })
}

fn optional(key: &str, field: &str, value: &str) -> Result<Option<i64>> {
    if value.is_empty() {
        Ok(None)
    } else {
        number(key, field, value).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bases_escape_the_prefix() {
        assert_eq!(key_base("stent", Namespace::Cache), "stent:cache:");
        assert_eq!(key_base("{t}*", Namespace::Progress), "{t}*:progress:");
        assert_eq!(
            key_base("a:b%3A", Namespace::Idempotency),
            "a%3Ab%253A:idempotency:"
        );
    }

    #[test]
    fn no_key_base_starts_another() {
        let stems = [
            "", "P", "a", "{x}", "%", "%3A", "%25", ":", "\\", "*", "?", "[b]",
        ];
        let mut prefixes = Vec::new();
        for a in stems {
            for b in stems {
                for ns in ["", ":cache", ":idempotency", ":progress", ":cache:cache"] {
                    prefixes.push(format!("{a}{b}{ns}"));
                    prefixes.push(format!("{a}{ns}{b}"));
                }
            }
        }
        prefixes.sort_unstable();
        prefixes.dedup();
        let bases: Vec<(String, String)> = prefixes
            .iter()
            .flat_map(|p| Namespace::ALL.map(|ns| (format!("{p:?} {ns}"), key_base(p, ns))))
            .collect();
        for (one, base) in &bases {
            for (other, other_base) in &bases {
                assert!(
                    one == other || !other_base.starts_with(base.as_str()),
                    "{one} ({base}) starts {other} ({other_base})"
                );
            }
        }
    }

    #[test]
    fn an_in_progress_record_shows_its_lease_and_metadata() {
        let bytes = b"stent1|in_progress|0123456789abcdef|1|1000|31000||||||9|f3:f|np0:";
        assert!(is_record(bytes));
        let r = decode("k", bytes).unwrap().record;
        assert_eq!(r.state, RecordState::InProgress);
        assert_eq!(
            r.lease_token,
            Some(LeaseToken::from_string("0123456789abcdef"))
        );
        assert_eq!(r.attempt, 1);
        assert_eq!(r.created_at, Timestamp::from_millis(1_000));
        assert_eq!(r.lease_expires_at, Some(Timestamp::from_millis(31_000)));
        assert_eq!(
            (
                r.function.as_deref(),
                r.version.as_deref(),
                r.fingerprint.as_deref()
            ),
            (Some("f|n"), None, Some(""))
        );
        assert_eq!(r.value, None);
    }

    #[test]
    fn a_completed_record_shows_its_value_and_no_lease() {
        let bytes = b"stent1|completed||2|1000||1500|9000|8999|||4|f1:xv|a|ue";
        let s = decode("k", bytes).unwrap();
        assert!(s.live_while_present());
        let r = s.record;
        assert_eq!(r.state, RecordState::Completed);
        assert_eq!((r.lease_token, r.lease_expires_at), (None, None));
        assert_eq!(r.value.as_deref(), Some(&b"v|a|ue"[..]));
        assert_eq!(r.function.as_deref(), Some("x"));
        assert_eq!(r.attempt, 2);
        assert_eq!(r.expires_at, Some(Timestamp::from_millis(9000)));
        assert_eq!(s.purge_ms, Some(8999));
    }

    #[test]
    fn a_grace_makes_presence_no_proof_of_life() {
        let s = decode("k", b"stent1|completed||1|1000||1000|9000|39000|||0|v").unwrap();
        assert!(!s.live_while_present());
    }

    #[test]
    fn rejects_broken_records_naming_the_key() {
        for broken in [
            &b"stent1|exploded||1|1||||||||0|"[..],
            b"stent1|completed||1|1|",
            b"stent1|completed||x|1||||||||0|",
            b"stent1|completed||1|soon||||||||0|",
            b"stent1|completed||1|||||||||0|",
            b"stent1|completed||1|1||||||||9|v",
            b"stent1|completed||1|1||||||||2|q0:",
            // Written by `SET … NX` or `SET … IFEQ` before 0.1.0: no `created_ms`.
            b"stent1|in_progress|t|1||||||30000|10000000000000|0|",
            b"stent1|completed||1||||~60000||12|59999|0|",
            b"stent1|completed||1|1||||||||4|f9:x",
            b"stent1|\xff||1|1||||||||0|",
            b"hand-written",
        ] {
            let e = decode("k", broken).unwrap_err();
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
        assert_eq!(encode_meta(&meta), b"f1:fp0:");
    }
}
