//! Properties of the stored-value codec: any bytes decode to a value or a typed error,
//! never a panic, and every encodable value replays exactly.

use std::collections::BTreeMap;
use std::convert::Infallible;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stent_core::codec::{self, Stored};
use stent_core::{ErrorKind, MemoryStore, Status, Stent};

fn finite() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |f| f.is_finite())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        finite().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bytes that look like stored values: a real tag or any byte, then JSON that is valid,
/// cut short or has one byte changed, or plain noise.
fn stored_like() -> impl Strategy<Value = Vec<u8>> {
    let tag = prop_oneof![
        Just(codec::TAG_JSON_VALUE),
        Just(codec::TAG_JSON_ERROR),
        Just(codec::TAG_TIMED_VALUE),
        any::<u8>()
    ];
    let body = prop_oneof![
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        (json_value(), any::<prop::sample::Index>()).prop_map(|(v, at)| {
            let mut b = serde_json::to_vec(&v).unwrap();
            b.truncate(at.index(b.len() + 1));
            b
        }),
        (json_value(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(v, at, byte)| {
            let mut b = serde_json::to_vec(&v).unwrap();
            let i = at.index(b.len());
            b[i] = byte;
            b
        }),
        prop::collection::vec(any::<u8>(), 0..64),
    ];
    prop_oneof![
        (tag, body).prop_map(|(t, mut b)| {
            b.insert(0, t);
            b
        }),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Kind {
    Unit,
    Newtype(String),
    Tuple(i32, Option<u8>),
    Struct { at: u64, tags: Vec<String> },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Receipt {
    id: String,
    amount: i64,
    big: u128,
    small: i128,
    ratio: f64,
    letter: char,
    flags: Vec<bool>,
    lines: BTreeMap<String, u32>,
    by_number: BTreeMap<u16, String>,
    note: Option<String>,
    kind: Kind,
    nothing: (),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Unit),
        any::<String>().prop_map(Kind::Newtype),
        (any::<i32>(), any::<Option<u8>>()).prop_map(|(a, b)| Kind::Tuple(a, b)),
        (any::<u64>(), prop::collection::vec(any::<String>(), 0..3))
            .prop_map(|(at, tags)| Kind::Struct { at, tags }),
    ]
}

prop_compose! {
    fn receipt()(id in any::<String>(), amount in any::<i64>(), big in any::<u128>(),
                 small in any::<i128>(), ratio in finite(), letter in any::<char>(),
                 flags in prop::collection::vec(any::<bool>(), 0..4),
                 lines in prop::collection::btree_map(any::<String>(), any::<u32>(), 0..4),
                 by_number in prop::collection::btree_map(any::<u16>(), any::<String>(), 0..4),
                 note in any::<Option<String>>(), kind in kind()) -> Receipt {
        Receipt { id, amount, big, small, ratio, letter, flags, lines, by_number, note, kind, nothing: () }
    }
}

/// Decodes `bytes` as `Stored<T, E>`: a value, a stored error, or a decode error naming the key.
fn decodes_or_typed_error<T, E>(bytes: &[u8]) -> Result<(), TestCaseError>
where
    T: serde::de::DeserializeOwned,
    E: serde::de::DeserializeOwned,
{
    match codec::decode::<T, E>("the-key", bytes) {
        Ok(_) => Ok(()),
        Err(e) => {
            prop_assert_eq!(e.kind(), ErrorKind::Decode, "{}", e);
            prop_assert_eq!(e.key(), Some("the-key"));
            prop_assert!(!e.is_retryable());
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever bytes a store hands back, decoding gives a value or a `Decode` error.
    #[test]
    fn any_bytes_decode_to_a_value_or_a_decode_error(bytes in stored_like()) {
        decodes_or_typed_error::<Value, Value>(&bytes)?;
        decodes_or_typed_error::<Receipt, String>(&bytes)?;
        decodes_or_typed_error::<(u32, String), Vec<u8>>(&bytes)?;
        decodes_or_typed_error::<Option<BTreeMap<String, f64>>, ()>(&bytes)?;
        decodes_or_typed_error::<(), Kind>(&bytes)?;
        decodes_or_typed_error::<Vec<Option<i64>>, Value>(&bytes)?;
        decodes_or_typed_error::<u8, bool>(&bytes)?;
        match codec::to_json("the-key", &bytes) {
            Ok(Stored::Value(_) | Stored::Error(_)) => {
                prop_assert!(matches!(bytes.first(), Some(&(codec::TAG_JSON_VALUE | codec::TAG_JSON_ERROR | codec::TAG_TIMED_VALUE))));
            }
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::Decode),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any JSON value stored as a result or as an error replays as itself.
    #[test]
    fn json_values_round_trip(v in json_value()) {
        let bytes = codec::encode_value(&v).unwrap();
        prop_assert_eq!(bytes[0], codec::TAG_JSON_VALUE);
        prop_assert_eq!(codec::decode::<Value, Value>("k", &bytes).unwrap(), Stored::Value(v.clone()));
        let bytes = codec::encode_error(&v).unwrap();
        prop_assert_eq!(codec::decode::<Value, Value>("k", &bytes).unwrap(), Stored::Error(v));
    }

    /// A value stored with the time it took replays as itself, and the time reads back in
    /// whole milliseconds, saturating at `u32::MAX`.
    #[test]
    fn timed_values_round_trip(v in json_value(), took_us in any::<u64>()) {
        let took = std::time::Duration::from_micros(took_us);
        let bytes = codec::encode_timed_value(&v, took).unwrap();
        prop_assert_eq!(bytes[0], codec::TAG_TIMED_VALUE);
        let ms = (took_us / 1000).min(u64::from(u32::MAX));
        prop_assert_eq!(codec::computed_in(&bytes), Some(std::time::Duration::from_millis(ms)));
        prop_assert_eq!(codec::decode::<Value, ()>("k", &bytes).unwrap(), Stored::Value(v.clone()));
        prop_assert_eq!(codec::computed_in(&codec::encode_value(&v).unwrap()), None);
    }

    /// Typed results (every integer width, chars, maps with integer keys, enums, `()`)
    /// replay exactly, floats to the bit.
    #[test]
    fn typed_results_round_trip(r in receipt()) {
        let bytes = codec::encode_value(&r).unwrap();
        let back = codec::decode::<Receipt, ()>("k", &bytes).unwrap();
        let Stored::Value(back) = back else { panic!("stored as a value") };
        prop_assert_eq!(back.ratio.to_bits(), r.ratio.to_bits());
        prop_assert_eq!(back, r);
    }
}

/// Empty and zero results replay as themselves, not as a miss or a default.
#[test]
fn empty_results_round_trip() {
    fn same<T>(t: T)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let bytes = codec::encode_value(&t).unwrap();
        assert_eq!(
            codec::decode::<T, ()>("k", &bytes).unwrap(),
            Stored::Value(t)
        );
    }
    same(0u8);
    same(String::new());
    same(Vec::<u8>::new());
    same(());
    same(None::<u8>);
    same(false);
    same(BTreeMap::<String, u8>::new());
    same(((), ((),)));
}

proptest! {
    /// Every float result is either refused at encoding or replays as itself.
    #[test]
    fn non_finite_floats_are_refused_or_replay_exactly(x in prop::num::f64::ANY) {
        if let Ok(bytes) = codec::encode_value(&x) {
            let back = codec::decode::<f64, ()>("k", &bytes);
            prop_assert!(matches!(back, Ok(Stored::Value(y)) if y.to_bits() == x.to_bits()), "{} -> {:?}", x, back);
        }
        if let Ok(bytes) = codec::encode_value(&Some(x)) {
            let back = codec::decode::<Option<f64>, ()>("k", &bytes);
            prop_assert!(matches!(back, Ok(Stored::Value(Some(y))) if y.to_bits() == x.to_bits()), "{} -> {:?}", x, back);
        }
    }
}

/// A function whose result cannot be stored faithfully fails instead of poisoning its key.
#[tokio::test]
async fn a_non_finite_result_is_refused_rather_than_recorded_as_null() {
    let f = Stent::new(MemoryStore::new())
        .durable("codec::nan")
        .idempotent()
        .wrap(|_: ()| async { Ok::<_, Infallible>(f64::NAN) });
    match f.call_traced(()).await {
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Encode, "{e}");
            assert!(f.call(()).await.is_err(), "still refused, nothing stored");
        }
        Ok(t) => {
            assert_eq!(t.outcome.status, Status::Executed);
            let again = f.call(()).await;
            assert!(
                matches!(again, Ok(x) if x.is_nan()),
                "replays as NaN: {again:?}"
            );
        }
    }
}
