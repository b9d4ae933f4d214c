//! The one public error type of stent.

use std::convert::Infallible;
use std::fmt;
use std::time::Duration;

/// What went wrong, as a closed set callers can match on.
///
/// Every [`Error`] has exactly one kind. Kinds that describe a transient condition
/// ([`ErrorKind::Unavailable`], [`ErrorKind::Busy`], [`ErrorKind::InFlight`]) are
/// usually [retryable](Error::is_retryable); the others are not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The wrapped function itself returned an error; [`Error::function_error`] holds it.
    Function,
    /// Invalid configuration: a table prefix, a URL, an option out of range.
    Config,
    /// The store could not be reached, or the connection dropped mid-call.
    Unavailable,
    /// The store is momentarily overloaded or locked (throttling, `SQLITE_BUSY`).
    Busy,
    /// The store answered with an error that retrying will not fix.
    Store,
    /// The arguments could not be turned into a key (non-finite floats, unencodable values).
    Key,
    /// A result could not be encoded for storage.
    Encode,
    /// Stored bytes could not be decoded into the expected type.
    Decode,
    /// A key is longer than the store accepts.
    KeyTooLarge,
    /// A value is larger than the store accepts; nothing was sent.
    ValueTooLarge,
    /// Another caller holds the lease on this key and the in-flight policy gave up waiting.
    InFlight,
    /// The lease token no longer owns the record: another caller took over, so the
    /// result was **not** recorded.
    LeaseLost,
    /// The same key was called with different arguments (payload validation).
    PayloadMismatch,
    /// The operation is not supported by this store.
    Unsupported,
}

impl ErrorKind {
    /// A short, stable, lower-case name for the kind (used in logs and metrics labels).
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Function => "function",
            ErrorKind::Config => "config",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Busy => "busy",
            ErrorKind::Store => "store",
            ErrorKind::Key => "key",
            ErrorKind::Encode => "encode",
            ErrorKind::Decode => "decode",
            ErrorKind::KeyTooLarge => "key_too_large",
            ErrorKind::ValueTooLarge => "value_too_large",
            ErrorKind::InFlight => "in_flight",
            ErrorKind::LeaseLost => "lease_lost",
            ErrorKind::PayloadMismatch => "payload_mismatch",
            ErrorKind::Unsupported => "unsupported",
        }
    }

    const fn default_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Unavailable | ErrorKind::Busy | ErrorKind::InFlight
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

struct Details {
    kind: ErrorKind,
    message: String,
    key: Option<String>,
    retryable: bool,
    retry_after: Option<Duration>,
    source: Option<Source>,
}

enum Repr<E> {
    Function(E),
    Stent(Box<Details>),
}

/// The error of every stent operation.
///
/// `E` is the wrapped function's own error type; store operations use the default,
/// [`Infallible`], since they never run user code. An error carries a [kind](Self::kind),
/// a message with context, the key it concerns when there is one, a
/// [retryable](Self::is_retryable) flag and, for store failures, the driver error as its
/// [`source`](std::error::Error::source). Driver types never appear in the signature.
///
/// `Display` is one sentence: the kind, the message and the key. It does not repeat the
/// source, which is reached through [`source`](std::error::Error::source) (as error
/// reporters that print the chain expect).
///
/// ```
/// use stent_core::{Error, ErrorKind};
///
/// let err: Error = Error::new(ErrorKind::Unavailable, "connection refused").with_key("k");
/// assert_eq!(err.kind(), ErrorKind::Unavailable);
/// assert!(err.is_retryable());
/// assert_eq!(err.key(), Some("k"));
/// assert_eq!(err.to_string(), "unavailable: connection refused (key \"k\")");
/// ```
pub struct Error<E = Infallible> {
    repr: Repr<E>,
}

/// `Result` with stent's [`Error`] (store operations: no function error).
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message; retryable when the kind usually is.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            repr: Repr::Stent(Box::new(Details {
                kind,
                message: message.into(),
                key: None,
                retryable: kind.default_retryable(),
                retry_after: None,
                source: None,
            })),
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        if let Repr::Stent(d) = &mut self.repr {
            d.source = Some(source.into());
        }
        self
    }

    /// Names the key the error concerns.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        if let Repr::Stent(d) = &mut self.repr {
            d.key = Some(key.into());
        }
        self
    }

    /// Overrides whether retrying the same call may succeed.
    pub fn set_retryable(mut self, retryable: bool) -> Self {
        if let Repr::Stent(d) = &mut self.repr {
            d.retryable = retryable;
        }
        self
    }

    /// Suggests when to retry (for [`ErrorKind::InFlight`]: when the holder's lease lapses).
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        if let Repr::Stent(d) = &mut self.repr {
            d.retry_after = Some(after);
        }
        self
    }

    /// Shorthand for a [`ErrorKind::Config`] error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// Shorthand for a [`ErrorKind::LeaseLost`] error on `key`.
    pub fn lease_lost(key: &str) -> Self {
        Self::new(
            ErrorKind::LeaseLost,
            "the lease token no longer owns this record; nothing was written",
        )
        .with_key(key)
    }

    /// Shorthand for a [`ErrorKind::Decode`] error on `key`.
    pub fn decode(key: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Decode, message).with_key(key)
    }

    /// Turns a store error into the error of a call whose function fails with `E`.
    pub fn into_call_error<E>(self) -> Error<E> {
        match self.repr {
            Repr::Stent(d) => Error {
                repr: Repr::Stent(d),
            },
            Repr::Function(never) => match never {},
        }
    }
}

impl<E> Error<E> {
    /// The wrapped function's error.
    pub fn function(err: E) -> Self {
        Error {
            repr: Repr::Function(err),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        match &self.repr {
            Repr::Function(_) => ErrorKind::Function,
            Repr::Stent(d) => d.kind,
        }
    }

    /// Whether the same call may succeed if tried again (for function errors: `false`;
    /// the function's own error type knows better).
    pub fn is_retryable(&self) -> bool {
        match &self.repr {
            Repr::Function(_) => false,
            Repr::Stent(d) => d.retryable,
        }
    }

    /// The key the error concerns, when known.
    pub fn key(&self) -> Option<&str> {
        match &self.repr {
            Repr::Function(_) => None,
            Repr::Stent(d) => d.key.as_deref(),
        }
    }

    /// For [`ErrorKind::InFlight`]: how long until the current holder's lease lapses.
    pub fn retry_after(&self) -> Option<Duration> {
        match &self.repr {
            Repr::Function(_) => None,
            Repr::Stent(d) => d.retry_after,
        }
    }

    /// The message with context (empty for function errors).
    pub fn message(&self) -> &str {
        match &self.repr {
            Repr::Function(_) => "",
            Repr::Stent(d) => &d.message,
        }
    }

    /// The wrapped function's error, if that is what this is.
    pub fn function_error(&self) -> Option<&E> {
        match &self.repr {
            Repr::Function(e) => Some(e),
            Repr::Stent(_) => None,
        }
    }

    /// Splits into the function's error or stent's own error.
    pub fn into_function_error(self) -> std::result::Result<E, Error> {
        match self.repr {
            Repr::Function(e) => Ok(e),
            Repr::Stent(d) => Err(Error {
                repr: Repr::Stent(d),
            }),
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Function(e) => f.debug_tuple("Function").field(e).finish(),
            Repr::Stent(d) => {
                let mut s = f.debug_struct("Error");
                s.field("kind", &d.kind).field("message", &d.message);
                if let Some(key) = &d.key {
                    s.field("key", key);
                }
                s.field("retryable", &d.retryable);
                if let Some(after) = d.retry_after {
                    s.field("retry_after", &after);
                }
                if let Some(source) = &d.source {
                    s.field("source", &format_args!("{source}"));
                }
                s.finish()
            }
        }
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Function(e) => e.fmt(f),
            Repr::Stent(d) => {
                write!(f, "{}: {}", d.kind, d.message)?;
                if let Some(key) = &d.key {
                    write!(f, " (key {})", Elided(key))?;
                }
                Ok(())
            }
        }
    }
}

/// Shows a key in messages, quoted and cut at a readable length.
struct Elided<'a>(&'a str);

impl fmt::Display for Elided<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 120;
        if self.0.len() <= MAX {
            return write!(f, "{:?}", self.0);
        }
        let mut cut = MAX;
        while !self.0.is_char_boundary(cut) {
            cut -= 1;
        }
        write!(f, "{:?}… ({} bytes)", &self.0[..cut], self.0.len())
    }
}

impl<E> std::error::Error for Error<E>
where
    E: std::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.repr {
            Repr::Function(e) => Some(e),
            Repr::Stent(d) => d
                .source
                .as_deref()
                .map(|s| s as &(dyn std::error::Error + 'static)),
        }
    }
}

impl From<Error> for std::io::Error {
    fn from(err: Error) -> Self {
        std::io::Error::other(err)
    }
}
