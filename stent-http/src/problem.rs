//! The error responses of the layer, as `application/problem+json` (RFC 9457).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

/// Where the problem types' URIs start by default: this enum's documentation, so each
/// type URI leads to the description of its case.
pub const DEFAULT_PROBLEM_BASE: &str =
    "https://docs.rs/stent-http/latest/stent_http/enum.Problem.html#variant.";

/// A request the layer answers itself, with an `application/problem+json` body whose
/// `type` is the layer's problem base followed by the variant's name (by default
/// `https://docs.rs/stent-http/latest/stent_http/enum.Problem.html#variant.MissingKey`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Problem {
    /// 400: the route requires an `Idempotency-Key` and the request has none.
    MissingKey,
    /// 400: the `Idempotency-Key` is not a valid key (syntax, length, repeated header).
    MalformedKey,
    /// 413: the request body is larger than the layer buffers.
    BodyTooLarge,
    /// 400: the request body could not be read.
    BodyUnreadable,
    /// 422: the key was first used with another request (another fingerprint).
    PayloadMismatch,
    /// 409: a request with this key is still being processed; `Retry-After` says when to
    /// try again.
    InFlight,
    /// 503: the store could not be reached to claim the key, or was busy; nothing ran.
    StoreUnavailable,
    /// 500: the store refused to claim the key with an error a retry will not fix (a key
    /// longer than it takes, a schema or configuration error); nothing ran.
    StoreFailed,
    /// 500: the stored response of this key cannot be read back; nothing ran again.
    StoredResponseUnreadable,
    /// 502: the handler's response body failed while it was read; nothing was stored.
    ResponseBodyFailed,
}

impl Problem {
    /// The response status.
    pub const fn status(self) -> StatusCode {
        match self {
            Problem::MissingKey | Problem::MalformedKey | Problem::BodyUnreadable => {
                StatusCode::BAD_REQUEST
            }
            Problem::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Problem::PayloadMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            Problem::InFlight => StatusCode::CONFLICT,
            Problem::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Problem::StoreFailed | Problem::StoredResponseUnreadable => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Problem::ResponseBodyFailed => StatusCode::BAD_GATEWAY,
        }
    }

    /// The variant's name, which ends its type URI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Problem::MissingKey => "MissingKey",
            Problem::MalformedKey => "MalformedKey",
            Problem::BodyTooLarge => "BodyTooLarge",
            Problem::BodyUnreadable => "BodyUnreadable",
            Problem::PayloadMismatch => "PayloadMismatch",
            Problem::InFlight => "InFlight",
            Problem::StoreUnavailable => "StoreUnavailable",
            Problem::StoreFailed => "StoreFailed",
            Problem::StoredResponseUnreadable => "StoredResponseUnreadable",
            Problem::ResponseBodyFailed => "ResponseBodyFailed",
        }
    }

    /// The problem's short, fixed summary (RFC 9457 `title`).
    pub const fn title(self) -> &'static str {
        match self {
            Problem::MissingKey => "Idempotency-Key is missing",
            Problem::MalformedKey => "Idempotency-Key is malformed",
            Problem::BodyTooLarge => "Request body is too large",
            Problem::BodyUnreadable => "Request body could not be read",
            Problem::PayloadMismatch => "Idempotency-Key was used with another request",
            Problem::InFlight => "A request with this Idempotency-Key is being processed",
            Problem::StoreUnavailable => "Idempotency store is unavailable",
            Problem::StoreFailed => "Idempotency store failed",
            Problem::StoredResponseUnreadable => "Stored response cannot be read",
            Problem::ResponseBodyFailed => "Response body failed",
        }
    }

    /// The response: status, `application/problem+json` body with `type`, `title`,
    /// `status` and `detail`, and `Retry-After` when given (whole seconds, at least 1).
    pub(crate) fn response<B: From<Bytes>>(
        self,
        base: &str,
        detail: &str,
        retry_after: Option<Duration>,
    ) -> Response<B> {
        let body = serde_json::json!({
            "type": format!("{base}{}", self.as_str()),
            "title": self.title(),
            "status": self.status().as_u16(),
            "detail": detail,
        });
        let mut response = Response::new(B::from(Bytes::from(body.to_string())));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(after) = retry_after {
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
