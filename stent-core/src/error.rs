//! The one public error type of stent.

use std::convert::Infallible;
use std::fmt;
use std::time::Duration;

named_enum! {
    /// What went wrong, as a closed set callers can match on.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    #[non_exhaustive]
    pub enum ErrorKind {
        /// The wrapped function itself returned an error; [`Error::function_error`] holds it.
        Function = "function",
        /// Invalid configuration: a table prefix, a URL, an option out of range.
        Config = "config",
        /// The store could not be reached, or the connection dropped mid-call.
        Unavailable = "unavailable",
        /// The store is momentarily overloaded or locked (throttling, `SQLITE_BUSY`).
        Busy = "busy",
        /// The store answered with an error that retrying will not fix.
        Store = "store",
        /// The arguments could not be turned into a key (non-finite floats, unencodable values).
        Key = "key",
        /// A result could not be encoded for storage.
        Encode = "encode",
        /// Stored bytes could not be decoded into the expected type.
        Decode = "decode",
        /// A key is longer than the store accepts.
        KeyTooLarge = "key_too_large",
        /// A value is larger than the store accepts; nothing was sent.
        ValueTooLarge = "value_too_large",
        /// Another caller holds the lease on this key and the in-flight policy gave up waiting.
        InFlight = "in_flight",
        /// The function hit its [`timeout`](crate::DurableBuilder::timeout) and was cancelled;
        /// nothing was recorded.
        Timeout = "timeout",
        /// Another caller took over from the lease token: the result was **not** recorded.
        LeaseLost = "lease_lost",
        /// The same key was called with different arguments (payload validation).
        PayloadMismatch = "payload_mismatch",
        /// The operation is not supported by this store.
        Unsupported = "unsupported",
    }
    /// The kind's stable snake_case name (`"key_too_large"`), as logs and metrics labels show it.
    fn as_str;
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
/// [`Infallible`], since they never run user code. An error is either the function's error
/// (kind [`ErrorKind::Function`]) or stent's own: a [kind](Self::kind), a message with
/// context, the key it concerns when there is one, a [retryable](Self::is_retryable) flag, a
/// [retry delay](Self::retry_after) and, for store failures, the driver error as its
/// [`source`](std::error::Error::source). Driver types never appear in the signature.
///
/// `Display` shows a function error as the function's own; stent's own as one sentence: the
/// kind, the message and the key (quoted; a key over 120 bytes is cut there, with its length).
/// It does not repeat the source, which error reporters reach through
/// [`source`](std::error::Error::source). `Debug` shows the source by its `Display`.
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
pub struct Error<E = Infallible>(Repr<E>);

/// `Result` with stent's [`Error`] (store operations: no function error).
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message; retryable when the kind describes a transient
    /// condition ([`Unavailable`](ErrorKind::Unavailable), [`Busy`](ErrorKind::Busy),
    /// [`InFlight`](ErrorKind::InFlight), [`Timeout`](ErrorKind::Timeout)).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        use ErrorKind::{Busy, InFlight, Timeout, Unavailable};
        Error(Repr::Stent(Box::new(Details {
            kind,
            message: message.into(),
            key: None,
            retryable: matches!(kind, Unavailable | Busy | InFlight | Timeout),
            retry_after: None,
            source: None,
        })))
    }

    fn edit(mut self, change: impl FnOnce(&mut Details)) -> Self {
        if let Repr::Stent(d) = &mut self.0 {
            change(d);
        }
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(self, source: impl Into<Source>) -> Self {
        self.edit(|d| d.source = Some(source.into()))
    }

    /// Names the key the error concerns.
    pub fn with_key(self, key: impl Into<String>) -> Self {
        self.edit(|d| d.key = Some(key.into()))
    }

    /// Overrides whether retrying the same call may succeed.
    pub fn set_retryable(self, retryable: bool) -> Self {
        self.edit(|d| d.retryable = retryable)
    }

    /// Suggests when to retry (for [`ErrorKind::InFlight`]: when the holder's lease lapses).
    pub fn with_retry_after(self, after: Duration) -> Self {
        self.edit(|d| d.retry_after = Some(after))
    }

    /// An [`ErrorKind::Config`] error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// An [`ErrorKind::LeaseLost`] error on `key`, saying nothing was written.
    pub fn lease_lost(key: &str) -> Self {
        let message = "the lease token no longer owns this record; nothing was written";
        Self::new(ErrorKind::LeaseLost, message).with_key(key)
    }

    /// An [`ErrorKind::Decode`] error on `key`.
    pub fn decode(key: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Decode, message).with_key(key)
    }

    /// The same error, as the error of a call whose function fails with `E`.
    pub fn into_call_error<E>(self) -> Error<E> {
        let Repr::Stent(d) = self.0;
        Error(Repr::Stent(d))
    }
}

impl<E> Error<E> {
    /// The wrapped function's error.
    pub fn function(err: E) -> Self {
        Error(Repr::Function(err))
    }

    fn details(&self) -> Option<&Details> {
        match &self.0 {
            Repr::Stent(d) => Some(d),
            Repr::Function(_) => None,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.details().map_or(ErrorKind::Function, |d| d.kind)
    }

    /// Whether the same call may succeed if tried again (`false` for function errors: the
    /// function's own error type knows better).
    pub fn is_retryable(&self) -> bool {
        self.details().is_some_and(|d| d.retryable)
    }

    /// The key the error concerns, when known.
    pub fn key(&self) -> Option<&str> {
        self.details()?.key.as_deref()
    }

    /// When to retry, if the error suggests it (for [`ErrorKind::InFlight`]: how long until
    /// the current holder's lease lapses).
    pub fn retry_after(&self) -> Option<Duration> {
        self.details()?.retry_after
    }

    /// The message with context (empty for function errors).
    pub fn message(&self) -> &str {
        self.details().map_or("", |d| &d.message)
    }

    /// The wrapped function's error, if that is what this is.
    pub fn function_error(&self) -> Option<&E> {
        match &self.0 {
            Repr::Function(e) => Some(e),
            Repr::Stent(_) => None,
        }
    }

    /// Splits into the function's error or stent's own error.
    pub fn into_function_error(self) -> std::result::Result<E, Error> {
        match self.0 {
            Repr::Function(e) => Ok(e),
            Repr::Stent(d) => Err(Error(Repr::Stent(d))),
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Function(e) => f.debug_tuple("Function").field(e).finish(),
            Repr::Stent(d) => f
                .debug_struct("Error")
                .field("kind", &d.kind)
                .field("message", &d.message)
                .field("key", &d.key)
                .field("retryable", &d.retryable)
                .field("retry_after", &d.retry_after)
                .field("source", &d.source.as_ref().map(ToString::to_string))
                .finish(),
        }
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = match &self.0 {
            Repr::Function(e) => return e.fmt(f),
            Repr::Stent(d) => d,
        };
        write!(f, "{}: {}", d.kind, d.message)?;
        match d.key.as_deref() {
            Some(key) if key.len() > 120 => {
                let cut = (0..=120).rev().find(|&i| key.is_char_boundary(i));
                let head = &key[..cut.unwrap_or(0)];
                write!(f, " (key {head:?}… ({} bytes))", key.len())
            }
            Some(key) => write!(f, " (key {key:?})"),
            None => Ok(()),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            Repr::Function(e) => Some(e),
            Repr::Stent(d) => Some(d.source.as_deref()?),
        }
    }
}

impl From<Error> for std::io::Error {
    fn from(err: Error) -> Self {
        std::io::Error::other(err)
    }
}
