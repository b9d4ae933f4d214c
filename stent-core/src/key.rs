//! Keys: how a call's arguments become the key its result is stored under.

use std::fmt::Write as _;

use serde::Serialize;
use serde::ser::{self, Impossible};
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};

/// Longest key the default strategy writes out in full; longer ones hash the arguments.
pub const DEFAULT_MAX_KEY_LEN: usize = 200;

/// Longest key a durable function stores as given: every store holds keys of this length,
/// so a key that works on one store works on all of them. Longer keys are stored in their
/// hashed form (see [`KeyScope::custom`]).
pub const PORTABLE_KEY_LEN: usize = 1024;

/// Longest function name [`Stent::durable`](crate::Stent::durable) accepts, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Longest version [`DurableBuilder::version`](crate::DurableBuilder::version) accepts, in bytes.
pub const MAX_VERSION_LEN: usize = 128;

/// How the arguments part of a hashed key starts: `sha256:` and 64 hex digits follow the scope.
const HASHED: &str = "sha256:";

/// How a key spells "no version".
const NO_VERSION: &str = "None";

/// Appends the hashed form of a key part, `sha256:<hex>` of `part`.
fn push_hashed(key: &mut String, part: &[u8]) {
    key.push_str(HASHED);
    key.push_str(&sha256_hex(part));
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
    /// hold no `|` (which ends each of them in `{name}|{version}|…`), no control character
    /// (a NUL cannot be stored everywhere), are not empty and not longer than
    /// [`MAX_NAME_LEN`] / [`MAX_VERSION_LEN`] bytes, and the version is not `None` (the word
    /// that stands for "no version").
    ///
    /// ```
    /// use stent_core::KeyScope;
    ///
    /// let ok = KeyScope { name: "billing::charge", version: Some("v2"), shared: false };
    /// assert!(ok.check().is_ok());
    /// let bad = KeyScope { name: "f|x", version: None, shared: false };
    /// assert!(bad.check().unwrap_err().to_string().contains("'|'"));
    /// let bad = KeyScope { name: "f", version: Some("None"), shared: false };
    /// assert!(bad.check().is_err());
    /// ```
    pub fn check(&self) -> Result<()> {
        check_part("function name", self.name, MAX_NAME_LEN)?;
        if let Some(version) = self.version {
            check_part("version", version, MAX_VERSION_LEN)?;
            if version == NO_VERSION {
                return Err(Error::config(
                    "version \"None\" is refused: it is how keys spell \"no version\", so it \
                     would share keys with the unversioned function",
                ));
            }
        }
        Ok(())
    }

    /// `{name}|{version or None}|{part}`, the shape of every scoped key.
    pub fn scoped(&self, part: &str) -> String {
        let version = self.version.unwrap_or(NO_VERSION);
        let mut key = String::with_capacity(self.name.len() + version.len() + part.len() + 2);
        key.push_str(self.name);
        key.push('|');
        key.push_str(version);
        key.push('|');
        key.push_str(part);
        key
    }

    /// A custom key part as stored: scoped, unless the function opted into shared keys.
    ///
    /// The part is stored as given when the whole key is at most [`PORTABLE_KEY_LEN`]
    /// bytes, holds no NUL and the part does not start with `sha256:`; otherwise the part
    /// becomes `sha256:<hex>` of its bytes, so every store holds the key and two different
    /// parts never share one.
    ///
    /// ```
    /// use stent_core::KeyScope;
    ///
    /// let scope = KeyScope { name: "f", version: None, shared: false };
    /// assert_eq!(scope.custom("order:1".into()), "f|None|order:1");
    /// assert!(scope.custom("x".repeat(2000)).starts_with("f|None|sha256:"));
    /// assert!(scope.custom("nul\0byte".into()).starts_with("f|None|sha256:"));
    /// ```
    pub fn custom(&self, part: String) -> String {
        let mut key = if self.shared {
            String::new()
        } else {
            self.scoped("")
        };
        if key.len() + part.len() > PORTABLE_KEY_LEN
            || part.contains('\0')
            || part.starts_with(HASHED)
        {
            push_hashed(&mut key, part.as_bytes());
        } else if self.shared {
            return part;
        } else {
            key.push_str(&part);
        }
        key
    }
}

fn check_part(what: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(Error::config(format!(
            "{what} is {} bytes long (at most {max})",
            value.len()
        )));
    }
    let problem = if value.is_empty() {
        "is empty".to_owned()
    } else if value.contains('|') {
        "contains '|', which separates the parts of a key".to_owned()
    } else if let Some(c) = value.chars().find(|c| c.is_control()) {
        format!("contains the control character {c:?}")
    } else {
        return Ok(());
    };
    Err(Error::config(format!("{what} {value:?} {problem}")))
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

impl<A, F, S> KeyStrategy<A> for F
where
    A: ?Sized,
    F: Fn(&A) -> S + Send + Sync + 'static,
    S: Into<String>,
{
    fn key(&self, scope: &KeyScope<'_>, args: &A) -> Result<String> {
        Ok(scope.custom(self(args).into()))
    }
}

/// The default key: `{name}|{version or None}|{canonical JSON of the arguments}`.
///
/// The arguments are written as a JSON array of positional arguments: a tuple gives its
/// elements, `()` gives `[]`, any other value `v` gives `[v]`. Canonical means object keys
/// sorted by their UTF-8 bytes and no whitespace, so the key does not depend on map
/// insertion order. Non-finite floats and map keys that JSON cannot express are a
/// [`ErrorKind::Key`] error, never a silent fallback.
///
/// When the whole key would be longer than the bound (default
/// [`DEFAULT_MAX_KEY_LEN`] bytes, never more than [`PORTABLE_KEY_LEN`]), the arguments part becomes `sha256:<hex>` of the
/// canonical JSON. [`DefaultKey::hashed`] always hashes, which keeps personal data out
/// of keys and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultKey {
    max_len: usize,
}

impl Default for DefaultKey {
    fn default() -> Self {
        DefaultKey {
            max_len: DEFAULT_MAX_KEY_LEN,
        }
    }
}

impl DefaultKey {
    /// The default: arguments in full up to [`DEFAULT_MAX_KEY_LEN`] bytes of key.
    pub fn new() -> Self {
        Self::default()
    }

    /// Always hash the arguments: `{name}|{version}|sha256:<hex>`.
    pub fn hashed() -> Self {
        DefaultKey { max_len: 0 }
    }

    /// Hash the arguments when the key would be longer than `max_len` bytes (or
    /// [`PORTABLE_KEY_LEN`], whichever is less).
    pub fn max_len(max_len: usize) -> Self {
        DefaultKey { max_len }
    }
}

impl<A: Serialize + ?Sized> KeyStrategy<A> for DefaultKey {
    fn key(&self, scope: &KeyScope<'_>, args: &A) -> Result<String> {
        // One buffer: the scope, then the canonical JSON written after it.
        let version = scope.version.unwrap_or(NO_VERSION);
        let mut key = String::with_capacity(scope.name.len() + version.len() + 2 + 48);
        key.push_str(scope.name);
        key.push('|');
        key.push_str(version);
        key.push('|');
        let prefix = key.len();
        args.serialize(Canon {
            out: &mut key,
            top: true,
        })
        .map_err(Error::from)?;
        if key.len() > self.max_len.min(PORTABLE_KEY_LEN) {
            let args = key.split_off(prefix);
            push_hashed(&mut key, args.as_bytes());
        }
        Ok(key)
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(2 * digest.len());
    for b in digest {
        hex.push(char::from(DIGITS[usize::from(b >> 4)]));
        hex.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    hex
}

/// The canonical JSON of a value: object keys sorted, no whitespace.
///
/// ```
/// use std::collections::HashMap;
/// let mut m = HashMap::new();
/// m.insert("b", 1.5);
/// m.insert("a", 2.0);
/// assert_eq!(stent_core::key::canonical_json(&m).unwrap(), r#"{"a":2.0,"b":1.5}"#);
/// assert!(stent_core::key::canonical_json(&f64::NAN).is_err());
/// ```
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    Ok(canon(value, false)?)
}

/// Canonical JSON of `value`; `top` writes a call's arguments as a positional array.
fn canon<T: Serialize + ?Sized>(value: &T, top: bool) -> std::result::Result<String, KeyErr> {
    let mut out = String::with_capacity(32);
    value.serialize(Canon { out: &mut out, top })?;
    Ok(out)
}

/// How the error of a NaN or infinite float starts.
const NON_FINITE: &str = "non-finite float";

/// Whether `value` holds a NaN or an infinite float, which JSON cannot represent.
pub(crate) fn has_non_finite_float<T: Serialize + ?Sized>(value: &T) -> bool {
    matches!(canon(value, false), Err(KeyErr(msg)) if msg.starts_with(NON_FINITE))
}

/// The canonical JSON of a call's arguments, as a positional array (see [`DefaultKey`]).
pub fn canonical_args<T: Serialize + ?Sized>(args: &T) -> Result<String> {
    Ok(canon(args, true)?)
}

/// The error of canonical serialization, turned into [`ErrorKind::Key`].
#[derive(Debug)]
struct KeyErr(String);

impl std::fmt::Display for KeyErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyErr {}

impl ser::Error for KeyErr {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        KeyErr(msg.to_string())
    }
}

impl From<KeyErr> for Error {
    fn from(e: KeyErr) -> Self {
        Error::new(
            ErrorKind::Key,
            format!("arguments cannot be turned into a key: {}", e.0),
        )
    }
}

/// Whether any of the eight bytes in `w` must be escaped in a JSON string: below 0x20,
/// `"` or `\`. Exact for the whole word (the usual has-zero-byte expressions), so plain text
/// is skipped eight bytes at a time; bytes of multi-byte characters are never special.
fn needs_escape(w: u64) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let control = w.wrapping_sub(LO * 0x20) & !w & HI;
    let quote = w ^ (LO * u64::from(b'"'));
    let quote = quote.wrapping_sub(LO) & !quote & HI;
    let backslash = w ^ (LO * u64::from(b'\\'));
    let backslash = backslash.wrapping_sub(LO) & !backslash & HI;
    (control | quote | backslash) != 0
}

fn write_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8)
            && let Ok(word) = <[u8; 8]>::try_from(chunk)
            && !needs_escape(u64::from_le_bytes(word))
        {
            i += 8;
            continue;
        }
        let b = bytes[i];
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => {
                i += 1;
                continue;
            }
        };
        // `i` is at an ASCII byte, so both slices end on character boundaries.
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        i += 1;
        start = i;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Writes canonical JSON into `out`. `top` marks the call's argument value, written as a
/// positional array.
struct Canon<'a> {
    out: &'a mut String,
    top: bool,
}

impl<'a> Canon<'a> {
    fn nested(out: &'a mut String) -> Self {
        Canon { out, top: false }
    }

    /// Wraps a scalar top-level argument as `[v]`.
    fn scalar(self, write: impl FnOnce(&mut String)) -> std::result::Result<(), KeyErr> {
        if self.top {
            self.out.push('[');
            write(self.out);
            self.out.push(']');
        } else {
            write(self.out);
        }
        Ok(())
    }

    fn float(self, v: f64) -> std::result::Result<(), KeyErr> {
        match serde_json::Number::from_f64(v) {
            Some(n) => self.scalar(|o| {
                let _ = write!(o, "{n}");
            }),
            None => Err(KeyErr(format!("{NON_FINITE} {v} has no JSON form"))),
        }
    }
}

macro_rules! int_method {
    ($($name:ident: $ty:ty),*) => {$(
        fn $name(self, v: $ty) -> std::result::Result<(), KeyErr> {
            self.scalar(|o| { let _ = write!(o, "{v}"); })
        }
    )*};
}

impl<'a> ser::Serializer for Canon<'a> {
    type Ok = ();
    type Error = KeyErr;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = Seq<'a>;
    type SerializeMap = Obj<'a>;
    type SerializeStruct = Obj<'a>;
    type SerializeStructVariant = Obj<'a>;

    int_method!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128);

    fn serialize_bool(self, v: bool) -> std::result::Result<(), KeyErr> {
        self.scalar(|o| o.push_str(if v { "true" } else { "false" }))
    }
    fn serialize_f32(self, v: f32) -> std::result::Result<(), KeyErr> {
        self.float(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> std::result::Result<(), KeyErr> {
        self.float(v)
    }
    fn serialize_char(self, v: char) -> std::result::Result<(), KeyErr> {
        self.scalar(|o| write_str(o, v.encode_utf8(&mut [0; 4])))
    }
    fn serialize_str(self, v: &str) -> std::result::Result<(), KeyErr> {
        self.scalar(|o| write_str(o, v))
    }
    fn serialize_bytes(self, v: &[u8]) -> std::result::Result<(), KeyErr> {
        self.scalar(|o| {
            o.push('[');
            for (i, b) in v.iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                let _ = write!(o, "{b}");
            }
            o.push(']');
        })
    }
    fn serialize_none(self) -> std::result::Result<(), KeyErr> {
        self.scalar(|o| o.push_str("null"))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> std::result::Result<(), KeyErr> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> std::result::Result<(), KeyErr> {
        if self.top {
            self.out.push_str("[]");
            Ok(())
        } else {
            self.scalar(|o| o.push_str("null"))
        }
    }
    fn serialize_unit_struct(self, _name: &'static str) -> std::result::Result<(), KeyErr> {
        self.scalar(|o| o.push_str("null"))
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> std::result::Result<(), KeyErr> {
        self.scalar(|o| write_str(o, variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> std::result::Result<(), KeyErr> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> std::result::Result<(), KeyErr> {
        let mut inner = String::new();
        value.serialize(Canon::nested(&mut inner))?;
        self.scalar(|o| {
            o.push('{');
            write_str(o, variant);
            o.push(':');
            o.push_str(&inner);
            o.push('}');
        })
    }
    fn serialize_seq(self, _len: Option<usize>) -> std::result::Result<Seq<'a>, KeyErr> {
        Ok(Seq::open(self.out, self.top, None))
    }
    fn serialize_tuple(self, _len: usize) -> std::result::Result<Seq<'a>, KeyErr> {
        // A tuple at the top is the positional argument list itself.
        Ok(Seq::open(self.out, false, None))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> std::result::Result<Seq<'a>, KeyErr> {
        Ok(Seq::open(self.out, self.top, None))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> std::result::Result<Seq<'a>, KeyErr> {
        Ok(Seq::open(self.out, self.top, Some(variant)))
    }
    fn serialize_map(self, _len: Option<usize>) -> std::result::Result<Obj<'a>, KeyErr> {
        Ok(Obj::open(self.out, self.top, None))
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> std::result::Result<Obj<'a>, KeyErr> {
        Ok(Obj::open(self.out, self.top, None))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> std::result::Result<Obj<'a>, KeyErr> {
        Ok(Obj::open(self.out, self.top, Some(variant)))
    }
}

/// Opens `[v]` wrapping and `{"Variant":` wrapping, and closes them in reverse.
fn open_wrappers(out: &mut String, top: bool, variant: Option<&str>) {
    if top {
        out.push('[');
    }
    if let Some(variant) = variant {
        out.push('{');
        write_str(out, variant);
        out.push(':');
    }
}

fn close_wrappers(out: &mut String, top: bool, variant: Option<&str>) {
    if variant.is_some() {
        out.push('}');
    }
    if top {
        out.push(']');
    }
}

struct Seq<'a> {
    out: &'a mut String,
    top: bool,
    variant: Option<&'static str>,
    first: bool,
}

impl<'a> Seq<'a> {
    fn open(out: &'a mut String, top: bool, variant: Option<&'static str>) -> Self {
        open_wrappers(out, top, variant);
        out.push('[');
        Seq {
            out,
            top,
            variant,
            first: true,
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> std::result::Result<(), KeyErr> {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        value.serialize(Canon::nested(self.out))
    }

    fn close(self) -> std::result::Result<(), KeyErr> {
        self.out.push(']');
        close_wrappers(self.out, self.top, self.variant);
        Ok(())
    }
}

impl std::fmt::Debug for Seq<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seq")
    }
}

macro_rules! seq_impl {
    ($($tr:ident :: $m:ident),*) => {$(
        impl ser::$tr for Seq<'_> {
            type Ok = ();
            type Error = KeyErr;
            fn $m<T: Serialize + ?Sized>(&mut self, value: &T) -> std::result::Result<(), KeyErr> {
                self.element(value)
            }
            fn end(self) -> std::result::Result<(), KeyErr> {
                self.close()
            }
        }
    )*};
}

seq_impl!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

struct Obj<'a> {
    out: &'a mut String,
    top: bool,
    variant: Option<&'static str>,
    entries: Vec<(String, String)>,
    pending_key: Option<String>,
}

impl std::fmt::Debug for Obj<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Obj")
    }
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut String, top: bool, variant: Option<&'static str>) -> Self {
        Obj {
            out,
            top,
            variant,
            entries: Vec::new(),
            pending_key: None,
        }
    }

    fn entry<T: Serialize + ?Sized>(
        &mut self,
        key: String,
        value: &T,
    ) -> std::result::Result<(), KeyErr> {
        let mut v = String::new();
        value.serialize(Canon::nested(&mut v))?;
        self.entries.push((key, v));
        Ok(())
    }

    fn close(mut self) -> std::result::Result<(), KeyErr> {
        self.entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if let Some(w) = self.entries.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(KeyErr(format!("duplicate map key {:?}", w[0].0)));
        }
        open_wrappers(self.out, self.top, self.variant);
        self.out.push('{');
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            write_str(self.out, k);
            self.out.push(':');
            self.out.push_str(v);
        }
        self.out.push('}');
        close_wrappers(self.out, self.top, self.variant);
        Ok(())
    }
}

impl ser::SerializeMap for Obj<'_> {
    type Ok = ();
    type Error = KeyErr;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> std::result::Result<(), KeyErr> {
        self.pending_key = Some(key.serialize(MapKey)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> std::result::Result<(), KeyErr> {
        let key = self
            .pending_key
            .take()
            .ok_or_else(|| KeyErr("map value without a key".into()))?;
        self.entry(key, value)
    }
    fn end(self) -> std::result::Result<(), KeyErr> {
        self.close()
    }
}

impl ser::SerializeStruct for Obj<'_> {
    type Ok = ();
    type Error = KeyErr;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> std::result::Result<(), KeyErr> {
        self.entry(key.to_owned(), value)
    }
    fn end(self) -> std::result::Result<(), KeyErr> {
        self.close()
    }
}

impl ser::SerializeStructVariant for Obj<'_> {
    type Ok = ();
    type Error = KeyErr;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> std::result::Result<(), KeyErr> {
        self.entry(key.to_owned(), value)
    }
    fn end(self) -> std::result::Result<(), KeyErr> {
        self.close()
    }
}

/// Map keys: strings, chars, integers and booleans have a JSON key form; nothing else does.
struct MapKey;

fn key_err(what: &str) -> KeyErr {
    KeyErr(format!(
        "a map key must be a string, an integer or a bool, not {what}"
    ))
}

macro_rules! key_int {
    ($($name:ident: $ty:ty),*) => {$(
        fn $name(self, v: $ty) -> std::result::Result<String, KeyErr> { Ok(v.to_string()) }
    )*};
}

impl ser::Serializer for MapKey {
    type Ok = String;
    type Error = KeyErr;
    type SerializeSeq = Impossible<String, KeyErr>;
    type SerializeTuple = Impossible<String, KeyErr>;
    type SerializeTupleStruct = Impossible<String, KeyErr>;
    type SerializeTupleVariant = Impossible<String, KeyErr>;
    type SerializeMap = Impossible<String, KeyErr>;
    type SerializeStruct = Impossible<String, KeyErr>;
    type SerializeStructVariant = Impossible<String, KeyErr>;

    key_int!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128, serialize_bool: bool, serialize_char: char);

    fn serialize_str(self, v: &str) -> std::result::Result<String, KeyErr> {
        Ok(v.to_owned())
    }
    fn serialize_f32(self, _v: f32) -> std::result::Result<String, KeyErr> {
        Err(key_err("a float"))
    }
    fn serialize_f64(self, _v: f64) -> std::result::Result<String, KeyErr> {
        Err(key_err("a float"))
    }
    fn serialize_bytes(self, _v: &[u8]) -> std::result::Result<String, KeyErr> {
        Err(key_err("bytes"))
    }
    fn serialize_none(self) -> std::result::Result<String, KeyErr> {
        Err(key_err("None"))
    }
    fn serialize_some<T: Serialize + ?Sized>(
        self,
        value: &T,
    ) -> std::result::Result<String, KeyErr> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> std::result::Result<String, KeyErr> {
        Err(key_err("()"))
    }
    fn serialize_unit_struct(self, name: &'static str) -> std::result::Result<String, KeyErr> {
        Err(key_err(name))
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> std::result::Result<String, KeyErr> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> std::result::Result<String, KeyErr> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> std::result::Result<String, KeyErr> {
        Err(key_err(name))
    }
    fn serialize_seq(self, _len: Option<usize>) -> std::result::Result<Self::SerializeSeq, KeyErr> {
        Err(key_err("a sequence"))
    }
    fn serialize_tuple(self, _len: usize) -> std::result::Result<Self::SerializeTuple, KeyErr> {
        Err(key_err("a tuple"))
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        _len: usize,
    ) -> std::result::Result<Self::SerializeTupleStruct, KeyErr> {
        Err(key_err(name))
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> std::result::Result<Self::SerializeTupleVariant, KeyErr> {
        Err(key_err(name))
    }
    fn serialize_map(self, _len: Option<usize>) -> std::result::Result<Self::SerializeMap, KeyErr> {
        Err(key_err("a map"))
    }
    fn serialize_struct(
        self,
        name: &'static str,
        _len: usize,
    ) -> std::result::Result<Self::SerializeStruct, KeyErr> {
        Err(key_err(name))
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> std::result::Result<Self::SerializeStructVariant, KeyErr> {
        Err(key_err(name))
    }
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
            let mut out = String::new();
            write_str(&mut out, &s);
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
