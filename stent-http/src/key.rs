//! Reading the `Idempotency-Key` header.

use std::ops::RangeInclusive;

use http::HeaderMap;
use http::header::HeaderName;
use stent_core::KeyScope;

/// The rules a key must follow.
#[derive(Clone, Debug)]
pub(crate) struct KeyRules {
    /// Only the structured-field String form (`"…"`), not a bare token.
    pub(crate) strict: bool,
    /// Accepted lengths, in characters, after unescaping.
    pub(crate) len: RangeInclusive<usize>,
}

/// The key of a request: `Ok(None)` without the header, `Err(why)` when it is malformed.
///
/// The header is a structured-field Item whose value is a String (RFC 8941 §3.3.3):
/// `"…"`, with `\"` and `\\` as the only escapes, printable ASCII inside; parameters
/// after it (`;name=value`) are ignored. Unless strict, a value without quotes is taken as
/// the key as is, when it is printable ASCII without spaces (as many clients send it).
pub(crate) fn parse(
    headers: &HeaderMap,
    name: &HeaderName,
    rules: &KeyRules,
) -> Result<Option<String>, String> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(format!("the request carries more than one {name} header"));
    }
    let raw = value.as_bytes().trim_ascii();
    let key = match raw.first() {
        Some(b'"') => sf_string(raw)?,
        _ if rules.strict => {
            return Err(format!(
                "{name} must be a structured-field String: the key in double quotes"
            ));
        }
        _ if raw.iter().all(|b| (0x21..=0x7e).contains(b)) => {
            String::from_utf8(raw.to_vec()).map_err(|e| e.to_string())?
        }
        _ => {
            return Err(format!(
                "{name} must be printable ASCII without spaces, or a quoted string"
            ));
        }
    };
    if !rules.len.contains(&key.len()) {
        return Err(format!(
            "{name} must be {} to {} characters long, not {}",
            rules.len.start(),
            rules.len.end(),
            key.len()
        ));
    }
    Ok(Some(key))
}

/// The content of a structured-field String starting at `raw[0] == b'"'`.
fn sf_string(raw: &[u8]) -> Result<String, String> {
    let mut key = String::new();
    let mut bytes = raw[1..].iter();
    loop {
        match bytes.next() {
            None => return Err("the quoted key has no closing quote".to_owned()),
            Some(b'"') => break,
            Some(b'\\') => match bytes.next() {
                Some(&c @ (b'"' | b'\\')) => key.push(char::from(c)),
                _ => return Err("a quoted key may only escape `\"` and `\\`".to_owned()),
            },
            Some(&c) if (0x20..=0x7e).contains(&c) => key.push(char::from(c)),
            Some(_) => return Err("a quoted key holds printable ASCII only".to_owned()),
        }
    }
    match bytes.as_slice().trim_ascii_start() {
        [] | [b';', ..] => Ok(key),
        _ => Err("nothing but parameters may follow the quoted key".to_owned()),
    }
}

/// The stored key: the layer's name, the caller's scope, the method, the path and the
/// client's key. Every part but the last is length-prefixed, so no two different
/// requests' parts can run together into one key, whatever characters they hold.
///
/// A key longer than [`PORTABLE_KEY_LEN`](stent_core::key::PORTABLE_KEY_LEN) bytes (a long
/// path, a scope made from a token) or holding a NUL is stored as `sha256:<hex>` of it, as
/// the core stores long custom keys ([`KeyScope::custom`]): every store takes it, and it
/// never equals a key stored as it reads, which starts with a digit.
pub(crate) fn scoped(name: &str, scope: &str, method: &str, path: &str, key: &str) -> String {
    let mut out = String::with_capacity(name.len() + scope.len() + path.len() + key.len() + 24);
    for part in [name, scope, method, path] {
        out.push_str(&part.len().to_string());
        out.push(':');
        out.push_str(part);
        out.push('|');
    }
    out.push_str(key);
    // Shared: the key is the whole of it, with no `{name}|{version}|` in front.
    let whole = KeyScope {
        name,
        version: None,
        shared: true,
    };
    whole.custom(out)
}

#[cfg(test)]
mod tests {
    use stent_core::key::{PORTABLE_KEY_LEN, sha256_hex};

    use super::*;

    fn key(value: &str, strict: bool) -> Result<Option<String>, String> {
        let mut headers = HeaderMap::new();
        headers.insert("idempotency-key", value.parse().unwrap());
        let rules = KeyRules {
            strict,
            len: 1..=255,
        };
        parse(
            &headers,
            &HeaderName::from_static("idempotency-key"),
            &rules,
        )
    }

    #[test]
    fn structured_field_strings_unescape() {
        assert_eq!(key(r#""abc""#, true).unwrap().unwrap(), "abc");
        assert_eq!(key(r#""a\"b\\c""#, true).unwrap().unwrap(), r#"a"b\c"#);
        assert_eq!(key(r#""a b";p=1"#, true).unwrap().unwrap(), "a b");
        assert!(key(r#""abc"#, false).is_err());
        assert!(key(r#""a\nb""#, false).is_err());
        assert!(key(r#""abc" x"#, false).is_err());
        assert!(key(r#""""#, false).is_err());
    }

    #[test]
    fn bare_tokens_only_when_not_strict() {
        assert_eq!(
            key("8e03978e-40d5", false).unwrap().unwrap(),
            "8e03978e-40d5"
        );
        assert!(key("8e03978e-40d5", true).is_err());
        assert!(key("a b", false).is_err());
        assert!(key(&"k".repeat(256), false).is_err());
        assert!(key(&"k".repeat(255), false).is_ok());
    }

    #[test]
    fn two_headers_are_malformed_and_none_is_absent() {
        let name = HeaderName::from_static("idempotency-key");
        let rules = KeyRules {
            strict: false,
            len: 1..=255,
        };
        assert_eq!(parse(&HeaderMap::new(), &name, &rules), Ok(None));
        let mut headers = HeaderMap::new();
        headers.append(&name, "a".parse().unwrap());
        headers.append(&name, "b".parse().unwrap());
        assert!(parse(&headers, &name, &rules).is_err());
    }

    #[test]
    fn scoped_keys_never_run_together() {
        assert_ne!(
            scoped("h", "a|1:b", "POST", "/p", "k"),
            scoped("h", "a", "1:b|POST", "/p", "k")
        );
        assert_eq!(scoped("h", "", "POST", "/p", "k"), "1:h|0:|4:POST|2:/p|k");
    }

    #[test]
    fn keys_up_to_the_portable_length_read_as_they_are_longer_ones_are_hashed() {
        // `4:http|` `992:` scope `|` `4:POST|` `9:/payments|` `k`: 1024 bytes.
        let longest = scoped("http", &"s".repeat(992), "POST", "/payments", "k");
        assert_eq!(longest.len(), PORTABLE_KEY_LEN);
        assert!(longest.starts_with("4:http|992:sss"), "{longest}");
        let scope = "s".repeat(993);
        let long = scoped("http", &scope, "POST", "/payments", "k");
        let whole = format!("4:http|993:{scope}|4:POST|9:/payments|k");
        assert_eq!(long, format!("sha256:{}", sha256_hex(whole.as_bytes())));
        let path = format!("/payments/{}", "p".repeat(2100));
        let other = scoped("http", "", "POST", &path, "k");
        assert_eq!(other.len(), "sha256:".len() + 64);
        assert_ne!(other, long);
        assert!(scoped("http", "a\0b", "POST", "/p", "k").starts_with("sha256:"));
    }
}
