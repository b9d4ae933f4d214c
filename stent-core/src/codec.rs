//! How results are turned into stored bytes and back.
//!
//! Every stored value starts with a one-byte tag naming its format, so records written
//! today stay readable when another codec is added:
//!
//! | tag | meaning |
//! |---|---|
//! | `0x01` | JSON of the function's `Ok` value |
//! | `0x02` | JSON of a stored terminal error (see `store_errors_if`) |
//! | `0x03` | how long the function took to compute the value, in milliseconds as 4 bytes big-endian, then JSON of its `Ok` value (cached values of functions with `early_refresh`) |
//!
//! JSON cannot tell `Some(None)` from `None` in a nested `Option<Option<T>>`: both replay as
//! `None`. A result holding a NaN or an infinity fails to encode with [`ErrorKind::Encode`]
//! (nothing is stored) instead of being stored as `null`. Every other value (including `()`,
//! `None`, `0`, `false`, empty collections and every finite float, to the bit) replays exactly.
//!
//! ```
//! use stent_core::codec::{self, Stored};
//!
//! let bytes = codec::encode_value(&Some(42u32)).unwrap();
//! assert_eq!(bytes, b"\x0142");
//! let back: Stored<Option<u32>, ()> = codec::decode("k", &bytes).unwrap();
//! assert_eq!(back, Stored::Value(Some(42)));
//! ```

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};

/// Tag of a JSON-encoded `Ok` value.
pub const TAG_JSON_VALUE: u8 = 0x01;
/// Tag of a JSON-encoded stored error.
pub const TAG_JSON_ERROR: u8 = 0x02;
/// Tag of a JSON-encoded `Ok` value after the time it took to compute.
pub const TAG_TIMED_VALUE: u8 = 0x03;

/// A decoded stored value: the function's result or a stored terminal error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored<T, E> {
    /// The function succeeded with this value.
    Value(T),
    /// The function failed with this error, stored because `store_errors_if` said so.
    Error(E),
}

fn encode_tagged<T: Serialize + ?Sized>(header: &[u8], value: &T) -> Result<Vec<u8>> {
    // Room for a small value: growing from one byte would reallocate on each piece written.
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(header);
    serde_json::to_writer(&mut out, value).map_err(|e| {
        Error::new(ErrorKind::Encode, "result cannot be encoded as JSON").with_source(e)
    })?;
    // serde_json writes NaN and the infinities as `null`, which would replay as something
    // else (or fail to decode, forever). Only output holding a `null` can hide one. (The
    // scan is memchr's: a byte-by-byte one took milliseconds on a result of megabytes.)
    let null = memchr::memmem::find(&out[header.len()..], b"null");
    if null.is_some() && crate::key::has_non_finite_float(value) {
        let message = "result cannot be encoded as JSON: it holds a NaN or an infinite float";
        return Err(Error::new(ErrorKind::Encode, message));
    }
    Ok(out)
}

/// Encodes a function's `Ok` value: [`TAG_JSON_VALUE`], then its JSON. A value serde_json
/// refuses, or one holding a NaN or an infinite float, is an [`ErrorKind::Encode`] error.
pub fn encode_value<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    encode_tagged(&[TAG_JSON_VALUE], value)
}

/// Encodes a function's `Ok` value with how long the function took to compute it
/// ([`TAG_TIMED_VALUE`], whole milliseconds saturating at `u32::MAX`, then its JSON); fails as
/// [`encode_value`] does.
pub fn encode_timed_value<T: Serialize + ?Sized>(value: &T, took: Duration) -> Result<Vec<u8>> {
    let ms = u32::try_from(took.as_millis()).unwrap_or(u32::MAX);
    let [a, b, c, d] = ms.to_be_bytes();
    encode_tagged(&[TAG_TIMED_VALUE, a, b, c, d], value)
}

/// How long the function took to compute the value in `bytes`, when they say
/// ([`TAG_TIMED_VALUE`]).
pub fn computed_in(bytes: &[u8]) -> Option<Duration> {
    let [TAG_TIMED_VALUE, a, b, c, d, ..] = *bytes else {
        return None;
    };
    let ms = u32::from_be_bytes([a, b, c, d]);
    Some(Duration::from_millis(ms.into()))
}

/// Encodes a terminal error to replay: [`TAG_JSON_ERROR`], then its JSON; fails as
/// [`encode_value`] does.
pub fn encode_error<E: Serialize + ?Sized>(err: &E) -> Result<Vec<u8>> {
    encode_tagged(&[TAG_JSON_ERROR], err)
}

/// Decodes stored bytes into a value or a stored error; anything else is an
/// [`ErrorKind::Decode`] error naming `key`.
pub fn decode<T: DeserializeOwned, E: DeserializeOwned>(
    key: &str,
    bytes: &[u8],
) -> Result<Stored<T, E>> {
    let message = match bytes {
        [TAG_JSON_VALUE, json @ ..] | [TAG_TIMED_VALUE, _, _, _, _, json @ ..] => {
            return decode_json(key, json, "value").map(Stored::Value);
        }
        [TAG_JSON_ERROR, json @ ..] => {
            return decode_json(key, json, "stored error").map(Stored::Error);
        }
        [] => "stored value is empty (no format tag)".to_owned(),
        [TAG_TIMED_VALUE, ..] => "stored value is cut short in its duration".to_owned(),
        [other, ..] => format!("stored value has unknown format tag 0x{other:02x}"),
    };
    Err(Error::decode(key, message))
}

/// Decodes the JSON body of a stored value (after its tag) as `T`; otherwise an
/// [`ErrorKind::Decode`] error naming `key`, `what` the body is and `T`.
pub fn decode_json<T: DeserializeOwned>(key: &str, body: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        let ty = short_type_name::<T>();
        Error::decode(key, format!("stored {what} does not decode as {ty}")).with_source(e)
    })
}

/// `T`'s name without module paths: `Vec<String>`, not `alloc::vec::Vec<alloc::string::String>`.
fn short_type_name<T: ?Sized>() -> String {
    let mut short = String::new();
    for piece in std::any::type_name::<T>().split("::") {
        // What `short` ends with was a path segment, since `::` follows it.
        let segment = short.trim_end_matches(|c: char| c.is_alphanumeric() || c == '_');
        short.truncate(segment.len());
        short.push_str(piece);
    }
    short
}

/// Decodes stored bytes to generic JSON, for display by admin tools.
pub fn to_json(key: &str, bytes: &[u8]) -> Result<Stored<serde_json::Value, serde_json::Value>> {
    decode(key, bytes)
}

#[cfg(test)]
mod tests {
    use super::short_type_name;

    #[test]
    fn type_names_drop_module_paths() {
        assert_eq!(short_type_name::<String>(), "String");
        assert_eq!(
            short_type_name::<Vec<Option<String>>>(),
            "Vec<Option<String>>"
        );
        assert_eq!(short_type_name::<(u64, bool)>(), "(u64, bool)");
        assert_eq!(
            short_type_name::<std::collections::HashMap<String, Vec<u8>>>(),
            "HashMap<String, Vec<u8>>"
        );
    }
}
