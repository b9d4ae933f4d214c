//! Keys pinned byte for byte. A stored result is found again only by its key, so a key that
//! changed between releases would orphan every result stored under the old one: each row
//! is what key derivation wrote when the row was added, and must stay so.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use stent_core::codec::encode_value;
use stent_core::key::{canonical_args, canonical_json, sha256_hex};
use stent_core::{DefaultKey, ErrorKind, KeyScope, KeyStrategy};

const SCOPE: KeyScope<'static> = KeyScope {
    name: "pin::f",
    version: None,
    shared: false,
};

/// A key or canonical form as text, or the kind of its error.
fn shown(result: stent_core::Result<String>) -> String {
    result.unwrap_or_else(|e| format!("error: {:?}", e.kind()))
}

/// Checks a value's canonical JSON, its canonical arguments and its default key.
#[track_caller]
fn pin<T: Serialize + ?Sized>(value: &T, json: &str, args: &str, key: &str) {
    let actual = [
        shown(canonical_json(value)),
        shown(canonical_args(value)),
        shown(DefaultKey::new().key(&SCOPE, value)),
    ];
    assert_eq!(actual, [json, args, key]);
}

/// Checks that a value has no canonical JSON, no canonical arguments and no key.
#[track_caller]
fn refused<T: Serialize + ?Sized>(value: &T) {
    pin(value, "error: Key", "error: Key", "error: Key");
}

/// Checks one key.
#[track_caller]
fn pin_key(actual: stent_core::Result<String>, key: &str) {
    let actual = shown(actual);
    assert_eq!(actual, key);
}

/// Serialized with `serialize_bytes`, as `serde_bytes` does.
struct Bytes(&'static [u8]);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// A map whose entries are serialized in the order given, duplicates included.
struct Entries<K, V>(Vec<(K, V)>);

impl<K: Serialize, V: Serialize> Serialize for Entries<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// `{1: "int", "1": "str"}`: two keys that JSON spells alike.
struct IntAndStrKey;

impl Serialize for IntAndStrKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry(&1, "int")?;
        map.serialize_entry("1", "str")?;
        map.end()
    }
}

#[derive(Serialize)]
struct Unit;

#[derive(Serialize)]
struct Newtype(u32);

#[derive(Serialize)]
struct NewtypeTuple((u8, u8));

#[derive(Serialize)]
struct NewtypeUnit(());

#[derive(Serialize)]
struct Pair(u8, &'static str);

#[derive(Serialize)]
struct Inner {
    y: Option<u8>,
    x: Vec<Unit>,
}

#[derive(Serialize)]
struct Order {
    zeta: u64,
    alpha: &'static str,
    mid: Option<Vec<i32>>,
    amount: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<u8>,
    nested: Inner,
    #[serde(rename = "Q\"k")]
    quoted: bool,
    #[serde(rename = "é")]
    accented: char,
}

#[derive(Serialize)]
struct Flat {
    id: u8,
    #[serde(flatten)]
    extra: BTreeMap<&'static str, u8>,
}

#[derive(Serialize)]
struct WithFloat {
    a: u8,
    f: f64,
}

#[derive(Serialize)]
enum Shape {
    Unit,
    Newtype(f64),
    Tuple(i8, &'static str),
    Struct {
        b: u8,
        a: bool,
    },
    #[serde(rename = "Über \"q\"")]
    Renamed,
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum Tagged {
    A { z: u8, b: u8 },
    B,
}

#[derive(Serialize)]
#[serde(tag = "t", content = "c")]
enum Adjacent {
    A(u8),
}

#[derive(Serialize)]
#[serde(untagged)]
enum Untagged {
    I(u8),
    S(&'static str),
}

#[test]
fn unit_bools_and_integers() {
    pin(&(), "null", "[]", "pin::f|None|[]");
    pin(&true, "true", "[true]", "pin::f|None|[true]");
    pin(&false, "false", "[false]", "pin::f|None|[false]");
    pin(&0u8, "0", "[0]", "pin::f|None|[0]");
    pin(&u8::MAX, "255", "[255]", "pin::f|None|[255]");
    pin(&i8::MIN, "-128", "[-128]", "pin::f|None|[-128]");
    pin(&i8::MAX, "127", "[127]", "pin::f|None|[127]");
    pin(&u16::MAX, "65535", "[65535]", "pin::f|None|[65535]");
    pin(&i16::MIN, "-32768", "[-32768]", "pin::f|None|[-32768]");
    pin(
        &u32::MAX,
        "4294967295",
        "[4294967295]",
        "pin::f|None|[4294967295]",
    );
    pin(
        &i32::MIN,
        "-2147483648",
        "[-2147483648]",
        "pin::f|None|[-2147483648]",
    );
    pin(&-1i32, "-1", "[-1]", "pin::f|None|[-1]");
    pin(
        &u64::MAX,
        "18446744073709551615",
        "[18446744073709551615]",
        "pin::f|None|[18446744073709551615]",
    );
    pin(
        &i64::MIN,
        "-9223372036854775808",
        "[-9223372036854775808]",
        "pin::f|None|[-9223372036854775808]",
    );
    pin(
        &i64::MAX,
        "9223372036854775807",
        "[9223372036854775807]",
        "pin::f|None|[9223372036854775807]",
    );
    pin(
        &usize::MAX,
        "18446744073709551615",
        "[18446744073709551615]",
        "pin::f|None|[18446744073709551615]",
    );
    pin(
        &isize::MIN,
        "-9223372036854775808",
        "[-9223372036854775808]",
        "pin::f|None|[-9223372036854775808]",
    );
    pin(
        &u128::MAX,
        "340282366920938463463374607431768211455",
        "[340282366920938463463374607431768211455]",
        "pin::f|None|[340282366920938463463374607431768211455]",
    );
    pin(
        &i128::MIN,
        "-170141183460469231731687303715884105728",
        "[-170141183460469231731687303715884105728]",
        "pin::f|None|[-170141183460469231731687303715884105728]",
    );
    pin(
        &i128::MAX,
        "170141183460469231731687303715884105727",
        "[170141183460469231731687303715884105727]",
        "pin::f|None|[170141183460469231731687303715884105727]",
    );
    pin(
        &(u128::MAX, i128::MIN, 0i128),
        "[340282366920938463463374607431768211455,-170141183460469231731687303715884105728,0]",
        "[340282366920938463463374607431768211455,-170141183460469231731687303715884105728,0]",
        "pin::f|None|[340282366920938463463374607431768211455,-170141183460469231731687303715884105728,0]",
    );
}

#[test]
fn floats() {
    pin(&0.1f64, "0.1", "[0.1]", "pin::f|None|[0.1]");
    pin(&-0.0f64, "-0.0", "[-0.0]", "pin::f|None|[-0.0]");
    pin(&0.0f64, "0.0", "[0.0]", "pin::f|None|[0.0]");
    pin(&2.0f64, "2.0", "[2.0]", "pin::f|None|[2.0]");
    pin(&-2.5f64, "-2.5", "[-2.5]", "pin::f|None|[-2.5]");
    pin(&1e300f64, "1e+300", "[1e+300]", "pin::f|None|[1e+300]");
    pin(&1.5e-7f64, "1.5e-7", "[1.5e-7]", "pin::f|None|[1.5e-7]");
    pin(&1e-5f64, "0.00001", "[0.00001]", "pin::f|None|[0.00001]");
    pin(
        &1e15f64,
        "1000000000000000.0",
        "[1000000000000000.0]",
        "pin::f|None|[1000000000000000.0]",
    );
    pin(&1e16f64, "1e+16", "[1e+16]", "pin::f|None|[1e+16]");
    pin(&1e21f64, "1e+21", "[1e+21]", "pin::f|None|[1e+21]");
    pin(
        &123456789.125f64,
        "123456789.125",
        "[123456789.125]",
        "pin::f|None|[123456789.125]",
    );
    pin(
        &std::f64::consts::PI,
        "3.141592653589793",
        "[3.141592653589793]",
        "pin::f|None|[3.141592653589793]",
    );
    pin(
        &f64::MAX,
        "1.7976931348623157e+308",
        "[1.7976931348623157e+308]",
        "pin::f|None|[1.7976931348623157e+308]",
    );
    pin(
        &f64::MIN,
        "-1.7976931348623157e+308",
        "[-1.7976931348623157e+308]",
        "pin::f|None|[-1.7976931348623157e+308]",
    );
    pin(
        &f64::MIN_POSITIVE,
        "2.2250738585072014e-308",
        "[2.2250738585072014e-308]",
        "pin::f|None|[2.2250738585072014e-308]",
    );
    pin(&5e-324f64, "5e-324", "[5e-324]", "pin::f|None|[5e-324]");
    pin(
        &f64::EPSILON,
        "2.220446049250313e-16",
        "[2.220446049250313e-16]",
        "pin::f|None|[2.220446049250313e-16]",
    );
    pin(
        &0.1f32,
        "0.10000000149011612",
        "[0.10000000149011612]",
        "pin::f|None|[0.10000000149011612]",
    );
    pin(&1.5f32, "1.5", "[1.5]", "pin::f|None|[1.5]");
    pin(&-0.0f32, "-0.0", "[-0.0]", "pin::f|None|[-0.0]");
    pin(&2.0f32, "2.0", "[2.0]", "pin::f|None|[2.0]");
    pin(
        &f32::MAX,
        "3.4028234663852886e+38",
        "[3.4028234663852886e+38]",
        "pin::f|None|[3.4028234663852886e+38]",
    );
    pin(
        &f32::MIN_POSITIVE,
        "1.1754943508222875e-38",
        "[1.1754943508222875e-38]",
        "pin::f|None|[1.1754943508222875e-38]",
    );
    pin(
        &1e-45f32,
        "1.401298464324817e-45",
        "[1.401298464324817e-45]",
        "pin::f|None|[1.401298464324817e-45]",
    );
    pin(
        &16777217f32,
        "16777216.0",
        "[16777216.0]",
        "pin::f|None|[16777216.0]",
    );
    pin(
        &(0.1f64, 0.1f32, 3u8),
        "[0.1,0.10000000149011612,3]",
        "[0.1,0.10000000149011612,3]",
        "pin::f|None|[0.1,0.10000000149011612,3]",
    );
    pin(
        &vec![2.0, -2.5, 1e-7],
        "[2.0,-2.5,1e-7]",
        "[[2.0,-2.5,1e-7]]",
        "pin::f|None|[[2.0,-2.5,1e-7]]",
    );
}

#[test]
fn non_finite_floats_are_key_errors_at_any_depth() {
    refused(&f64::NAN);
    refused(&f64::INFINITY);
    refused(&f64::NEG_INFINITY);
    refused(&f32::NAN);
    refused(&f32::NEG_INFINITY);
    refused(&(1, f64::NAN));
    refused(&vec![0.5, f64::INFINITY]);
    refused(&Some(f64::NAN));
    refused(&BTreeMap::from([("a", f64::NAN)]));
    refused(&WithFloat {
        a: 1,
        f: f64::INFINITY,
    });
    refused(&Shape::Newtype(f64::NAN));
    refused(&vec![vec![vec![f32::INFINITY]]]);
}

#[test]
fn a_result_holding_a_non_finite_float_is_not_encoded() {
    for result in [
        encode_value(&f64::NAN),
        encode_value(&(None::<u8>, f64::INFINITY)),
        encode_value(&BTreeMap::from([("k", vec![f32::NAN])])),
        encode_value(&Shape::Newtype(f64::NEG_INFINITY)),
    ] {
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Encode);
    }
    assert_eq!(
        encode_value(&(None::<u8>, 1.5, ())).unwrap(),
        b"\x01[null,1.5,null]"
    );
}

#[test]
fn strings_chars_and_bytes() {
    pin(&"", r#""""#, r#"[""]"#, r#"pin::f|None|[""]"#);
    pin(
        &"user-123",
        r#""user-123""#,
        r#"["user-123"]"#,
        r#"pin::f|None|["user-123"]"#,
    );
    pin(
        &"q\"uote",
        r#""q\"uote""#,
        r#"["q\"uote"]"#,
        r#"pin::f|None|["q\"uote"]"#,
    );
    pin(
        &"back\\slash",
        r#""back\\slash""#,
        r#"["back\\slash"]"#,
        r#"pin::f|None|["back\\slash"]"#,
    );
    pin(
        &"\n\r\t\u{8}\u{c}",
        r#""\n\r\t\b\f""#,
        r#"["\n\r\t\b\f"]"#,
        r#"pin::f|None|["\n\r\t\b\f"]"#,
    );
    pin(
        &"\u{0}\u{1}\u{1f}\u{7f}",
        "\"\\u0000\\u0001\\u001f\u{7f}\"",
        "[\"\\u0000\\u0001\\u001f\u{7f}\"]",
        "pin::f|None|[\"\\u0000\\u0001\\u001f\u{7f}\"]",
    );
    pin(
        &"é€𝄞🦀",
        r#""é€𝄞🦀""#,
        r#"["é€𝄞🦀"]"#,
        r#"pin::f|None|["é€𝄞🦀"]"#,
    );
    pin(
        &"\u{2028}\u{2029}\u{feff}",
        "\"\u{2028}\u{2029}\u{feff}\"",
        "[\"\u{2028}\u{2029}\u{feff}\"]",
        "pin::f|None|[\"\u{2028}\u{2029}\u{feff}\"]",
    );
    pin(
        &"a|b:c*%",
        r#""a|b:c*%""#,
        r#"["a|b:c*%"]"#,
        r#"pin::f|None|["a|b:c*%"]"#,
    );
    pin(
        &"</script>&<>'",
        r#""</script>&<>'""#,
        r#"["</script>&<>'"]"#,
        r#"pin::f|None|["</script>&<>'"]"#,
    );
    pin(
        &"sha256:abc",
        r#""sha256:abc""#,
        r#"["sha256:abc"]"#,
        r#"pin::f|None|["sha256:abc"]"#,
    );
    pin(
        &"x\"\\\u{1}é".repeat(4),
        r#""x\"\\\u0001éx\"\\\u0001éx\"\\\u0001éx\"\\\u0001é""#,
        r#"["x\"\\\u0001éx\"\\\u0001éx\"\\\u0001éx\"\\\u0001é"]"#,
        r#"pin::f|None|["x\"\\\u0001éx\"\\\u0001éx\"\\\u0001éx\"\\\u0001é"]"#,
    );
    pin(
        &"abcdefg\"hijklmn\u{1f}opqrstu\\",
        r#""abcdefg\"hijklmn\u001fopqrstu\\""#,
        r#"["abcdefg\"hijklmn\u001fopqrstu\\"]"#,
        r#"pin::f|None|["abcdefg\"hijklmn\u001fopqrstu\\"]"#,
    );
    pin(&'a', r#""a""#, r#"["a"]"#, r#"pin::f|None|["a"]"#);
    pin(&'"', r#""\"""#, r#"["\""]"#, r#"pin::f|None|["\""]"#);
    pin(&'\\', r#""\\""#, r#"["\\"]"#, r#"pin::f|None|["\\"]"#);
    pin(&'\n', r#""\n""#, r#"["\n"]"#, r#"pin::f|None|["\n"]"#);
    pin(
        &'\u{0}',
        r#""\u0000""#,
        r#"["\u0000"]"#,
        r#"pin::f|None|["\u0000"]"#,
    );
    pin(
        &'\u{1f}',
        r#""\u001f""#,
        r#"["\u001f"]"#,
        r#"pin::f|None|["\u001f"]"#,
    );
    pin(&'🦀', r#""🦀""#, r#"["🦀"]"#, r#"pin::f|None|["🦀"]"#);
    pin(
        &'\u{2028}',
        "\"\u{2028}\"",
        "[\"\u{2028}\"]",
        "pin::f|None|[\"\u{2028}\"]",
    );
    pin(&Bytes(b""), "[]", "[[]]", "pin::f|None|[[]]");
    pin(
        &Bytes(b"\x00\xff ab"),
        "[0,255,32,97,98]",
        "[[0,255,32,97,98]]",
        "pin::f|None|[[0,255,32,97,98]]",
    );
    pin(
        &vec![0u8, 255],
        "[0,255]",
        "[[0,255]]",
        "pin::f|None|[[0,255]]",
    );
    pin(&b"ab"[..], "[97,98]", "[[97,98]]", "pin::f|None|[[97,98]]");
    pin(b"ab", "[97,98]", "[97,98]", "pin::f|None|[97,98]");
}

#[test]
fn options_tuples_and_sequences() {
    pin(&Some(3), "3", "[3]", "pin::f|None|[3]");
    pin(&None::<u8>, "null", "[null]", "pin::f|None|[null]");
    pin(&Some("s"), r#""s""#, r#"["s"]"#, r#"pin::f|None|["s"]"#);
    pin(&Some(()), "null", "[]", "pin::f|None|[]");
    pin(&Some(Some(())), "null", "[]", "pin::f|None|[]");
    pin(&Some(None::<u8>), "null", "[null]", "pin::f|None|[null]");
    pin(&Some((1, 2)), "[1,2]", "[1,2]", "pin::f|None|[1,2]");
    pin(
        &vec![Some(1), None],
        "[1,null]",
        "[[1,null]]",
        "pin::f|None|[[1,null]]",
    );
    pin(&(1,), "[1]", "[1]", "pin::f|None|[1]");
    pin(
        &(1, "a"),
        r#"[1,"a"]"#,
        r#"[1,"a"]"#,
        r#"pin::f|None|[1,"a"]"#,
    );
    pin(&((),), "[null]", "[null]", "pin::f|None|[null]");
    pin(
        &((), ()),
        "[null,null]",
        "[null,null]",
        "pin::f|None|[null,null]",
    );
    pin(&((1, 2),), "[[1,2]]", "[[1,2]]", "pin::f|None|[[1,2]]");
    pin(
        &("o", 5u64, true, None::<u8>, ()),
        r#"["o",5,true,null,null]"#,
        r#"["o",5,true,null,null]"#,
        r#"pin::f|None|["o",5,true,null,null]"#,
    );
    pin(
        &(1, (2, (3,))),
        "[1,[2,[3]]]",
        "[1,[2,[3]]]",
        "pin::f|None|[1,[2,[3]]]",
    );
    pin(&vec![1, 2], "[1,2]", "[[1,2]]", "pin::f|None|[[1,2]]");
    pin(&Vec::<u8>::new(), "[]", "[[]]", "pin::f|None|[[]]");
    pin(&vec![()], "[null]", "[[null]]", "pin::f|None|[[null]]");
    pin(&[1u8, 2, 3], "[1,2,3]", "[1,2,3]", "pin::f|None|[1,2,3]");
    pin(&[0u8; 0], "[]", "[]", "pin::f|None|[]");
    pin(&[1, 2][..], "[1,2]", "[[1,2]]", "pin::f|None|[[1,2]]");
    pin(
        &vec![vec![1], vec![]],
        "[[1],[]]",
        "[[[1],[]]]",
        "pin::f|None|[[[1],[]]]",
    );
    pin(
        &vec![vec![vec![()]]],
        "[[[null]]]",
        "[[[[null]]]]",
        "pin::f|None|[[[[null]]]]",
    );
    pin(
        &BTreeSet::from([3, 1, 2]),
        "[1,2,3]",
        "[[1,2,3]]",
        "pin::f|None|[[1,2,3]]",
    );
    pin(
        &vec![(1, "a"), (2, "b")],
        r#"[[1,"a"],[2,"b"]]"#,
        r#"[[[1,"a"],[2,"b"]]]"#,
        r#"pin::f|None|[[[1,"a"],[2,"b"]]]"#,
    );
}

#[test]
fn structs() {
    let order = Order {
        zeta: 9,
        alpha: "a",
        mid: Some(vec![-1, 2]),
        amount: 12.5,
        skipped: None,
        nested: Inner {
            y: None,
            x: vec![Unit],
        },
        quoted: true,
        accented: 'é',
    };
    pin(&Unit, "null", "[null]", "pin::f|None|[null]");
    pin(&(Unit,), "[null]", "[null]", "pin::f|None|[null]");
    pin(&Some(Unit), "null", "[null]", "pin::f|None|[null]");
    pin(&Newtype(7), "7", "[7]", "pin::f|None|[7]");
    pin(
        &(Newtype(7), Newtype(8)),
        "[7,8]",
        "[7,8]",
        "pin::f|None|[7,8]",
    );
    pin(&NewtypeTuple((1, 2)), "[1,2]", "[1,2]", "pin::f|None|[1,2]");
    pin(
        &(NewtypeTuple((1, 2)),),
        "[[1,2]]",
        "[[1,2]]",
        "pin::f|None|[[1,2]]",
    );
    pin(&NewtypeUnit(()), "null", "[]", "pin::f|None|[]");
    pin(
        &Pair(1, "a"),
        r#"[1,"a"]"#,
        r#"[[1,"a"]]"#,
        r#"pin::f|None|[[1,"a"]]"#,
    );
    pin(
        &(Pair(1, "a"),),
        r#"[[1,"a"]]"#,
        r#"[[1,"a"]]"#,
        r#"pin::f|None|[[1,"a"]]"#,
    );
    pin(
        &order,
        r#"{"Q\"k":true,"alpha":"a","amount":12.5,"mid":[-1,2],"nested":{"x":[null],"y":null},"zeta":9,"é":"é"}"#,
        r#"[{"Q\"k":true,"alpha":"a","amount":12.5,"mid":[-1,2],"nested":{"x":[null],"y":null},"zeta":9,"é":"é"}]"#,
        r#"pin::f|None|[{"Q\"k":true,"alpha":"a","amount":12.5,"mid":[-1,2],"nested":{"x":[null],"y":null},"zeta":9,"é":"é"}]"#,
    );
    pin(
        &(&order, 1),
        r#"[{"Q\"k":true,"alpha":"a","amount":12.5,"mid":[-1,2],"nested":{"x":[null],"y":null},"zeta":9,"é":"é"},1]"#,
        r#"[{"Q\"k":true,"alpha":"a","amount":12.5,"mid":[-1,2],"nested":{"x":[null],"y":null},"zeta":9,"é":"é"},1]"#,
        r#"pin::f|None|[{"Q\"k":true,"alpha":"a","amount":12.5,"mid":[-1,2],"nested":{"x":[null],"y":null},"zeta":9,"é":"é"},1]"#,
    );
    pin(
        &Flat {
            id: 1,
            extra: BTreeMap::from([("b", 2), ("a", 3)]),
        },
        r#"{"a":3,"b":2,"id":1}"#,
        r#"[{"a":3,"b":2,"id":1}]"#,
        r#"pin::f|None|[{"a":3,"b":2,"id":1}]"#,
    );
    refused(&Flat {
        id: 1,
        extra: BTreeMap::from([("id", 2)]),
    });
}

#[test]
fn enums() {
    pin(
        &Shape::Unit,
        r#""Unit""#,
        r#"["Unit"]"#,
        r#"pin::f|None|["Unit"]"#,
    );
    pin(
        &Shape::Newtype(1.0),
        r#"{"Newtype":1.0}"#,
        r#"[{"Newtype":1.0}]"#,
        r#"pin::f|None|[{"Newtype":1.0}]"#,
    );
    pin(
        &Shape::Tuple(-1, "x"),
        r#"{"Tuple":[-1,"x"]}"#,
        r#"[{"Tuple":[-1,"x"]}]"#,
        r#"pin::f|None|[{"Tuple":[-1,"x"]}]"#,
    );
    pin(
        &Shape::Struct { b: 2, a: true },
        r#"{"Struct":{"a":true,"b":2}}"#,
        r#"[{"Struct":{"a":true,"b":2}}]"#,
        r#"pin::f|None|[{"Struct":{"a":true,"b":2}}]"#,
    );
    pin(
        &Shape::Renamed,
        r#""Über \"q\"""#,
        r#"["Über \"q\""]"#,
        r#"pin::f|None|["Über \"q\""]"#,
    );
    pin(
        &(Shape::Unit, Shape::Newtype(3.5)),
        r#"["Unit",{"Newtype":3.5}]"#,
        r#"["Unit",{"Newtype":3.5}]"#,
        r#"pin::f|None|["Unit",{"Newtype":3.5}]"#,
    );
    pin(
        &vec![Shape::Tuple(0, ""), Shape::Struct { b: 0, a: false }],
        r#"[{"Tuple":[0,""]},{"Struct":{"a":false,"b":0}}]"#,
        r#"[[{"Tuple":[0,""]},{"Struct":{"a":false,"b":0}}]]"#,
        r#"pin::f|None|[[{"Tuple":[0,""]},{"Struct":{"a":false,"b":0}}]]"#,
    );
    pin(
        &Some(Shape::Renamed),
        r#""Über \"q\"""#,
        r#"["Über \"q\""]"#,
        r#"pin::f|None|["Über \"q\""]"#,
    );
    pin(
        &Tagged::A { z: 1, b: 2 },
        r#"{"b":2,"type":"A","z":1}"#,
        r#"[{"b":2,"type":"A","z":1}]"#,
        r#"pin::f|None|[{"b":2,"type":"A","z":1}]"#,
    );
    pin(
        &Tagged::B,
        r#"{"type":"B"}"#,
        r#"[{"type":"B"}]"#,
        r#"pin::f|None|[{"type":"B"}]"#,
    );
    pin(
        &Adjacent::A(4),
        r#"{"c":4,"t":"A"}"#,
        r#"[{"c":4,"t":"A"}]"#,
        r#"pin::f|None|[{"c":4,"t":"A"}]"#,
    );
    pin(
        &(Untagged::I(1), Untagged::S("s")),
        r#"[1,"s"]"#,
        r#"[1,"s"]"#,
        r#"pin::f|None|[1,"s"]"#,
    );
}

#[test]
fn maps_sort_their_keys() {
    pin(
        &BTreeMap::<String, u8>::new(),
        "{}",
        "[{}]",
        "pin::f|None|[{}]",
    );
    pin(
        &BTreeMap::from([("b", 1), ("a", 2)]),
        r#"{"a":2,"b":1}"#,
        r#"[{"a":2,"b":1}]"#,
        r#"pin::f|None|[{"a":2,"b":1}]"#,
    );
    pin(
        &HashMap::from([("z", 1), ("a", 2), ("m", 3)]),
        r#"{"a":2,"m":3,"z":1}"#,
        r#"[{"a":2,"m":3,"z":1}]"#,
        r#"pin::f|None|[{"a":2,"m":3,"z":1}]"#,
    );
    pin(
        &HashMap::from([
            ("\n", 0),
            (" ", 1),
            ("\\", 2),
            ("\"", 3),
            ("é", 4),
            ("Z", 5),
            ("a", 6),
            ("", 7),
            ("\u{1}", 8),
        ]),
        r#"{"":7,"\u0001":8,"\n":0," ":1,"\"":3,"Z":5,"\\":2,"a":6,"é":4}"#,
        r#"[{"":7,"\u0001":8,"\n":0," ":1,"\"":3,"Z":5,"\\":2,"a":6,"é":4}]"#,
        r#"pin::f|None|[{"":7,"\u0001":8,"\n":0," ":1,"\"":3,"Z":5,"\\":2,"a":6,"é":4}]"#,
    );
    pin(
        &HashMap::from([(10, 'a'), (9, 'b'), (-1, 'c'), (0, 'd')]),
        r#"{"-1":"c","0":"d","10":"a","9":"b"}"#,
        r#"[{"-1":"c","0":"d","10":"a","9":"b"}]"#,
        r#"pin::f|None|[{"-1":"c","0":"d","10":"a","9":"b"}]"#,
    );
    pin(
        &BTreeMap::from([(i128::MIN, 1), (i128::MAX, 2)]),
        r#"{"-170141183460469231731687303715884105728":1,"170141183460469231731687303715884105727":2}"#,
        r#"[{"-170141183460469231731687303715884105728":1,"170141183460469231731687303715884105727":2}]"#,
        r#"pin::f|None|[{"-170141183460469231731687303715884105728":1,"170141183460469231731687303715884105727":2}]"#,
    );
    pin(
        &BTreeMap::from([(u128::MAX, 1), (0, 2)]),
        r#"{"0":2,"340282366920938463463374607431768211455":1}"#,
        r#"[{"0":2,"340282366920938463463374607431768211455":1}]"#,
        r#"pin::f|None|[{"0":2,"340282366920938463463374607431768211455":1}]"#,
    );
    pin(
        &HashMap::from([(true, 1), (false, 2)]),
        r#"{"false":2,"true":1}"#,
        r#"[{"false":2,"true":1}]"#,
        r#"pin::f|None|[{"false":2,"true":1}]"#,
    );
    pin(
        &HashMap::from([('b', 1), ('a', 2), ('\n', 3), ('"', 4)]),
        r#"{"\n":3,"\"":4,"a":2,"b":1}"#,
        r#"[{"\n":3,"\"":4,"a":2,"b":1}]"#,
        r#"pin::f|None|[{"\n":3,"\"":4,"a":2,"b":1}]"#,
    );
    pin(
        &Entries(vec![(Shape::Unit, 1), (Shape::Renamed, 2)]),
        r#"{"Unit":1,"Über \"q\"":2}"#,
        r#"[{"Unit":1,"Über \"q\"":2}]"#,
        r#"pin::f|None|[{"Unit":1,"Über \"q\"":2}]"#,
    );
    pin(
        &Entries(vec![(Newtype(5), "a"), (Newtype(40), "b")]),
        r#"{"40":"b","5":"a"}"#,
        r#"[{"40":"b","5":"a"}]"#,
        r#"pin::f|None|[{"40":"b","5":"a"}]"#,
    );
    pin(
        &Entries(vec![(Some("k"), 1)]),
        r#"{"k":1}"#,
        r#"[{"k":1}]"#,
        r#"pin::f|None|[{"k":1}]"#,
    );
    pin(
        &Entries(vec![(Some(2), 1)]),
        r#"{"2":1}"#,
        r#"[{"2":1}]"#,
        r#"pin::f|None|[{"2":1}]"#,
    );
    pin(
        &serde_json::json!({"b": [1, {"d": null, "c": 2.5}], "a": "x", "A": {}}),
        r#"{"A":{},"a":"x","b":[1,{"c":2.5,"d":null}]}"#,
        r#"[{"A":{},"a":"x","b":[1,{"c":2.5,"d":null}]}]"#,
        r#"pin::f|None|[{"A":{},"a":"x","b":[1,{"c":2.5,"d":null}]}]"#,
    );
    pin(
        &HashMap::from([("o", HashMap::from([("y", vec![1u8]), ("x", vec![])]))]),
        r#"{"o":{"x":[],"y":[1]}}"#,
        r#"[{"o":{"x":[],"y":[1]}}]"#,
        r#"pin::f|None|[{"o":{"x":[],"y":[1]}}]"#,
    );
    pin(
        &(BTreeMap::from([("k", ())]), HashMap::<u8, u8>::new()),
        r#"[{"k":null},{}]"#,
        r#"[{"k":null},{}]"#,
        r#"pin::f|None|[{"k":null},{}]"#,
    );
}

#[test]
fn duplicate_and_unsupported_map_keys_are_key_errors() {
    refused(&Entries(vec![("a", 1), ("a", 2)]));
    refused(&Entries(vec![("b", 1), ("a", 2), ("b", 1)]));
    refused(&IntAndStrKey);
    refused(&Entries(vec![(true, 1), (true, 2)]));
    refused(&vec![Entries(vec![(1, 1), (1, 1)])]);
    refused(&Entries(vec![(1.5f64, 1)]));
    refused(&Entries(vec![(2.0f32, 1)]));
    refused(&Entries(vec![(f64::NAN, 1)]));
    refused(&Entries(vec![(None::<u8>, 1)]));
    refused(&Entries(vec![((), 1)]));
    refused(&Entries(vec![(Unit, 1)]));
    refused(&Entries(vec![((1, 2), 1)]));
    refused(&Entries(vec![(vec![1], 1)]));
    refused(&Entries(vec![(Bytes(b"k"), 1)]));
    refused(&Entries(vec![(Pair(1, "a"), 1)]));
    refused(&Entries(vec![(Shape::Newtype(1.0), 1)]));
    refused(&Entries(vec![(Shape::Tuple(1, "a"), 1)]));
    refused(&Entries(vec![(Shape::Struct { b: 1, a: true }, 1)]));
    refused(&Entries(vec![(BTreeMap::from([(1, 1)]), 1)]));
    refused(&Entries(vec![(WithFloat { a: 1, f: 1.0 }, 1)]));
}

#[test]
fn long_arguments_are_hashed() {
    // "pin::f|None|" is 12 bytes and `["…"]` adds 4: 184 characters fill 200 bytes.
    pin(
        &"x".repeat(184),
        r#""xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx""#,
        r#"["xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"]"#,
        r#"pin::f|None|["xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"]"#,
    );
    pin(
        &"x".repeat(185),
        r#""xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx""#,
        r#"["xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"]"#,
        "pin::f|None|sha256:019a00d38db569918dbcec6a55a50e40c6ae9604dc5e5e0eda91ca1099c3615b",
    );
    pin(
        &vec![0u8; 200],
        "[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]",
        "[[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]]",
        "pin::f|None|sha256:e27077c6a1d11dbdd2a4ad6f6bfd2f7c6d487a9e753c48502669888a94fc0373",
    );
    pin(
        &("é".repeat(100), 1),
        r#"["éééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé",1]"#,
        r#"["éééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé",1]"#,
        "pin::f|None|sha256:51ed5c8beb0b2f2910956f61274bf2172849ac05c7cd76730c020f72a956b347",
    );
    pin_key(
        DefaultKey::hashed().key(&SCOPE, &()),
        "pin::f|None|sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945",
    );
    pin_key(
        DefaultKey::hashed().key(&SCOPE, &"a"),
        "pin::f|None|sha256:0eb5b8d6f81bc677da8a08567cc4fa9a06a57e9ec8da85ed73a7f62727996002",
    );
    pin_key(
        DefaultKey::hashed().key(&SCOPE, &(1, "b")),
        "pin::f|None|sha256:263ba88d78b86861f39a3db2b1f4ab89bddabce340cf733a4a1f7aef0b0e6f4f",
    );
    pin_key(DefaultKey::hashed().key(&SCOPE, &f64::NAN), "error: Key");
    pin_key(
        DefaultKey::max_len(0).key(&SCOPE, &1),
        "pin::f|None|sha256:080a9ed428559ef602668b4c00f114f1a11c3f6b02a435f0bdc154578e4d7f22",
    );
    pin_key(
        DefaultKey::max_len(18).key(&SCOPE, &"ab"),
        r#"pin::f|None|["ab"]"#,
    );
    pin_key(
        DefaultKey::max_len(17).key(&SCOPE, &"ab"),
        "pin::f|None|sha256:f9ca6d378adafba7c7de88d13d0e9126503bb6d438f4ae7d8197edbc6e6ef300",
    );
    // Never longer than the portable 1024 bytes, whatever the bound.
    pin_key(
        DefaultKey::max_len(5000)
            .key(&SCOPE, &"y".repeat(1008))
            .map(|k| k.len().to_string()),
        "1024",
    );
    pin_key(
        DefaultKey::max_len(5000).key(&SCOPE, &"y".repeat(1009)),
        "pin::f|None|sha256:79dffa9b42bca78fea8c518fa9ad00f3c348993cda32c4613b09dfd6ee218c10",
    );
    pin_key(
        Ok(sha256_hex(b"")),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    );
    pin_key(
        Ok(sha256_hex("é\u{0}🦀".as_bytes())),
        "974bc49c4457f32099b9ebaf0c85518873e0e1b44398240c256ed9bc9ebb0eee",
    );
}

#[test]
fn names_and_versions_scope_the_default_key() {
    let versioned = KeyScope {
        name: "billing::charge",
        version: Some("v2"),
        shared: false,
    };
    let unicode = KeyScope {
        name: "ünïcödé 🦀",
        version: Some("2024-01 ß"),
        shared: false,
    };
    let shared = KeyScope {
        shared: true,
        ..SCOPE
    };
    pin_key(
        DefaultKey::new().key(&versioned, &("ord-1", 500)),
        r#"billing::charge|v2|["ord-1",500]"#,
    );
    pin_key(
        DefaultKey::hashed().key(&versioned, &("ord-1", 500)),
        "billing::charge|v2|sha256:087d72e4fd50d9a93847214c91e1ffea8889ce84de94328dc9db41e4a1fc5430",
    );
    pin_key(
        DefaultKey::new().key(&unicode, &()),
        "ünïcödé 🦀|2024-01 ß|[]",
    );
    pin_key(DefaultKey::new().key(&shared, &"a"), r#"pin::f|None|["a"]"#);
    pin_key(
        DefaultKey::new().key(&versioned, &"z".repeat(300)),
        "billing::charge|v2|sha256:06f026bdfd0e971aab0a86350075030feb0e6f12a2ef4644944785b68259783b",
    );
    pin_key(Ok(versioned.scoped("part")), "billing::charge|v2|part");
    pin_key(Ok(SCOPE.scoped("")), "pin::f|None|");
}

#[test]
fn custom_keys() {
    let versioned = KeyScope {
        name: "billing::charge",
        version: Some("v2"),
        shared: false,
    };
    let shared = KeyScope {
        shared: true,
        ..SCOPE
    };
    let order = |id: &String| format!("order:{id}");
    let same = |part: &String| part.clone();
    pin_key(order.key(&SCOPE, &"1".to_owned()), "pin::f|None|order:1");
    pin_key(
        order.key(&versioned, &"1".to_owned()),
        "billing::charge|v2|order:1",
    );
    pin_key(order.key(&shared, &"1".to_owned()), "order:1");
    pin_key(same.key(&SCOPE, &String::new()), "pin::f|None|");
    pin_key(same.key(&shared, &String::new()), "");
    pin_key(
        same.key(&SCOPE, &"nul\0byte".to_owned()),
        "pin::f|None|sha256:a9512ba6902d2e41f0ff8e055f2c8ee7041a092a53d27b518cde6a91ea0facd5",
    );
    pin_key(
        same.key(&shared, &"nul\0byte".to_owned()),
        "sha256:a9512ba6902d2e41f0ff8e055f2c8ee7041a092a53d27b518cde6a91ea0facd5",
    );
    pin_key(
        same.key(&SCOPE, &"sha256:abc".to_owned()),
        "pin::f|None|sha256:67e9bc3cfd2163c2978358dfe00d2f912cd4ee0c99f077c3583b39b48aebb124",
    );
    pin_key(
        same.key(&shared, &"sha256:abc".to_owned()),
        "sha256:67e9bc3cfd2163c2978358dfe00d2f912cd4ee0c99f077c3583b39b48aebb124",
    );
    pin_key(
        same.key(&SCOPE, &"q\"|%*:\n🦀".to_owned()),
        "pin::f|None|q\"|%*:\n🦀",
    );
    pin_key(
        same.key(&SCOPE, &"k".repeat(2000)),
        "pin::f|None|sha256:1c8123314be794fecd4622dd336c932c8c1592f8e3aa12eebf2e98aba92efd11",
    );
    pin_key(
        same.key(&shared, &"k".repeat(2000)),
        "sha256:1c8123314be794fecd4622dd336c932c8c1592f8e3aa12eebf2e98aba92efd11",
    );
    // "pin::f|None|" is 12 bytes: 1012 bytes of part fill the portable 1024.
    pin_key(
        same.key(&SCOPE, &"k".repeat(1012))
            .map(|k| k.len().to_string()),
        "1024",
    );
    pin_key(
        same.key(&SCOPE, &"k".repeat(1013)),
        "pin::f|None|sha256:232b9541744afd77e37be958490f6e3aa766588b47558fe7283b5b5fb193e269",
    );
    pin_key(
        same.key(&shared, &"k".repeat(1024))
            .map(|k| k.len().to_string()),
        "1024",
    );
    pin_key(
        same.key(&shared, &"k".repeat(1025)),
        "sha256:011cc8dcade24f43d2d7f95605d8481da1d0b86475def49be02bfc20cee86e65",
    );
    pin_key(Ok(SCOPE.custom("raw".to_owned())), "pin::f|None|raw");
}

/// `.hashed_key()` hashes the key part of any strategy, set before or after `.key(…)`: a
/// custom key is hashed, never dropped for the arguments. With the default strategy it
/// writes the keys `DefaultKey::hashed` writes.
#[test]
fn hashed_key_hashes_a_custom_key_set_before_or_after_it() {
    let stent = stent_core::Stent::new(stent_core::MemoryStore::new());
    let order = |o: &(u32, u32)| format!("order:{}", o.0);
    let f = |_: (u32, u32)| async { Ok::<_, std::convert::Infallible>(()) };
    let after = stent.durable("pin::f").key(order).hashed_key().wrap(f);
    let before = stent.durable("pin::f").hashed_key().key(order).wrap(f);
    let want = format!("pin::f|None|sha256:{}", sha256_hex(b"order:1"));
    for args in [(1, 0), (1, 7)] {
        assert_eq!(after.key_for(&args).unwrap(), want);
        assert_eq!(before.key_for(&args).unwrap(), want);
    }
    let default = stent.durable("pin::f").hashed_key().wrap(f);
    let pinned = DefaultKey::hashed().key(&SCOPE, &(1u32, 0u32)).unwrap();
    assert_eq!(default.key_for(&(1, 0)).unwrap(), pinned);
}
