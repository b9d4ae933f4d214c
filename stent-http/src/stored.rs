//! A response as stored: status, the allowlisted headers and the body, in a small binary
//! form (the body is stored as is, not escaped).
//!
//! | bytes | meaning |
//! |---|---|
//! | 1 | tag `0x10` (the wrapper's values start with `0x01` or `0x02`) |
//! | 2 | status, big-endian |
//! | 2 | number of headers, then for each: name length (2), name, value length (4), value |
//! | rest | the body |

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

const TAG: u8 = 0x10;

/// A response read back from the store.
#[derive(Debug)]
pub(crate) struct StoredResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// Encodes `status`, the headers of `headers` that `keep` names, and `body`.
pub(crate) fn encode(
    status: StatusCode,
    headers: &HeaderMap,
    keep: &[HeaderName],
    body: &[u8],
) -> Vec<u8> {
    let kept: Vec<(&HeaderName, &HeaderValue)> =
        headers.iter().filter(|(n, _)| keep.contains(n)).collect();
    let mut out = Vec::with_capacity(5 + body.len() + kept.len() * 32);
    out.push(TAG);
    out.extend_from_slice(&status.as_u16().to_be_bytes());
    let count = u16::try_from(kept.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    for (name, value) in kept.into_iter().take(usize::from(count)) {
        // Header names are at most a few dozen bytes; values are bounded by the server's
        // header size limit, far below 4 GiB.
        let name_len = u16::try_from(name.as_str().len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&name_len.to_be_bytes());
        out.extend_from_slice(name.as_str().as_bytes());
        let value_len = u32::try_from(value.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&value_len.to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(body);
    out
}

/// Decodes what [`encode`] wrote; `None` for anything else. The body is a slice of
/// `bytes`, not a copy.
pub(crate) fn decode(bytes: Bytes) -> Option<StoredResponse> {
    let mut rest = &bytes[..];
    let mut take = |n: usize| {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    if take(1)? != [TAG] {
        return None;
    }
    let status = StatusCode::from_u16(u16::from_be_bytes(take(2)?.try_into().ok()?)).ok()?;
    let count = u16::from_be_bytes(take(2)?.try_into().ok()?);
    let mut headers = HeaderMap::with_capacity(usize::from(count));
    for _ in 0..count {
        let name_len = u16::from_be_bytes(take(2)?.try_into().ok()?);
        let name = HeaderName::from_bytes(take(usize::from(name_len))?).ok()?;
        let value_len = u32::from_be_bytes(take(4)?.try_into().ok()?);
        let value = HeaderValue::from_bytes(take(usize::try_from(value_len).ok()?)?).ok()?;
        headers.append(name, value);
    }
    let body = bytes.slice(bytes.len() - rest.len()..);
    Some(StoredResponse {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_status_kept_headers_and_body() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("link", HeaderValue::from_static("</a>"));
        headers.append("link", HeaderValue::from_static("</b>"));
        headers.insert("set-cookie", HeaderValue::from_static("s=1"));
        let keep = [
            HeaderName::from_static("content-type"),
            HeaderName::from_static("link"),
        ];
        let bytes = encode(StatusCode::CREATED, &headers, &keep, b"\0{\"id\":1}\xff");
        let back = decode(Bytes::from(bytes.clone())).unwrap();
        assert_eq!(back.status, StatusCode::CREATED);
        assert_eq!(back.headers.len(), 3);
        assert_eq!(back.headers.get_all("link").iter().count(), 2);
        assert!(back.headers.get("set-cookie").is_none());
        assert_eq!(&back.body[..], b"\0{\"id\":1}\xff");
        assert!(decode(Bytes::from(bytes[..4].to_vec())).is_none());
        assert!(decode(Bytes::from_static(b"\x01{}")).is_none());
    }
}
