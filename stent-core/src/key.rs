//! Keys: how a call's arguments become the key its result is stored under.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::ser::{self, Error as _};
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};

/// Longest key the default strategy writes out in full; longer ones hash the arguments.
pub const DEFAULT_MAX_KEY_LEN: usize = 200;

/// Longest key a durable function stores as given, which every store holds; longer keys are
/// stored in their hashed form (see [`KeyScope::custom`]).
pub const PORTABLE_KEY_LEN: usize = 1024;

/// Longest function name [`Stent::durable`](crate::Stent::durable) accepts, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Longest version [`DurableBuilder::version`](crate::DurableBuilder::version) accepts, in bytes.
pub const MAX_VERSION_LEN: usize = 128;

/// How the hashed form of a key part starts: `sha256:` and 64 hex digits.
const HASHED: &str = "sha256:";

/// How a key spells "no version".
const NO_VERSION: &str = "None";

fn hashed(part: &[u8]) -> String {
    format!("{HASHED}{}", sha256_hex(part))
}

/// What a key is scoped to: the wrapped function's name and version.
#[derive(Clone, Copy, Debug)]
pub struct KeyScope<'a> {
    /// The stable name given to [`Stent::durable`](crate::Stent::durable).
    pub name: &'a str,
    /// The version, if one was set.
    pub version: Option<&'a str>,
    /// Whether custom keys skip scoping (see [`DurableBuilder::shared_key`](crate::DurableBuilder::shared_key)).
    pub shared: bool,
}

impl KeyScope<'_> {
    /// Checks that the scope reads back unambiguously from a key: the name and the version
    /// are not empty, not longer than [`MAX_NAME_LEN`] / [`MAX_VERSION_LEN`] bytes, and hold
    /// no `|` (which ends each of them in `{name}|{version}|…`) and no control character (a
    /// NUL cannot be stored everywhere); the version is not `None` ("no version" in a key).
    pub fn check(&self) -> Result<()> {
        check_part("function name", self.name, MAX_NAME_LEN)?;
        match self.version {
            Some(NO_VERSION) => Err(Error::config(
                "version \"None\" is refused: it is how keys spell \"no version\", so it \
                 would share keys with the unversioned function",
            )),
            Some(version) => check_part("version", version, MAX_VERSION_LEN),
            None => Ok(()),
        }
    }

    /// `{name}|{version or None}|{part}`, the shape of every scoped key.
    pub fn scoped(&self, part: &str) -> String {
        self.prefix(part.len()) + part
    }

    /// `{name}|{version or None}|`, with room for `spare` more bytes.
    fn prefix(&self, spare: usize) -> String {
        let version = self.version.unwrap_or(NO_VERSION);
        let mut key = String::with_capacity(self.name.len() + version.len() + 2 + spare);
        key.extend([self.name, "|", version, "|"]);
        key
    }

    /// `key` with its part after `{name}|{version}|` (all of a key without that scope) as
    /// `sha256:<hex>` of it, unless it is already hashed: the same key as
    /// [`DefaultKey::hashed`] makes from the same arguments.
    pub(crate) fn hashed(&self, mut key: String) -> String {
        let at = Some(self.prefix(0))
            .filter(|p| key.starts_with(p))
            .map_or(0, |p| p.len());
        if !key[at..].starts_with(HASHED) {
            let part = hashed(&key.as_bytes()[at..]);
            key.replace_range(at.., &part);
        }
        key
    }

    /// A custom key part as stored: scoped, unless the function opted into shared keys. The
    /// part is kept as given when the whole key is at most [`PORTABLE_KEY_LEN`] bytes, holds
    /// no NUL and the part does not start with `sha256:`; otherwise it becomes `sha256:<hex>`
    /// of its bytes, so every store holds the key and two different parts never share one.
    ///
    /// ```
    /// use stent_core::KeyScope;
    ///
    /// let scope = KeyScope { name: "f", version: None, shared: false };
    /// assert_eq!(scope.custom("order:1".into()), "f|None|order:1");
    /// assert!(scope.custom("x".repeat(2000)).starts_with("f|None|sha256:"));
    /// ```
    pub fn custom(&self, part: String) -> String {
        let scope = (!self.shared).then(|| self.prefix(part.len()));
        let scope = scope.unwrap_or_default();
        let fits = scope.len() + part.len() <= PORTABLE_KEY_LEN;
        if fits && !part.contains('\0') && !part.starts_with(HASHED) {
            // A shared key is the part itself, not a copy of it.
            if self.shared { part } else { scope + &part }
        } else {
            scope + &hashed(part.as_bytes())
        }
    }
}

/// What every scoped key of function `name` starts with, `{name}|`, or, of one version,
/// `{name}|{version}|`; a [`KeyScope::check`] error for a name or version no key can hold.
pub fn function_prefix(name: &str, version: Option<&str>) -> Result<String> {
    let scope = KeyScope {
        name,
        version,
        shared: false,
    };
    scope.check()?;
    Ok(version.map_or_else(|| format!("{name}|"), |_| scope.prefix(0)))
}

fn check_part(what: &str, value: &str, max: usize) -> Result<()> {
    let len = value.len();
    let message = if len > max {
        format!("{what} is {len} bytes long (at most {max})")
    } else if value.is_empty() {
        format!("{what} {value:?} is empty")
    } else if value.contains('|') {
        format!("{what} {value:?} contains '|', which separates the parts of a key")
    } else if let Some(c) = value.chars().find(|c| c.is_control()) {
        format!("{what} {value:?} contains the control character {c:?}")
    } else {
        return Ok(());
    };
    Err(Error::config(message))
}

/// Turns a call's arguments into the key its result is stored under.
///
/// Implemented by [`DefaultKey`] (the default) and by every closure
/// `Fn(&A) -> impl Into<String>`, whose result is scoped as `{name}|{version}|{custom}`
/// so two functions never read each other's results and a version bump still
/// invalidates (unless [`shared_key`](crate::DurableBuilder::shared_key) is set).
///
/// ```
/// use stent_core::{DefaultKey, KeyScope, KeyStrategy};
///
/// let scope = KeyScope { name: "emails::send_welcome_email", version: None, shared: false };
/// let key = DefaultKey::new().key(&scope, &("user-123",)).unwrap();
/// assert_eq!(key, r#"emails::send_welcome_email|None|["user-123"]"#);
///
/// let custom = |(order_id, _retry): &(String, u32)| format!("process_order:{order_id}");
/// let key = custom.key(&scope, &("o-1".to_string(), 3)).unwrap();
/// assert_eq!(key, "emails::send_welcome_email|None|process_order:o-1");
/// ```
pub trait KeyStrategy<A: ?Sized>: Send + Sync + 'static {
    /// The key for `args`, within `scope`.
    fn key(&self, scope: &KeyScope<'_>, args: &A) -> Result<String>;
}

impl<A: ?Sized, S: Into<String>, F: Fn(&A) -> S + Send + Sync + 'static> KeyStrategy<A> for F {
    fn key(&self, scope: &KeyScope<'_>, args: &A) -> Result<String> {
        Ok(scope.custom(self(args).into()))
    }
}

/// The default key: `{name}|{version or None}|{canonical JSON of the arguments}`.
///
/// The arguments are a positional JSON array ([`canonical_args`]); arguments without
/// [canonical JSON](canonical_json) are an [`ErrorKind::Key`] error. When the whole key would
/// be longer than the bound (default [`DEFAULT_MAX_KEY_LEN`] bytes, never more than
/// [`PORTABLE_KEY_LEN`]), the arguments part becomes `sha256:<hex>` of the canonical JSON.
/// [`DefaultKey::hashed`] always hashes, which keeps personal data out of keys and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultKey {
    max_len: usize,
}

impl Default for DefaultKey {
    fn default() -> Self {
        Self::max_len(DEFAULT_MAX_KEY_LEN)
    }
}

impl DefaultKey {
    /// The default: arguments in full up to [`DEFAULT_MAX_KEY_LEN`] bytes of key.
    pub fn new() -> Self {
        Self::default()
    }

    /// Always hash the arguments: `{name}|{version}|sha256:<hex>`.
    pub fn hashed() -> Self {
        Self::max_len(0)
    }

    /// Hash the arguments when the key would be longer than `max_len` bytes (or
    /// [`PORTABLE_KEY_LEN`], whichever is less).
    pub fn max_len(max_len: usize) -> Self {
        DefaultKey { max_len }
    }
}

impl<A: Serialize + ?Sized> KeyStrategy<A> for DefaultKey {
    fn key(&self, scope: &KeyScope<'_>, args: &A) -> Result<String> {
        // One buffer: the scope, then the canonical arguments written after it.
        let mut key = scope.prefix(64).into_bytes();
        let prefix = key.len();
        serde_json::to_writer(&mut key, &tree(args, true)?).map_err(KeyErr::custom)?;
        if key.len() > self.max_len.min(PORTABLE_KEY_LEN) {
            let part = hashed(&key[prefix..]);
            key.splice(prefix.., part.into_bytes());
        }
        Ok(String::from_utf8(key).map_err(KeyErr::custom)?)
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The canonical JSON of a value: serde_json's compact JSON with object keys sorted by
/// their UTF-8 bytes, so it depends neither on map insertion order nor on serde_json's
/// `preserve_order` feature. Map keys are strings (as are chars and unit enum variants) or
/// integers and bools spelled as strings; an `f32` is written as the `f64` it converts to.
/// A NaN or infinite float, two entries with one key, or a map key of another type is an
/// [`ErrorKind::Key`] error, never a silent fallback.
///
/// ```
/// let m = std::collections::HashMap::from([("b", 1.5), ("a", 2.0)]);
/// assert_eq!(stent_core::key::canonical_json(&m).unwrap(), r#"{"a":2.0,"b":1.5}"#);
/// ```
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    Ok(serde_json::to_string(&tree(value, false)?).map_err(KeyErr::custom)?)
}

/// The [canonical JSON](canonical_json) of a call's arguments, as a positional array: a
/// tuple gives its elements, `()` gives `[]`, any other value `v` gives `[v]`.
pub fn canonical_args<T: Serialize + ?Sized>(args: &T) -> Result<String> {
    Ok(serde_json::to_string(&tree(args, true)?).map_err(KeyErr::custom)?)
}

/// Whether `value` holds a NaN or an infinite float, which JSON cannot represent.
pub(crate) fn has_non_finite_float<T: Serialize + ?Sized>(value: &T) -> bool {
    matches!(value.serialize(Canon), Err(KeyErr::NonFinite(_)))
}

/// The [`Json`] of `value`; `args` makes it a positional array.
fn tree<T: Serialize + ?Sized>(value: &T, args: bool) -> Res {
    Ok(match value.serialize(Canon)? {
        json if !args => json,
        Json::Unit => Json::Tuple(Vec::new()),
        Json::Tuple(elements) => Json::Tuple(elements),
        json => Json::Array(vec![json]),
    })
}

/// Why a value has no canonical JSON.
#[derive(Debug, thiserror::Error)]
enum KeyErr {
    #[error("non-finite float {0} has no JSON form")]
    NonFinite(f64),
    #[error("{0}")]
    Other(String),
}

impl ser::Error for KeyErr {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        KeyErr::Other(msg.to_string())
    }
}

impl From<KeyErr> for Error {
    fn from(e: KeyErr) -> Self {
        let message = format!("arguments cannot be turned into a key: {e}");
        Error::new(ErrorKind::Key, message)
    }
}

type Res<T = Json> = std::result::Result<T, KeyErr>;

/// A value as canonical JSON holds it, written out by serde_json (each variant as its
/// content): every float finite, every object's entries sorted by their keys' UTF-8 bytes.
#[derive(Serialize)]
#[serde(untagged)]
enum Json {
    Null,
    /// `()`: `null`, or no arguments at all.
    Unit,
    Bool(bool),
    Int(i128),
    Uint(u128),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    /// A tuple: an array, or the arguments themselves.
    Tuple(Vec<Json>),
    Object(BTreeMap<String, Json>),
}

/// `json`, or `{"variant":json}` for an enum variant's content.
fn tagged(variant: Option<&str>, json: Json) -> Json {
    match variant {
        Some(variant) => Json::Object(BTreeMap::from([(variant.to_owned(), json)])),
        None => json,
    }
}

/// The serializer of a value's [`Json`], which refuses what JSON cannot hold.
struct Canon;

/// Serializer methods, one a line: `name(arguments) -> output = body`.
macro_rules! methods {
    ($($method:ident $(<$t:ident>)? ($($arg:tt: $ty:ty),*) -> $out:ty = $body:expr;)*) => {$(
        fn $method$(<$t: Serialize + ?Sized>)?(self, $($arg: $ty),*) -> Res<$out> {
            $body
        }
    )*};
}

/// Serializer methods that make `Json::$json` of their argument.
macro_rules! scalars {
    ($($method:ident($ty:ty) => $json:ident),*) => {
        methods! { $($method(v: $ty) -> Json = Ok(Json::$json(v.into()));)* }
    };
}

impl ser::Serializer for Canon {
    type Ok = Json;
    type Error = KeyErr;
    type SerializeSeq = Compound;
    type SerializeTuple = Compound;
    type SerializeTupleStruct = Compound;
    type SerializeTupleVariant = Compound;
    type SerializeMap = Compound;
    type SerializeStruct = Compound;
    type SerializeStructVariant = Compound;

    scalars!(serialize_bool(bool) => Bool, serialize_i8(i8) => Int, serialize_i16(i16) => Int,
        serialize_i32(i32) => Int, serialize_i64(i64) => Int, serialize_i128(i128) => Int,
        serialize_u8(u8) => Uint, serialize_u16(u16) => Uint, serialize_u32(u32) => Uint,
        serialize_u64(u64) => Uint, serialize_u128(u128) => Uint, serialize_char(char) => Str,
        serialize_str(&str) => Str);
    methods! {
        serialize_f32(v: f32) -> Json = Canon.serialize_f64(v.into());
        serialize_f64(v: f64) -> Json =
            if v.is_finite() { Ok(Json::Float(v)) } else { Err(KeyErr::NonFinite(v)) };
        serialize_bytes(v: &[u8]) -> Json = Canon.collect_seq(v);
        serialize_none() -> Json = Ok(Json::Null);
        serialize_some<T>(value: &T) -> Json = value.serialize(Canon);
        serialize_unit() -> Json = Ok(Json::Unit);
        serialize_unit_struct(_: &str) -> Json = Ok(Json::Null);
        serialize_unit_variant(_: &str, _: u32, v: &str) -> Json = Ok(Json::Str(v.into()));
        serialize_newtype_struct<T>(_: &str, value: &T) -> Json = value.serialize(Canon);
        serialize_newtype_variant<T>(_: &str, _: u32, variant: &str, value: &T) -> Json =
            Ok(tagged(Some(variant), value.serialize(Canon)?));
        serialize_seq(_: Option<usize>) -> Compound = Compound::open(Some(Json::Array), None);
        serialize_tuple(_: usize) -> Compound = Compound::open(Some(Json::Tuple), None);
        serialize_tuple_struct(_: &str, _: usize) -> Compound =
            Compound::open(Some(Json::Array), None);
        serialize_tuple_variant(_: &str, _: u32, v: &'static str, _: usize) -> Compound =
            Compound::open(Some(Json::Array), Some(v));
        serialize_map(_: Option<usize>) -> Compound = Compound::open(None, None);
        serialize_struct(_: &str, _: usize) -> Compound = Compound::open(None, None);
        serialize_struct_variant(_: &str, _: u32, v: &'static str, _: usize) -> Compound =
            Compound::open(None, Some(v));
    }
}

/// An array, tuple or object being filled, inside `{"variant":…}` for an enum variant's
/// content. An object's keys are checked and its entries sorted once all have come, so
/// that a non-finite float in any of them is the error.
struct Compound {
    /// Makes the array (`Json::Array` or `Json::Tuple`) of the values; `None` for an object.
    seq: Option<fn(Vec<Json>) -> Json>,
    variant: Option<&'static str>,
    keys: Vec<Json>,
    values: Vec<Json>,
}

impl Compound {
    fn open(seq: Option<fn(Vec<Json>) -> Json>, variant: Option<&'static str>) -> Res<Self> {
        Ok(Compound {
            seq,
            variant,
            keys: Vec::new(),
            values: Vec::new(),
        })
    }

    fn finish(self) -> Res {
        let json = match self.seq {
            Some(seq) => seq(self.values),
            None if self.keys.len() != self.values.len() => {
                return Err(KeyErr::custom("a map entry lacks its key or its value"));
            }
            None => {
                let mut entries = BTreeMap::new();
                for (key, value) in self.keys.into_iter().zip(self.values) {
                    // As JSON writes a key: a string, or an integer or bool spelled as one.
                    let key = match key {
                        Json::Str(key) => key,
                        Json::Bool(b) => b.to_string(),
                        Json::Int(i) => i.to_string(),
                        Json::Uint(u) => u.to_string(),
                        _ => return Err(KeyErr::custom("map keys are strings, integers or bools")),
                    };
                    if entries.contains_key(&key) {
                        return Err(KeyErr::custom(format!("duplicate map key {key:?}")));
                    }
                    entries.insert(key, value);
                }
                Json::Object(entries)
            }
        };
        Ok(tagged(self.variant, json))
    }
}

/// Implements serde's traits for filling a [`Compound`]: each method adds its argument to
/// the keys or the values (a struct field's name to the keys, then its value).
macro_rules! compound {
    ($($tr:ident: $($method:ident($($field:ident)?) => $into:ident),+;)*) => {$(
        impl ser::$tr for Compound {
            type Ok = Json;
            type Error = KeyErr;
            $(fn $method<T: Serialize + ?Sized>(&mut self, $($field: &'static str,)? value: &T) -> Res<()> {
                $(self.keys.push(Json::Str($field.to_owned()));)?
                self.$into.push(value.serialize(Canon)?);
                Ok(())
            })+
            fn end(self) -> Res {
                self.finish()
            }
        }
    )*};
}

compound! {
    SerializeSeq: serialize_element() => values;
    SerializeTuple: serialize_element() => values;
    SerializeTupleStruct: serialize_field() => values;
    SerializeTupleVariant: serialize_field() => values;
    SerializeMap: serialize_key() => keys, serialize_value() => values;
    SerializeStruct: serialize_field(key) => values;
    SerializeStructVariant: serialize_field(key) => values;
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        // Specials at every offset of an eight-byte word, among multi-byte characters.
        let pieces = [
            "a", "\"", "\\", "\n", "\u{1}", "\u{1f}", " ", "\u{7f}", "é", "€", "𝄞", "\t",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for len in 0..200 {
            let mut s = String::new();
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                s.push_str(pieces[(state % pieces.len() as u64) as usize]);
            }
            let out = canonical_json(&s).unwrap();
            assert_eq!(out, serde_json::to_string(&s).unwrap(), "{s:?}");
        }
    }

    fn scope() -> KeyScope<'static> {
        KeyScope {
            name: "f",
            version: None,
            shared: false,
        }
    }

    #[test]
    fn positional_args_follow_the_seed_format() {
        assert_eq!(canonical_args(&()).unwrap(), "[]");
        assert_eq!(canonical_args(&"user-123").unwrap(), r#"["user-123"]"#);
        assert_eq!(canonical_args(&("o", 5u64)).unwrap(), r#"["o",5]"#);
        assert_eq!(canonical_args(&vec![1, 2]).unwrap(), "[[1,2]]");
        assert_eq!(canonical_args(&Some(3)).unwrap(), "[3]");
        assert_eq!(canonical_args(&None::<u8>).unwrap(), "[null]");
    }

    #[test]
    fn canonical_json_sorts_keys_and_escapes() {
        #[derive(Serialize)]
        struct S {
            z: u8,
            a: &'static str,
            m: HashMap<String, bool>,
        }
        let mut m = HashMap::new();
        m.insert("y".to_string(), true);
        m.insert("x".to_string(), false);
        let s = S {
            z: 1,
            a: "q\"\n\u{1}é",
            m,
        };
        assert_eq!(
            canonical_json(&s).unwrap(),
            r#"{"a":"q\"\n\u0001é","m":{"x":false,"y":true},"z":1}"#
        );
        let expected = serde_json::to_string(&serde_json::json!({"a": "q\"\n\u{1}é"})).unwrap();
        assert_eq!(
            canonical_json(&BTreeMap::from([("a", "q\"\n\u{1}é")])).unwrap(),
            expected
        );
    }

    #[test]
    fn unencodable_args_are_key_errors() {
        assert_eq!(
            canonical_args(&f64::NAN).unwrap_err().kind(),
            ErrorKind::Key
        );
        assert_eq!(
            canonical_args(&(1, f32::INFINITY)).unwrap_err().kind(),
            ErrorKind::Key
        );
        let m = HashMap::from([((1, 2), "v")]);
        assert_eq!(canonical_args(&m).unwrap_err().kind(), ErrorKind::Key);
    }

    /// serde_json writes a map with a float key and a NaN value as `{"1.5":null}`: the
    /// codec's check still finds the NaN behind the key canonical JSON refuses.
    #[test]
    fn a_non_finite_float_is_found_behind_a_refused_map_key() {
        struct FloatKey;
        impl Serialize for FloatKey {
            fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                use ser::SerializeMap;
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry(&1.5, &f64::NAN)?;
                map.end()
            }
        }
        assert!(has_non_finite_float(&FloatKey));
        let e = crate::codec::encode_value(&FloatKey).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Encode);
        assert_eq!(
            canonical_json(&FloatKey).unwrap_err().kind(),
            ErrorKind::Key
        );
    }

    #[test]
    fn long_args_are_hashed_past_the_bound() {
        let long = "x".repeat(500);
        let key = DefaultKey::new().key(&scope(), &long).unwrap();
        assert!(key.starts_with("f|None|sha256:"), "{key}");
        assert_eq!(key.len(), "f|None|sha256:".len() + 64);
        let key = DefaultKey::hashed().key(&scope(), &"a").unwrap();
        assert_eq!(key, format!("f|None|sha256:{}", sha256_hex(br#"["a"]"#)));
    }

    #[test]
    fn sha256_hex_is_the_lower_case_digest() {
        // FIPS 180-2's test vectors: the keys of every release depend on these digits.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn scopes_are_checked_and_prefixed() {
        let ok = KeyScope {
            version: Some("v2"),
            ..scope()
        };
        assert!(ok.check().is_ok());
        let bar = KeyScope {
            name: "f|x",
            ..scope()
        };
        assert!(bar.check().unwrap_err().to_string().contains("'|'"));
        assert_eq!(
            function_prefix("fx::rates", Some("v2")).unwrap(),
            "fx::rates|v2|"
        );
        assert!(canonical_json(&f64::NAN).is_err());
        let none = KeyScope {
            version: Some("None"),
            ..scope()
        };
        assert!(none.check().is_err());
        assert_eq!(function_prefix("fx::rates", None).unwrap(), "fx::rates|");
        let nul = scope().custom("nul\0byte".into());
        assert!(nul.starts_with("f|None|sha256:"), "{nul}");
    }

    #[test]
    fn custom_keys_are_scoped_unless_shared() {
        let f = |id: &String| format!("corr:{id}");
        assert_eq!(f.key(&scope(), &"1".to_string()).unwrap(), "f|None|corr:1");
        let shared = KeyScope {
            shared: true,
            ..scope()
        };
        assert_eq!(f.key(&shared, &"1".to_string()).unwrap(), "corr:1");
    }
}
