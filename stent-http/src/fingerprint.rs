//! What makes two requests with one key "the same request".

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use sha2::{Digest, Sha256};

type Custom = dyn Fn(&Parts, &Bytes) -> String + Send + Sync;
type JsonEdit = dyn Fn(&mut serde_json::Value) + Send + Sync;

/// How a request's fingerprint is computed. It is stored with the claim; a later request
/// with the same key and another fingerprint is refused with 422
/// ([`Problem::PayloadMismatch`](crate::Problem::PayloadMismatch)), and never sees the
/// stored response.
#[derive(Clone, Default)]
pub struct Fingerprint(Kind);

#[derive(Clone, Default)]
enum Kind {
    #[default]
    Request,
    Json(Arc<JsonEdit>),
    Custom(Arc<Custom>),
    Off,
}

impl Fingerprint {
    /// The default: SHA-256 of the method, the path, the query, the `Content-Type` and the
    /// body bytes.
    pub fn request() -> Self {
        Fingerprint(Kind::Request)
    }

    /// As [`request`](Self::request), but a JSON body is parsed and passed to `edit` first
    /// (to remove fields that may change between retries, such as a client timestamp), then
    /// hashed in its canonical form (object keys sorted, no whitespace), so key order and
    /// spacing do not matter either. A body that is not JSON is hashed as bytes.
    ///
    /// ```
    /// use stent_http::Fingerprint;
    ///
    /// let fingerprint = Fingerprint::json(|body| {
    ///     if let Some(fields) = body.as_object_mut() {
    ///         fields.remove("sent_at");
    ///     }
    /// });
    /// # let _ = fingerprint;
    /// ```
    pub fn json(edit: impl Fn(&mut serde_json::Value) + Send + Sync + 'static) -> Self {
        Fingerprint(Kind::Json(Arc::new(edit)))
    }

    /// A fingerprint of the caller's making, from the request's head and its body.
    pub fn with(f: impl Fn(&Parts, &Bytes) -> String + Send + Sync + 'static) -> Self {
        Fingerprint(Kind::Custom(Arc::new(f)))
    }

    /// No fingerprint: any request with a known key gets the stored response.
    pub fn off() -> Self {
        Fingerprint(Kind::Off)
    }

    pub(crate) fn of(&self, parts: &Parts, body: &Bytes) -> Option<String> {
        match &self.0 {
            Kind::Request => Some(hash(parts, body)),
            Kind::Json(edit) => Some(match serde_json::from_slice(body) {
                Ok(mut value) => {
                    edit(&mut value);
                    match stent_core::key::canonical_json(&value) {
                        Ok(json) => hash(parts, json.as_bytes()),
                        Err(_) => hash(parts, body),
                    }
                }
                Err(_) => hash(parts, body),
            }),
            Kind::Custom(f) => Some(f(parts, body)),
            Kind::Off => None,
        }
    }
}

/// SHA-256 over the parts, each preceded by its length so none can run into the next.
fn hash(parts: &Parts, body: &[u8]) -> String {
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .map_or(&[][..], |v| v.as_bytes());
    let mut sha = Sha256::new();
    for part in [
        parts.method.as_str().as_bytes(),
        parts.uri.path().as_bytes(),
        parts.uri.query().unwrap_or_default().as_bytes(),
        content_type,
        body,
    ] {
        sha.update(u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
        sha.update(part);
    }
    format!("{:x}", sha.finalize())
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Kind::Request => "Fingerprint::request()",
            Kind::Json(_) => "Fingerprint::json(..)",
            Kind::Custom(_) => "Fingerprint::with(..)",
            Kind::Off => "Fingerprint::off()",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, content_type: &str) -> Parts {
        let req = http::Request::post(uri)
            .header("content-type", content_type)
            .body(())
            .unwrap();
        req.into_parts().0
    }

    #[test]
    fn the_default_covers_path_query_content_type_and_body() {
        let fp = Fingerprint::request();
        let base = fp.of(&parts("/a?x=1", "text/plain"), &Bytes::from("b"));
        assert_eq!(
            base,
            fp.of(&parts("/a?x=1", "text/plain"), &Bytes::from("b"))
        );
        for other in [
            fp.of(&parts("/b?x=1", "text/plain"), &Bytes::from("b")),
            fp.of(&parts("/a?x=2", "text/plain"), &Bytes::from("b")),
            fp.of(&parts("/a?x=1", "text/html"), &Bytes::from("b")),
            fp.of(&parts("/a?x=1", "text/plain"), &Bytes::from("c")),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn json_ignores_edited_fields_key_order_and_spacing() {
        let fp = Fingerprint::json(|v| {
            v.as_object_mut().map(|o| o.remove("at"));
        });
        let p = parts("/a", "application/json");
        let a = fp.of(&p, &Bytes::from(r#"{"amount":5,"to":"x","at":1}"#));
        let b = fp.of(&p, &Bytes::from(r#"{ "to": "x", "at": 2, "amount": 5 }"#));
        let c = fp.of(&p, &Bytes::from(r#"{"amount":6,"to":"x","at":1}"#));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(Fingerprint::off().of(&p, &Bytes::new()), None);
    }
}
