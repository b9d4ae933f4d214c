//! The item layout: attribute names, the expressions every operation sends, and the
//! conversion between items and [`Record`]s.
//!
//! Every attribute is named through a `#placeholder` equal to `#` + its name (several are
//! DynamoDB reserved words), and every value is an `:placeholder`; [`names`] builds the
//! placeholder map from the expressions themselves, so none is ever missing or unused.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use stent_core::{Error, LeaseToken, Record, RecordMeta, RecordState, Result, Timestamp};

/// One DynamoDB item.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// The partition key: `{prefix}#{namespace}#{key}` (`{namespace}#{key}` without a prefix).
pub(crate) const PK: &str = "pk";
pub(crate) const STATE: &str = "state";
pub(crate) const VALUE: &str = "value";
pub(crate) const LEASE_TOKEN: &str = "lease_token";
pub(crate) const LEASE_EXPIRES_MS: &str = "lease_expires_ms";
pub(crate) const ATTEMPT: &str = "attempt";
pub(crate) const FINGERPRINT: &str = "fingerprint";
pub(crate) const FUNCTION: &str = "function";
pub(crate) const VERSION: &str = "version";
pub(crate) const CREATED_MS: &str = "created_ms";
pub(crate) const COMPLETED_MS: &str = "completed_ms";
pub(crate) const EXPIRES_MS: &str = "expires_ms";

/// The values of `state`.
pub(crate) const IN_PROGRESS: &str = "in_progress";
pub(crate) const COMPLETED: &str = "completed";

/// Claim of an absent or expired key: a `PutItem` of the new in-progress item under this
/// condition. Anything else (a completed record, a lease, live or lapsed) fails it and comes
/// back whole (`ALL_OLD`); a lapsed lease is then taken over by a second conditional write
/// ([`takeover_condition`]), the only claim that takes two.
pub(crate) const CLAIM_CONDITION: &str = "attribute_not_exists(#pk) OR #expires_ms <= :now";

/// The attempt of the running lease, written by every claim with the same number as
/// `attempt`. stent itself computes a takeover's attempt from the record it takes over;
/// the attribute is kept for stores of earlier versions sharing the table, whose claim
/// computes `if_not_exists(lease_attempt, 0) + 1`. Complete removes it, so that claim
/// finds 1 on an expired completed record.
pub(crate) const LEASE_ATTEMPT: &str = "lease_attempt";

/// The token that completed a record, in items completed by earlier versions (which
/// removed `lease_token` on completion). Read to recognise a retried completion; no longer
/// written: a completed record keeps its `lease_token`, which says the same.
pub(crate) const COMPLETED_TOKEN: &str = "completed_token";

/// The attribute DynamoDB's own TTL deletes by: epoch seconds, rounded up so DynamoDB
/// never deletes a record before stent stops showing it.
pub(crate) const TTL: &str = crate::TTL_ATTRIBUTE;

/// complete / renew / release: only while the token owns the in-progress record. The state
/// test is needed: a completed record keeps the `lease_token` that completed it.
pub(crate) const OWNED_CONDITION: &str = "#lease_token = :token AND #state = :in_progress";

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn b(v: &[u8]) -> AttributeValue {
    AttributeValue::B(Blob::new(v))
}

/// Epoch seconds for the TTL attribute, rounded up.
pub(crate) fn ttl_seconds(expires: Timestamp) -> i64 {
    expires.as_millis().div_euclid(1000) + i64::from(expires.as_millis().rem_euclid(1000) != 0)
}

/// The `#name` placeholders used in `exprs`, mapped to their attribute names.
pub(crate) fn names(exprs: &[&str]) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for expr in exprs {
        let mut rest = *expr;
        while let Some(at) = rest.find('#') {
            let tail = &rest[at + 1..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            map.insert(format!("#{}", &tail[..end]), tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    map
}

/// The item a claim writes: in progress under `token` until `lease_until`, attempt
/// `attempt`, and only the metadata `meta` carries (the `PutItem` replaces the whole item,
/// so nothing of an expired or lapsed record survives).
pub(crate) fn claim_item(
    pk: AttributeValue,
    token: &LeaseToken,
    now: Timestamp,
    lease_until: Timestamp,
    attempt: u32,
    meta: &RecordMeta<'_>,
) -> Item {
    let mut item = HashMap::from([
        (PK.to_owned(), pk),
        (STATE.to_owned(), s(IN_PROGRESS)),
        (LEASE_TOKEN.to_owned(), s(token.as_str())),
        (LEASE_EXPIRES_MS.to_owned(), n(lease_until.as_millis())),
        (ATTEMPT.to_owned(), n(attempt.into())),
        (LEASE_ATTEMPT.to_owned(), n(attempt.into())),
        (CREATED_MS.to_owned(), n(now.as_millis())),
    ]);
    for (attr, v) in meta_fields(meta) {
        if let Some(v) = v {
            item.insert(attr.to_owned(), s(v));
        }
    }
    item
}

/// The condition and values of the takeover of `seen`, an in-progress record whose lease
/// had lapsed at `now`: it still holds the same lease (so its attempt is still the one the
/// takeover adds 1 to), and that lease has still lapsed (its owner did not renew it since).
pub(crate) fn takeover_condition(
    seen: &Record,
    now: Timestamp,
) -> (&'static str, HashMap<String, AttributeValue>) {
    let mut values = HashMap::from([
        (":in_progress".to_owned(), s(IN_PROGRESS)),
        (":now".to_owned(), n(now.as_millis())),
    ]);
    let condition = match &seen.lease_token {
        Some(token) => {
            values.insert(":seen".to_owned(), s(token.as_str()));
            "#lease_token = :seen AND #state = :in_progress \
             AND (attribute_not_exists(#lease_expires_ms) OR #lease_expires_ms <= :now)"
        }
        // Not written by stent, but a record without a token can still be taken over.
        None => {
            "attribute_not_exists(#lease_token) AND #state = :in_progress \
             AND (attribute_not_exists(#lease_expires_ms) OR #lease_expires_ms <= :now)"
        }
    };
    (condition, values)
}

fn meta_fields<'a>(meta: &RecordMeta<'a>) -> [(&'static str, Option<&'a str>); 3] {
    [
        (FUNCTION, meta.function),
        (VERSION, meta.version),
        (FINGERPRINT, meta.fingerprint),
    ]
}

/// The item of an unconditional `put`: a completed record, attempt 1.
pub(crate) fn put_item(
    pk: String,
    value: &[u8],
    now: Timestamp,
    expires: Option<Timestamp>,
    meta: &RecordMeta<'_>,
) -> Item {
    let mut item = HashMap::from([
        (PK.to_owned(), s(pk)),
        (STATE.to_owned(), s(COMPLETED)),
        (VALUE.to_owned(), b(value)),
        (ATTEMPT.to_owned(), n(1)),
        (CREATED_MS.to_owned(), n(now.as_millis())),
        (COMPLETED_MS.to_owned(), n(now.as_millis())),
    ]);
    if let Some(expires) = expires {
        item.insert(EXPIRES_MS.to_owned(), n(expires.as_millis()));
        item.insert(TTL.to_owned(), n(ttl_seconds(expires)));
    }
    for (attr, v) in meta_fields(meta) {
        if let Some(v) = v {
            item.insert(attr.to_owned(), s(v));
        }
    }
    item
}

/// An update expression and the values it binds.
pub(crate) struct Update {
    pub(crate) expression: String,
    pub(crate) values: HashMap<String, AttributeValue>,
}

/// The update of `complete` (under [`OWNED_CONDITION`], whose values it binds too): the
/// state, the value and the times. The lease attributes stay (reads ignore them on a
/// completed record), which keeps the expression short: the server parses and validates
/// it on every request.
pub(crate) fn complete_update(
    token: &LeaseToken,
    value: &[u8],
    now: Timestamp,
    expires: Option<Timestamp>,
) -> Update {
    let mut set = "#state = :completed, #value = :value, #completed_ms = :now".to_owned();
    let mut values = HashMap::from([
        (":completed".to_owned(), s(COMPLETED)),
        (":in_progress".to_owned(), s(IN_PROGRESS)),
        (":value".to_owned(), b(value)),
        (":now".to_owned(), n(now.as_millis())),
        (":token".to_owned(), s(token.as_str())),
    ]);
    if let Some(expires) = expires {
        set.push_str(", #expires_ms = :expires, #ttl = :ttl");
        values.insert(":expires".to_owned(), n(expires.as_millis()));
        values.insert(":ttl".to_owned(), n(ttl_seconds(expires)));
    }
    Update {
        expression: format!("SET {set} REMOVE #{LEASE_ATTEMPT}"),
        values,
    }
}

/// Reads attributes of one item, naming the key in every error.
pub(crate) struct Fields<'a> {
    item: &'a Item,
    key: &'a str,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(item: &'a Item, key: &'a str) -> Self {
        Fields { item, key }
    }

    fn wrong(&self, attr: &str, want: &str) -> Error {
        Error::decode(
            self.key,
            format!("stored item has attribute {attr:?} of the wrong type (expected {want})"),
        )
    }

    pub(crate) fn string(&self, attr: &str) -> Result<Option<&'a str>> {
        match self.item.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v.as_str())),
            Some(_) => Err(self.wrong(attr, "a string")),
        }
    }

    pub(crate) fn number(&self, attr: &str) -> Result<Option<i64>> {
        match self.item.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => v
                .parse()
                .map(Some)
                .map_err(|_| self.wrong(attr, "an integer")),
            Some(_) => Err(self.wrong(attr, "a number")),
        }
    }

    pub(crate) fn bytes(&self, attr: &str) -> Result<Option<Vec<u8>>> {
        match self.item.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::B(v)) => Ok(Some(v.as_ref().to_vec())),
            Some(_) => Err(self.wrong(attr, "binary")),
        }
    }

    fn time(&self, attr: &str) -> Result<Option<Timestamp>> {
        Ok(self.number(attr)?.map(Timestamp::from_millis))
    }
}

/// Turns an item into the record of `key`.
pub(crate) fn decode(item: &Item, key: &str) -> Result<Record> {
    let f = Fields::new(item, key);
    let state = f.string(STATE)?.unwrap_or_default();
    let state = RecordState::parse(state)
        .ok_or_else(|| Error::decode(key, format!("stored item has unknown state {state:?}")))?;
    let mut record = Record::new(key, state, f.time(CREATED_MS)?.unwrap_or_default());
    record.value = f.bytes(VALUE)?;
    // A completed record keeps the lease attributes of the claim that completed it; its
    // lease is over all the same.
    if state == RecordState::InProgress {
        record.lease_token = f.string(LEASE_TOKEN)?.map(LeaseToken::from_string);
        record.lease_expires_at = f.time(LEASE_EXPIRES_MS)?;
    }
    record.attempt = f
        .number(ATTEMPT)?
        .map_or(1, |a| u32::try_from(a).unwrap_or(u32::MAX));
    record.fingerprint = f.string(FINGERPRINT)?.map(str::to_owned);
    record.function = f.string(FUNCTION)?.map(str::to_owned);
    record.version = f.string(VERSION)?.map(str::to_owned);
    record.completed_at = f.time(COMPLETED_MS)?;
    record.expires_at = f.time(EXPIRES_MS)?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_expressions() {
        let got = names(&[
            "#state = :x AND begins_with(#pk, :p)",
            "SET #lease_attempt = #a",
        ]);
        let mut keys: Vec<_> = got.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["#a", "#lease_attempt", "#pk", "#state"]);
        assert_eq!(got["#lease_attempt"], "lease_attempt");
    }

    /// Every `:value` an expression's request binds appears in its expressions: DynamoDB
    /// refuses a request with an unused one.
    fn assert_all_used(values: &HashMap<String, AttributeValue>, exprs: &[&str]) {
        for placeholder in values.keys() {
            assert!(
                exprs.iter().any(|e| e.contains(placeholder.as_str())),
                "{placeholder} unused in {exprs:?}"
            );
        }
    }

    #[test]
    fn complete_and_takeover_use_every_value_they_bind() {
        let token = LeaseToken::generate();
        let now = Timestamp::from_millis(1);
        for expires in [None, Some(Timestamp::from_millis(9))] {
            let u = complete_update(&token, b"v", now, expires);
            assert_all_used(&u.values, &[&u.expression, OWNED_CONDITION]);
            assert_eq!(u.expression.contains("#ttl"), expires.is_some());
        }
        let mut seen = Record::new("k", RecordState::InProgress, now);
        let (condition, values) = takeover_condition(&seen, now);
        assert_all_used(&values, &[condition]);
        assert!(condition.contains("attribute_not_exists(#lease_token)"));
        seen.lease_token = Some(token);
        let (condition, values) = takeover_condition(&seen, now);
        assert_all_used(&values, &[condition]);
        assert!(condition.contains("#lease_token = :seen"));
    }

    #[test]
    fn a_claim_item_has_only_the_metadata_given() {
        let token = LeaseToken::generate();
        let meta = RecordMeta {
            function: Some("f"),
            version: None,
            fingerprint: Some("fp"),
        };
        let item = claim_item(
            s("pk"),
            &token,
            Timestamp::from_millis(1),
            Timestamp::from_millis(2),
            3,
            &meta,
        );
        let r = decode(&item, "k").unwrap();
        assert_eq!(r.state, RecordState::InProgress);
        assert_eq!((r.attempt, r.lease_token.as_ref()), (3, Some(&token)));
        assert_eq!(r.lease_expires_at, Some(Timestamp::from_millis(2)));
        assert_eq!(item[LEASE_ATTEMPT], n(3));
        assert_eq!(
            (r.function.as_deref(), r.version, r.fingerprint.as_deref()),
            (Some("f"), None, Some("fp"))
        );
        assert!(!item.contains_key(VALUE) && !item.contains_key(EXPIRES_MS));
    }

    #[test]
    fn a_completed_record_shows_no_lease() {
        let token = LeaseToken::generate();
        let mut item = claim_item(
            s("pk"),
            &token,
            Timestamp::from_millis(1),
            Timestamp::from_millis(2),
            1,
            &RecordMeta::default(),
        );
        item.insert(STATE.into(), s(COMPLETED));
        let r = decode(&item, "k").unwrap();
        assert_eq!((r.lease_token, r.lease_expires_at), (None, None));
    }

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(Timestamp::from_millis(5_000)), 5);
        assert_eq!(ttl_seconds(Timestamp::from_millis(5_001)), 6);
    }

    #[test]
    fn decode_reads_a_put_item() {
        let meta = RecordMeta {
            function: Some("f"),
            version: Some("v1"),
            fingerprint: None,
        };
        let now = Timestamp::from_millis(1_000);
        let item = put_item(
            "p#cache#k".into(),
            b"",
            now,
            Some(Timestamp::from_millis(2_500)),
            &meta,
        );
        let r = decode(&item, "k").unwrap();
        assert_eq!(r.state, RecordState::Completed);
        assert_eq!(r.value.as_deref(), Some(&b""[..]));
        assert_eq!(
            (r.function.as_deref(), r.version.as_deref(), r.fingerprint),
            (Some("f"), Some("v1"), None)
        );
        assert_eq!(r.expires_at, Some(Timestamp::from_millis(2_500)));
        assert_eq!(item[TTL], n(3));
    }

    #[test]
    fn decode_names_the_key_on_bad_items() {
        let mut item = put_item(
            "pk".into(),
            b"v",
            Timestamp::from_millis(1),
            None,
            &RecordMeta::default(),
        );
        item.insert(ATTEMPT.into(), s("three"));
        let e = decode(&item, "the-key").unwrap_err();
        assert_eq!(e.key(), Some("the-key"));
        assert!(e.to_string().contains("attempt"), "{e}");
        item.insert(STATE.into(), s("weird"));
        assert!(
            decode(&item, "k")
                .unwrap_err()
                .to_string()
                .contains("weird")
        );
    }
}
