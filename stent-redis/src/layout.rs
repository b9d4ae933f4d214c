//! The key and record layout, as the crate's README describes both: one Redis string per
//! record, at `{escaped prefix}:{namespace}:{key}`, holding a `|`-separated header, then the
//! metadata and the value:
//!
//! ```text
//! stent1|state|lease_token|attempt|created_ms|lease_expires_ms|completed_ms|expires_ms|purge_ms|lease_ms|horizon_ms|meta_len|<meta><value>
//! ```

use stent_core::{
    Error, LeaseToken, Namespace, Record, RecordMeta, RecordState, Result, Timestamp,
};

/// The first header field of every record.
pub(crate) const MARK: &[u8] = b"stent1|";

/// `{escaped prefix}:{namespace}:`, the start of every key of the namespace. The escaped
/// prefix holds no `:` (`%` and `:` are written `%25` and `%3A`), so a Redis key names one
/// prefix and one namespace, and no store's `SCAN` can match another store's key.
pub(crate) fn key_base(prefix: &str, ns: Namespace) -> String {
    format!("{}:{ns}:", prefix.replace('%', "%25").replace(':', "%3A"))
}

/// How far past its lease a natively claimed record's key expires: about 317 years, so in
/// effect never (an in-progress record stays until it is completed, released or taken over).
pub(crate) const HORIZON_MS: i64 = 10_000_000_000_000;

/// A record as stored, with what the header says beyond the [`Record`].
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) record: Record,
    /// When Redis deletes the record.
    pub(crate) purge_ms: Option<i64>,
    /// `lease_ms + horizon_ms` of an in-progress record whose times follow from its key's
    /// expiry (until [`settle`](Self::settle) sets them).
    pub(crate) unsettled: Option<(i64, i64)>,
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

    /// Sets the times of a native claim from its key's `PEXPIRETIME` (`at`): the lease ends
    /// `horizon_ms` before and began `lease_ms` before that; no expiry (-1) leaves it lapsed.
    pub(crate) fn settle(&mut self, at: i64) {
        if let Some((lease_ms, horizon_ms)) = self.unsettled.take() {
            let until = at - horizon_ms;
            self.record.lease_expires_at = Some(Timestamp::from_millis(until));
            self.record.created_at = Timestamp::from_millis(until - lease_ms);
        }
    }
}

/// `stent1|in_progress|{token}|`: how every in-progress record of the token's owner
/// starts, which the scripts compare to tell the owner (fencing).
pub(crate) fn owner(token: &LeaseToken) -> Vec<u8> {
    [MARK, b"in_progress|", token.as_str().as_bytes(), b"|"].concat()
}

/// The record a claim writes natively: in progress, attempt 1 (the byte after [`owner`]), no
/// times (its key's expiry tells them: see [`Stored::settle`]), then the metadata block.
pub(crate) fn claim_record(token: &LeaseToken, lease_ms: i64, meta: &[u8]) -> Vec<u8> {
    let fields = format!("1||||||{lease_ms}|{HORIZON_MS}|{}|", meta.len());
    [&owner(token)[..], fields.as_bytes(), meta].concat()
}

/// The metadata block: `f`, `v`, `p` (function, version, fingerprint), each followed by its
/// length, `:` and its bytes; absent ones are left out, so `None` and `Some("")` differ.
pub(crate) fn encode_meta(meta: &RecordMeta<'_>) -> Vec<u8> {
    let (f, v, p) = (meta.function, meta.version, meta.fingerprint);
    let fields = [('f', f), ('v', v), ('p', p)].into_iter();
    let field = |(tag, v): (char, Option<&str>)| Some(format!("{tag}{}:{}", v?.len(), v?));
    fields.filter_map(field).collect::<String>().into_bytes()
}

/// Reads a record; `None` for a string without the [`MARK`], which is someone else's.
pub(crate) fn decode(key: &str, bytes: &[u8]) -> Result<Option<Stored>> {
    let Some(body) = bytes.strip_prefix(MARK) else {
        return Ok(None);
    };
    let corrupt = |what: &str| Error::decode(key, format!("stored record: {what}"));
    // The header's 11 fields in order, then the metadata and the value.
    let mut parts = body.splitn(12, |&b| b == b'|');
    let mut field = |name: &str| match parts.next().map(std::str::from_utf8) {
        Some(Ok(text)) => Ok(text),
        Some(Err(_)) => Err(corrupt("the header is not UTF-8")),
        None => Err(corrupt(&format!("the header ends before `{name}`"))),
    };
    let state = field("state")?;
    let state = RecordState::parse(state)
        .ok_or_else(|| corrupt(&format!("field `state` is {state:?}, not a known state")))?;
    let mut record = Record::new(key, state, Timestamp::default());
    let token = field("lease_token")?;
    let attempt: u64 = number(key, "attempt", field("attempt")?)?;
    let (created, lease) = (field("created_ms")?, field("lease_expires_ms")?);
    record.completed_at = optional(key, "completed_ms", field("completed_ms")?)?;
    record.expires_at = optional(key, "expires_ms", field("expires_ms")?)?;
    let purge_ms = optional(key, "purge_ms", field("purge_ms")?)?.map(Timestamp::as_millis);
    let (lease_ms, horizon_ms) = (field("lease_ms")?, field("horizon_ms")?);
    let meta_len = number(key, "meta_len", field("meta_len")?)?;
    let rest = parts.next();
    let rest = rest.ok_or_else(|| corrupt("the header ends before the metadata"))?;
    let split = rest.split_at_checked(meta_len);
    let (meta, value) = split.ok_or_else(|| corrupt("the metadata is cut short"))?;
    decode_meta(key, meta, &mut record)?;
    record.attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
    let mut unsettled = None;
    if state == RecordState::InProgress && created.is_empty() {
        let lease_ms = number(key, "lease_ms", lease_ms)?;
        unsettled = Some((lease_ms, number(key, "horizon_ms", horizon_ms)?));
    } else {
        record.created_at = Timestamp::from_millis(number(key, "created_ms", created)?);
    }
    match state {
        RecordState::InProgress => {
            record.lease_token = (!token.is_empty()).then(|| LeaseToken::from_string(token));
            record.lease_expires_at = optional(key, "lease_expires_ms", lease)?;
        }
        RecordState::Completed => record.value = Some(value.to_vec()),
    }
    Ok(Some(Stored {
        record,
        purge_ms,
        unsettled,
    }))
}

fn decode_meta(key: &str, mut meta: &[u8], record: &mut Record) -> Result<()> {
    let corrupt = || Error::decode(key, "stored record: the metadata is malformed");
    while let Some((&tag, rest)) = meta.split_first() {
        let colon = rest.iter().position(|&b| b == b':').ok_or_else(corrupt)?;
        let (len, rest) = rest.split_at(colon);
        let len = String::from_utf8_lossy(len);
        let len: usize = len.parse().map_err(|_| corrupt())?;
        let (value, rest) = rest[1..].split_at_checked(len).ok_or_else(corrupt)?;
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
    let message = || format!("stored record: field `{field}` is {value:?}, not a number");
    value.parse().map_err(|_| Error::decode(key, message()))
}

fn optional(key: &str, field: &str, value: &str) -> Result<Option<Timestamp>> {
    let ms = (!value.is_empty()).then(|| number(key, field, value));
    Ok(ms.transpose()?.map(Timestamp::from_millis))
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
        let r = decode("k", bytes).unwrap().unwrap().record;
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
        let s = decode("k", bytes).unwrap().unwrap();
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
    fn a_native_claim_takes_its_times_from_the_keys_expiry() {
        let token = LeaseToken::from_string("t0");
        let meta = encode_meta(&RecordMeta {
            function: Some("f"),
            ..RecordMeta::default()
        });
        let bytes = claim_record(&token, 30_000, &meta);
        assert_eq!(
            bytes,
            b"stent1|in_progress|t0|1||||||30000|10000000000000|4|f1:f"
        );
        assert!(bytes.starts_with(&owner(&token)));
        let mut s = decode("k", &bytes).unwrap().unwrap();
        s.settle(1_000 + 30_000 + HORIZON_MS);
        let r = s.record;
        assert_eq!((r.attempt, r.lease_token), (1, Some(token)));
        assert_eq!(r.created_at, Timestamp::from_millis(1_000));
        assert_eq!(r.lease_expires_at, Some(Timestamp::from_millis(31_000)));
        assert_eq!(r.function.as_deref(), Some("f"));
    }

    #[test]
    fn a_grace_makes_presence_no_proof_of_life() {
        let bytes = b"stent1|completed||1|1000||1000|9000|39000|||0|v";
        let s = decode("k", bytes).unwrap().unwrap();
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
            // No `created_ms`, and not in progress with `lease_ms` and `horizon_ms`.
            b"stent1|in_progress|t|1||||||30000||0|",
            b"stent1|completed||1||||~60000||12|59999|0|",
            b"stent1|completed||1|1||||||||4|f9:x",
            b"stent1|\xff||1|1||||||||0|",
        ] {
            let e = decode("k", broken).unwrap_err();
            assert_eq!(e.kind(), stent_core::ErrorKind::Decode);
            assert_eq!(e.key(), Some("k"));
        }
    }

    #[test]
    fn a_string_without_the_mark_is_no_record() {
        for foreign in [
            &b"hand-written"[..],
            b"",
            b"stent1",
            b"stent2|completed||1|1||||||||0|",
        ] {
            assert!(decode("k", foreign).unwrap().is_none());
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
