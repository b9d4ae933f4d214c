//! Properties of key derivation under arbitrary arguments: the canonical form does not
//! depend on map order, distinct arguments never share a key, and nothing panics.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use proptest::prelude::*;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq};
use serde_json::Value;
use stent_core::key::{canonical_args, canonical_json, sha256_hex};
use stent_core::{DefaultKey, ErrorKind, KeyScope, KeyStrategy};

const SCOPE: KeyScope<'static> = KeyScope {
    name: "props::f",
    version: Some("v1"),
    shared: false,
};

/// A JSON-like value whose objects serialize their entries in the order given, as a map
/// with insertion order (serde_json's `preserve_order`, `IndexMap`) would.
#[derive(Clone, Debug)]
enum Tree {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    Arr(Vec<Tree>),
    Obj(Vec<(String, Tree)>),
}

impl Serialize for Tree {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Tree::Null => s.serialize_unit(),
            Tree::Bool(b) => s.serialize_bool(*b),
            Tree::Int(i) => s.serialize_i64(*i),
            Tree::Uint(u) => s.serialize_u64(*u),
            Tree::Float(f) => s.serialize_f64(*f),
            Tree::Str(v) => s.serialize_str(v),
            Tree::Arr(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Tree::Obj(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl Tree {
    /// The same value as serde_json's `Value`, objects built in sorted key order.
    fn to_value(&self) -> Value {
        match self {
            Tree::Null => Value::Null,
            Tree::Bool(b) => Value::Bool(*b),
            Tree::Int(i) => Value::from(*i),
            Tree::Uint(u) => Value::from(*u),
            Tree::Float(f) => Value::from(*f),
            Tree::Str(s) => Value::String(s.clone()),
            Tree::Arr(items) => Value::Array(items.iter().map(Tree::to_value).collect()),
            Tree::Obj(entries) => {
                let sorted: BTreeMap<_, _> = entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_value()))
                    .collect();
                Value::Object(sorted.into_iter().collect())
            }
        }
    }

    /// The same value with every object's entries in another order, chosen by `seed`.
    fn reordered(&self, seed: u64) -> Tree {
        match self {
            Tree::Arr(items) => Tree::Arr(items.iter().map(|t| t.reordered(seed)).collect()),
            Tree::Obj(entries) => {
                let mut entries: Vec<_> = entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.reordered(seed)))
                    .collect();
                entries.sort_by_key(|(k, _)| {
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    (seed, k).hash(&mut h);
                    h.finish()
                });
                Tree::Obj(entries)
            }
            leaf => leaf.clone(),
        }
    }
}

fn finite() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |f| f.is_finite())
}

/// Arbitrary JSON-able values: any unicode, any finite float, nested a few levels deep.
fn tree() -> impl Strategy<Value = Tree> {
    let leaf = prop_oneof![
        Just(Tree::Null),
        any::<bool>().prop_map(Tree::Bool),
        any::<i64>().prop_map(Tree::Int),
        any::<u64>().prop_map(Tree::Uint),
        finite().prop_map(Tree::Float),
        any::<String>().prop_map(Tree::Str),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Tree::Arr),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Tree::Obj(m.into_iter().collect())),
        ]
    })
}

/// Values from a small domain, so that equal and nearly equal pairs are common.
fn small_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0i64..3).prop_map(Value::from),
        prop::sample::select(vec![0.0, 0.5, 1.0, 2.0]).prop_map(Value::from),
        "[a1\"]{0,2}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[ab1]{0,1}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn key<A: Serialize + ?Sized>(strategy: DefaultKey, args: &A) -> String {
    KeyStrategy::<A>::key(&strategy, &SCOPE, args).expect("a JSON-able value has a key")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The canonical form is serde_json's compact JSON of the value with sorted keys.
    #[test]
    fn canonical_form_is_compact_json_with_sorted_keys(t in tree()) {
        let canonical = canonical_json(&t).unwrap();
        prop_assert_eq!(&canonical, &serde_json::to_string(&t.to_value()).unwrap());
        prop_assert_eq!(canonical_args(&(&t,)).unwrap(), format!("[{canonical}]"));
    }

    /// Maps with the same entries give the same key whatever their insertion order and
    /// whatever map type holds them.
    #[test]
    fn map_order_and_map_type_do_not_change_the_key(t in tree(), seed in any::<u64>(),
                                                    entries in prop::collection::btree_map(any::<String>(), tree(), 0..5)) {
        for strategy in [DefaultKey::new(), DefaultKey::hashed()] {
            let k = key(strategy, &t);
            prop_assert_eq!(&k, &key(strategy, &t.reordered(seed)));
            prop_assert_eq!(&k, &key(strategy, &t.to_value()));
        }
        let as_tree = Tree::Obj(entries.clone().into_iter().collect());
        let btree: BTreeMap<String, Value> =
            entries.iter().map(|(k, v)| (k.clone(), v.to_value())).collect();
        let hash: HashMap<String, Value> = btree.clone().into_iter().collect();
        let json: serde_json::Map<String, Value> = btree.clone().into_iter().rev().collect();
        let k = key(DefaultKey::new(), &btree);
        prop_assert_eq!(&k, &key(DefaultKey::new(), &hash));
        prop_assert_eq!(&k, &key(DefaultKey::new(), &json));
        prop_assert_eq!(&k, &key(DefaultKey::new(), &as_tree.reordered(seed)));
    }

    /// A struct and a map with the same entries give the same key.
    #[test]
    fn struct_fields_and_map_entries_give_the_same_key(zeta in any::<u64>(), alpha in any::<String>(),
                                                      mid in prop::option::of(prop::collection::vec(any::<i32>(), 0..4)),
                                                      amount in finite()) {
        #[derive(Serialize)]
        struct Order { zeta: u64, alpha: String, mid: Option<Vec<i32>>, amount: f64 }
        let order = Order { zeta, alpha: alpha.clone(), mid: mid.clone(), amount };
        let map = serde_json::json!({ "amount": amount, "mid": mid, "alpha": alpha, "zeta": zeta });
        prop_assert_eq!(key(DefaultKey::new(), &order), key(DefaultKey::new(), &map));
        prop_assert_eq!(key(DefaultKey::hashed(), &(&order, 1)), key(DefaultKey::hashed(), &(&map, 1)));
    }

    /// Integer, bool and char map keys are written as JSON strings and sorted as such.
    #[test]
    fn non_string_map_keys_sort_as_their_strings(m in prop::collection::hash_map(any::<i64>(), any::<bool>(), 0..8),
                                                 c in prop::collection::hash_map(any::<char>(), 0u8..3, 0..8)) {
        let as_strings: BTreeMap<String, bool> = m.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        prop_assert_eq!(canonical_json(&m).unwrap(), canonical_json(&as_strings).unwrap());
        let as_strings: BTreeMap<String, u8> = c.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        prop_assert_eq!(canonical_json(&c).unwrap(), canonical_json(&as_strings).unwrap());
    }

    /// Two arguments share a key exactly when they are the same value, whether the key
    /// holds the arguments or their hash.
    #[test]
    fn distinct_arguments_give_distinct_keys(a in small_value(), b in small_value()) {
        for strategy in [DefaultKey::new(), DefaultKey::hashed(), DefaultKey::max_len(24)] {
            prop_assert_eq!(a == b, key(strategy, &a) == key(strategy, &b),
                "{:?} vs {:?} with {:?}", a, b, strategy);
        }
    }

    /// Keys past the bound hash the arguments; shorter ones hold them as they are.
    #[test]
    fn long_arguments_are_hashed_and_short_ones_kept(t in tree(), bound in 0usize..400) {
        let canonical = canonical_args(&t).unwrap();
        let k = key(DefaultKey::max_len(bound), &t);
        let prefix = "props::f|v1|";
        if prefix.len() + canonical.len() <= bound {
            prop_assert_eq!(k, format!("{prefix}{canonical}"));
        } else {
            prop_assert_eq!(k, format!("{prefix}sha256:{}", sha256_hex(canonical.as_bytes())));
        }
        prop_assert!(key(DefaultKey::new(), &t).len() <= 200.max(prefix.len() + 7 + 64));
    }

    /// Non-finite floats anywhere in the arguments are a key error; finite ones never are.
    #[test]
    fn non_finite_floats_anywhere_are_key_errors(args in prop::collection::vec(
            prop::collection::btree_map("[a-c]", prop::collection::vec(prop::num::f64::ANY, 0..3), 0..3), 0..3)) {
        let all_finite = args.iter().flat_map(|m| m.values()).flatten().all(|f| f.is_finite());
        match key_result(&args) {
            Ok(_) => prop_assert!(all_finite),
            Err(kind) => prop_assert_eq!((kind, all_finite), (ErrorKind::Key, false)),
        }
    }

    /// Any text, any number type and any enum shape gives a key or a key error, never a panic.
    #[test]
    fn arbitrary_typed_arguments_never_panic(s in any::<String>(), c in any::<char>(),
                                             i in any::<i128>(), u in any::<u128>(),
                                             bytes in prop::collection::vec(any::<u8>(), 0..64),
                                             f in prop::num::f32::ANY, shape in 0u8..5,
                                             nested in prop::option::of(prop::option::of(any::<bool>()))) {
        #[derive(Serialize)]
        enum Shape<'a> { Unit, Newtype(&'a str), Tuple(i128, u128), Struct { f: f32, c: char }, Map(HashMap<&'a str, Vec<u8>>) }
        let shape = match shape {
            0 => Shape::Unit,
            1 => Shape::Newtype(&s),
            2 => Shape::Tuple(i, u),
            3 => Shape::Struct { f, c },
            _ => Shape::Map(HashMap::from([(s.as_str(), bytes.clone())])),
        };
        let result = key_result(&(&s, c, i, u, &bytes, nested, &shape));
        let finite = f.is_finite() || !matches!(shape, Shape::Struct { .. });
        match result {
            Ok(k) => prop_assert!(finite && k.starts_with("props::f|v1|"), "{}", k),
            Err(kind) => prop_assert_eq!((kind, finite), (ErrorKind::Key, false)),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Huge strings are hashed into a bounded key without trouble.
    #[test]
    fn huge_strings_give_bounded_keys(chunk in any::<String>(), times in 2_000usize..4_000) {
        let s = format!("{chunk}\u{0}\u{10ffff}").repeat(times);
        let k = key(DefaultKey::new(), &s);
        prop_assert!(k.starts_with("props::f|v1|sha256:") && k.len() == "props::f|v1|sha256:".len() + 64);
        prop_assert_eq!(canonical_json(&s).unwrap(), serde_json::to_string(&s).unwrap());
    }
}

fn key_result<A: Serialize>(args: &A) -> Result<String, ErrorKind> {
    KeyStrategy::<A>::key(&DefaultKey::new(), &SCOPE, args).map_err(|e| e.kind())
}

/// Deeply nested arguments (far deeper than serde_json accepts as input) still have a key.
#[test]
fn deep_nesting_has_a_key() {
    for depth in [64usize, 512] {
        let mut arr = Value::Null;
        let mut obj = Value::Null;
        for _ in 0..depth {
            arr = Value::Array(vec![arr]);
            obj = serde_json::json!({ "k": obj });
        }
        let k = key(DefaultKey::new(), &(&arr, &obj));
        assert!(k.contains("sha256:"), "{k}");
        let canonical = canonical_json(&arr).unwrap();
        assert_eq!(canonical.len(), depth * 2 + 4, "{depth}");
    }
}

/// A name or version drawn from characters that matter at the scope's boundaries.
fn scope_part() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-z|:N one\\[\\]\"\u{0}]{0,6}").expect("regex")
}

/// The key of `(name, version, custom part or args)` when the scope is accepted.
fn scoped_key(name: &str, version: Option<&str>, custom: Option<&str>, args: u8) -> Option<String> {
    let scope = KeyScope {
        name,
        version,
        shared: false,
    };
    scope.check().ok()?;
    Some(match custom {
        Some(part) => scope.custom(part.to_owned()),
        None => DefaultKey::new()
            .key(&scope, &args)
            .expect("a u8 has a key"),
    })
}

proptest! {
    /// Distinct (name, version, arguments) never give the same key: a name or version that
    /// could blur the `|` boundaries is refused instead.
    #[test]
    fn distinct_scopes_and_arguments_never_share_a_key(
        a in (scope_part(), proptest::option::of(scope_part()), proptest::option::of(scope_part()), 0u8..3),
        b in (scope_part(), proptest::option::of(scope_part()), proptest::option::of(scope_part()), 0u8..3),
    ) {
        let ka = scoped_key(&a.0, a.1.as_deref(), a.2.as_deref(), a.3);
        let kb = scoped_key(&b.0, b.1.as_deref(), b.2.as_deref(), b.3);
        if let (Some(ka), Some(kb)) = (ka, kb) {
            // A default key's arguments are a JSON array, never a custom part's text
            // unless the custom part spells that array: compare like with like.
            let same_kind = a.2.is_some() == b.2.is_some();
            if same_kind && a != b {
                prop_assert_ne!(ka, kb);
            }
        }
    }
}

#[test]
fn names_and_versions_that_blur_the_scope_are_refused() {
    let check = |name: &str, version: Option<&str>| {
        KeyScope {
            name,
            version,
            shared: false,
        }
        .check()
    };
    // The collision this rule prevents: both would be "f|x|None|[1]".
    assert!(check("f|x", None).is_err());
    assert!(check("f", Some("x|None")).is_err());
    assert!(
        check("f", Some("None")).is_err(),
        "None stands for no version"
    );
    assert!(check("", None).is_err());
    assert!(check("f", Some("")).is_err());
    assert!(check("nul\0", None).is_err());
    assert!(check(&"n".repeat(stent_core::key::MAX_NAME_LEN + 1), None).is_err());
    assert!(check("f", Some(&"v".repeat(stent_core::key::MAX_VERSION_LEN + 1))).is_err());
    for ok in [
        "billing::charge_customer",
        "emails.send",
        "ünïcödé 🦀",
        "a:b/c",
    ] {
        assert!(check(ok, Some("v2")).is_ok(), "{ok}");
        assert!(check(ok, None).is_ok(), "{ok}");
    }
    let e = check("f|x", None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert_eq!(
        e.to_string(),
        "config: function name \"f|x\" contains '|', which separates the parts of a key"
    );
}
