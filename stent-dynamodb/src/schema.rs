//! The item layout of the crate docs: the items and expressions the store sends, and the
//! conversion of items into [`Record`]s. Every attribute is named through `#` + its name
//! (several are DynamoDB reserved words): [`names`] builds that map from the expressions.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use stent_core::{Claim, Error, LeaseToken, Record, RecordMeta, RecordState, Result, Timestamp};

/// One item, or the `:placeholder` values of a request.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// The claim of an absent or expired key. Anything else fails it and comes back whole
/// (`ALL_OLD`): the answer of a contended claim, or a lapsed lease to take over.
pub(crate) const CLAIM_CONDITION: &str = "attribute_not_exists(#pk) OR #expires_ms <= :now";

/// renew / complete / release: only while the token owns the in-progress record. The state
/// test is needed: a completed record keeps the `lease_token` that completed it.
pub(crate) const OWNED_CONDITION: &str = "#lease_token = :token AND #state = :in_progress";

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Attributes or `:placeholders` with their values.
pub(crate) trait Pairs: IntoIterator<Item = (&'static str, AttributeValue)> {}

impl<T: IntoIterator<Item = (&'static str, AttributeValue)>> Pairs for T {}

/// A map of these attributes or values.
pub(crate) fn map(pairs: impl Pairs) -> Item {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// An item of `pairs` and of the metadata `m` carries.
fn item(pairs: impl Pairs, m: &RecordMeta<'_>) -> Item {
    let names = ["function", "version", "fingerprint"];
    let meta = names.iter().zip([m.function, m.version, m.fingerprint]);
    let meta = meta.filter_map(|(k, v)| Some((*k, s(v?))));
    map(pairs.into_iter().chain(meta))
}

/// Epoch seconds for the `ttl` attribute, rounded up so that DynamoDB never deletes a record
/// before stent stops showing it.
pub(crate) fn ttl_seconds(expires: Timestamp) -> i64 {
    expires.as_millis().div_euclid(1000) + i64::from(expires.as_millis().rem_euclid(1000) != 0)
}

/// The `#name` placeholders used in `exprs`, mapped to their attribute names.
pub(crate) fn names(exprs: &[&str]) -> HashMap<String, String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let after_hashes = exprs.iter().flat_map(|expr| expr.split('#').skip(1));
    after_hashes
        .map(|tail| &tail[..tail.find(|c| !is_name(c)).unwrap_or(tail.len())])
        .map(|name| (format!("#{name}"), name.to_owned()))
        .collect()
}

/// The item a claim writes: the whole in-progress record, so nothing of an expired or lapsed
/// one survives (`lease_attempt`: see the crate docs).
pub(crate) fn claim_item(
    pk: AttributeValue,
    claim: &Claim<'_>,
    now: Timestamp,
    lease_until: Timestamp,
    attempt: u32,
) -> Item {
    let pairs = [
        ("pk", pk),
        ("state", s("in_progress")),
        ("lease_token", s(claim.token.as_str())),
        ("lease_expires_ms", n(lease_until.as_millis())),
        ("attempt", n(attempt.into())),
        ("lease_attempt", n(attempt.into())),
        ("created_ms", n(now.as_millis())),
    ];
    item(pairs, &claim.meta)
}

/// The condition and values of a claim's `PutItem`: [`CLAIM_CONDITION`] for a fresh claim;
/// for the takeover of `lapsed`, that the record still holds that lease, still lapsed.
pub(crate) fn claim_condition(lapsed: Option<&Record>, now: Timestamp) -> (String, Item) {
    let now = (":now", n(now.as_millis()));
    let Some(lapsed) = lapsed else {
        return (CLAIM_CONDITION.to_owned(), map([now]));
    };
    let (owner, seen) = match &lapsed.lease_token {
        Some(token) => ("#lease_token = :seen", Some((":seen", s(token.as_str())))),
        // Not written by stent, but a record without a token can still be taken over.
        None => ("attribute_not_exists(#lease_token)", None),
    };
    let condition = format!(
        "{owner} AND #state = :in_progress \
         AND (attribute_not_exists(#lease_expires_ms) OR #lease_expires_ms <= :now)"
    );
    let owned = [now, (":in_progress", s("in_progress"))];
    (condition, map(owned.into_iter().chain(seen)))
}

/// The values of [`OWNED_CONDITION`] for `token`, and `more`.
pub(crate) fn owned(token: &LeaseToken, more: impl Pairs) -> Item {
    let token = (":token", s(token.as_str()));
    let owner = [token, (":in_progress", s("in_progress"))];
    map(owner.into_iter().chain(more))
}

/// The update expression of `complete` (under [`OWNED_CONDITION`]) and the values of both.
/// The lease attributes stay, which keeps the expression short: the server parses it each time.
pub(crate) fn complete_update(
    token: &LeaseToken,
    value: &[u8],
    now: Timestamp,
    expires: Option<Timestamp>,
) -> (String, Item) {
    let mut set = "#state = :completed, #value = :value, #completed_ms = :now".to_owned();
    let mut values = owned(token, [(":value", AttributeValue::B(Blob::new(value)))]);
    values.insert(":completed".to_owned(), s("completed"));
    values.insert(":now".to_owned(), n(now.as_millis()));
    if let Some(expires) = expires {
        set.push_str(", #expires_ms = :expires, #ttl = :ttl");
        values.insert(":expires".to_owned(), n(expires.as_millis()));
        values.insert(":ttl".to_owned(), n(ttl_seconds(expires)));
    }
    (format!("SET {set} REMOVE #lease_attempt"), values)
}

/// The item of an unconditional `put`: a completed record, attempt 1.
pub(crate) fn put_item(
    pk: AttributeValue,
    value: &[u8],
    now: Timestamp,
    expires: Option<Timestamp>,
    meta: &RecordMeta<'_>,
) -> Item {
    let pairs = [
        ("pk", pk),
        ("state", s("completed")),
        ("value", AttributeValue::B(Blob::new(value))),
        ("attempt", n(1)),
        ("created_ms", n(now.as_millis())),
        ("completed_ms", n(now.as_millis())),
    ];
    let expiry = expires.map(|e| [("expires_ms", n(e.as_millis())), ("ttl", n(ttl_seconds(e)))]);
    item(pairs.into_iter().chain(expiry.into_iter().flatten()), meta)
}

/// The record of `key` an item holds. A completed record shows no lease, whatever lease
/// attributes its item keeps.
pub(crate) fn decode(item: &Item, key: &str) -> Result<Record> {
    let string = |name: &str| read(item, key, name, |v| v.as_s().ok().cloned());
    let number = |name: &str| read(item, key, name, |v| v.as_n().ok()?.parse::<i64>().ok());
    let time = |name: &str| Ok::<_, Error>(number(name)?.map(Timestamp::from_millis));
    let state = string("state")?.unwrap_or_default();
    let state = RecordState::parse(&state)
        .ok_or_else(|| Error::decode(key, format!("stored item has unknown state {state:?}")))?;
    let mut record = Record::new(key, state, time("created_ms")?.unwrap_or_default());
    let bytes = |v: &AttributeValue| Some(v.as_b().ok()?.as_ref().to_vec());
    record.value = read(item, key, "value", bytes)?;
    if state == RecordState::InProgress {
        record.lease_token = string("lease_token")?.map(LeaseToken::from_string);
        record.lease_expires_at = time("lease_expires_ms")?;
    }
    record.attempt = number("attempt")?.map_or(1, |a| u32::try_from(a).unwrap_or(u32::MAX));
    record.fingerprint = string("fingerprint")?;
    record.function = string("function")?;
    record.version = string("version")?;
    record.completed_at = time("completed_ms")?;
    record.expires_at = time("expires_ms")?;
    Ok(record)
}

/// Attribute `name` of `item` as `as_type` reads it: `None` when absent or NULL, an error
/// naming `key` when of another type.
fn read<'a, T>(
    item: &'a Item,
    key: &str,
    name: &str,
    as_type: impl FnOnce(&'a AttributeValue) -> Option<T>,
) -> Result<Option<T>> {
    let what = || format!("stored item has attribute {name:?} of the wrong type");
    match item.get(name).filter(|v| !v.is_null()).map(as_type) {
        None => Ok(None),
        Some(read) => read.map(Some).ok_or_else(|| Error::decode(key, what())),
    }
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

    /// Every `:value` a request binds appears in its expressions: DynamoDB refuses a
    /// request with an unused one.
    fn assert_all_used(values: &Item, exprs: &[&str]) {
        for placeholder in values.keys() {
            assert!(
                exprs.iter().any(|e| e.contains(placeholder.as_str())),
                "{placeholder} unused in {exprs:?}"
            );
        }
    }

    #[test]
    fn complete_and_claims_use_every_value_they_bind() {
        let token = LeaseToken::generate();
        let now = Timestamp::from_millis(1);
        for expires in [None, Some(Timestamp::from_millis(9))] {
            let (update, values) = complete_update(&token, b"v", now, expires);
            assert_all_used(&values, &[&update, OWNED_CONDITION]);
            assert_eq!(update.contains("#ttl"), expires.is_some());
        }
        let (condition, values) = claim_condition(None, now);
        assert_all_used(&values, &[&condition]);
        assert_eq!(condition, CLAIM_CONDITION);
        let mut seen = Record::new("k", RecordState::InProgress, now);
        let (condition, values) = claim_condition(Some(&seen), now);
        assert_all_used(&values, &[&condition]);
        assert!(condition.contains("attribute_not_exists(#lease_token)"));
        seen.lease_token = Some(token);
        let (condition, values) = claim_condition(Some(&seen), now);
        assert_all_used(&values, &[&condition]);
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
        let claim = Claim {
            token: &token,
            lease: std::time::Duration::from_secs(1),
            meta,
        };
        let item = claim_item(
            s("pk"),
            &claim,
            Timestamp::from_millis(1),
            Timestamp::from_millis(2),
            3,
        );
        let r = decode(&item, "k").unwrap();
        assert_eq!(r.state, RecordState::InProgress);
        assert_eq!((r.attempt, r.lease_token.as_ref()), (3, Some(&token)));
        assert_eq!(r.lease_expires_at, Some(Timestamp::from_millis(2)));
        assert_eq!(item["lease_attempt"], n(3));
        assert_eq!(
            (r.function.as_deref(), r.version, r.fingerprint.as_deref()),
            (Some("f"), None, Some("fp"))
        );
        assert!(!item.contains_key("value") && !item.contains_key("expires_ms"));
    }

    #[test]
    fn a_completed_record_shows_no_lease() {
        let token = LeaseToken::generate();
        let claim = Claim {
            token: &token,
            lease: std::time::Duration::from_secs(1),
            meta: RecordMeta::default(),
        };
        let mut item = claim_item(
            s("pk"),
            &claim,
            Timestamp::from_millis(1),
            Timestamp::from_millis(2),
            1,
        );
        item.insert("state".into(), s("completed"));
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
            s("p#cache#k"),
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
        assert_eq!(item["ttl"], n(3));
    }

    #[test]
    fn decode_names_the_key_on_bad_items() {
        let mut item = put_item(
            s("pk"),
            b"v",
            Timestamp::from_millis(1),
            None,
            &RecordMeta::default(),
        );
        item.insert("attempt".into(), s("three"));
        let e = decode(&item, "the-key").unwrap_err();
        assert_eq!(e.key(), Some("the-key"));
        assert!(e.to_string().contains("attempt"), "{e}");
        item.insert("state".into(), s("weird"));
        assert!(
            decode(&item, "k")
                .unwrap_err()
                .to_string()
                .contains("weird")
        );
    }
}
