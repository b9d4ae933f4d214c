//! Arguments shaped by the fuzzer (any text, any float, duplicate and unordered map
//! entries, deep nesting) become a key or a `Key` error, never a panic; the canonical
//! form is sorted compact JSON, independent of map order.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq};
use stent_core::key::{canonical_args, canonical_json, sha256_hex};
use stent_core::{DefaultKey, ErrorKind, KeyScope, KeyStrategy};

const VARIANTS: [&str; 3] = ["Charge", "Refund", "Über"];

#[derive(Arbitrary, Clone, Debug)]
enum Tree {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    I128(i128),
    F64(f64),
    Str(String),
    Char(char),
    Bytes(Vec<u8>),
    Some(Box<Tree>),
    Unit(u8),
    Newtype(u8, Box<Tree>),
    Arr(Vec<Tree>),
    Obj(Vec<(String, Tree)>),
    IntMap(Vec<(i64, Tree)>),
}

impl Serialize for Tree {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Tree::Null => s.serialize_unit(),
            Tree::Bool(b) => s.serialize_bool(*b),
            Tree::I64(i) => s.serialize_i64(*i),
            Tree::U64(u) => s.serialize_u64(*u),
            Tree::I128(i) => s.serialize_i128(*i),
            Tree::F64(f) => s.serialize_f64(*f),
            Tree::Str(v) => s.serialize_str(v),
            Tree::Char(c) => s.serialize_char(*c),
            Tree::Bytes(b) => s.serialize_bytes(b),
            Tree::Some(t) => s.serialize_some(t),
            Tree::Unit(i) => {
                let i = usize::from(*i) % VARIANTS.len();
                s.serialize_unit_variant("E", i as u32, VARIANTS[i])
            }
            Tree::Newtype(i, t) => {
                let i = usize::from(*i) % VARIANTS.len();
                s.serialize_newtype_variant("E", i as u32, VARIANTS[i], t)
            }
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
            Tree::IntMap(entries) => {
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
    /// Whether JSON can express it: finite floats, no two entries of a map with one key.
    fn encodable(&self) -> bool {
        fn unique(mut keys: impl Iterator<Item = String>) -> bool {
            let mut seen = std::collections::HashSet::new();
            keys.all(|k| seen.insert(k))
        }
        match self {
            Tree::F64(f) => f.is_finite(),
            Tree::Some(t) | Tree::Newtype(_, t) => t.encodable(),
            Tree::Arr(items) => items.iter().all(Tree::encodable),
            Tree::Obj(entries) => {
                unique(entries.iter().map(|(k, _)| k.clone()))
                    && entries.iter().all(|(_, v)| v.encodable())
            }
            Tree::IntMap(entries) => {
                unique(entries.iter().map(|(k, _)| k.to_string()))
                    && entries.iter().all(|(_, v)| v.encodable())
            }
            _ => true,
        }
    }

    /// The same value with every map's entries sorted the way canonical JSON sorts them.
    fn sorted(&self) -> Tree {
        match self {
            Tree::Some(t) => Tree::Some(Box::new(t.sorted())),
            Tree::Newtype(i, t) => Tree::Newtype(*i, Box::new(t.sorted())),
            Tree::Arr(items) => Tree::Arr(items.iter().map(Tree::sorted).collect()),
            Tree::Obj(entries) => {
                let mut entries: Vec<_> = entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.sorted()))
                    .collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Tree::Obj(entries)
            }
            Tree::IntMap(entries) => {
                let mut entries: Vec<_> = entries.iter().map(|(k, v)| (*k, v.sorted())).collect();
                entries.sort_by_key(|(k, _)| k.to_string());
                Tree::IntMap(entries)
            }
            leaf => leaf.clone(),
        }
    }

    /// The same value with every map's entries reversed.
    fn reversed(&self) -> Tree {
        match self {
            Tree::Some(t) => Tree::Some(Box::new(t.reversed())),
            Tree::Newtype(i, t) => Tree::Newtype(*i, Box::new(t.reversed())),
            Tree::Arr(items) => Tree::Arr(items.iter().map(Tree::reversed).collect()),
            Tree::Obj(entries) => Tree::Obj(
                entries
                    .iter()
                    .rev()
                    .map(|(k, v)| (k.clone(), v.reversed()))
                    .collect(),
            ),
            Tree::IntMap(entries) => Tree::IntMap(
                entries
                    .iter()
                    .rev()
                    .map(|(k, v)| (*k, v.reversed()))
                    .collect(),
            ),
            leaf => leaf.clone(),
        }
    }
}

fuzz_target!(|tree: Tree| {
    let scope = KeyScope {
        name: "fuzz::f",
        version: None,
        shared: false,
    };
    let canonical = canonical_json(&tree);
    let key = DefaultKey::new().key(&scope, &tree);
    let hashed = DefaultKey::hashed().key(&scope, &tree);
    if !tree.encodable() {
        for e in [
            canonical.unwrap_err(),
            key.unwrap_err(),
            hashed.unwrap_err(),
        ] {
            assert_eq!(e.kind(), ErrorKind::Key, "{e}");
        }
        return;
    }
    let canonical = canonical.expect("an encodable value has a canonical form");
    // Sorted compact JSON: what serde_json writes once every map is sorted.
    assert_eq!(canonical, serde_json::to_string(&tree.sorted()).unwrap());
    assert_eq!(
        canonical_json(&tree.reversed()).unwrap(),
        canonical,
        "map order"
    );
    let args = canonical_args(&tree).unwrap();
    let as_hash = format!("fuzz::f|None|sha256:{}", sha256_hex(args.as_bytes()));
    let key = key.unwrap();
    assert!(
        key == format!("fuzz::f|None|{args}") || key == as_hash,
        "{key}"
    );
    assert_eq!(hashed.unwrap(), as_hash);
});
