//! The one place AWS SDK errors become stent errors.

use std::error::Error as StdError;
use std::fmt;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use stent_core::{Error, ErrorKind};

use crate::schema::Item;

/// What an error is about: the operation, the table and where requests go.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Context<'a> {
    pub(crate) op: &'a str,
    pub(crate) table: &'a str,
    /// The endpoint override, or a description of the AWS endpoint.
    pub(crate) endpoint: &'a str,
    pub(crate) key: Option<&'a str>,
}

/// How a service error answer is classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    MissingTable,
    Throttled,
    ServerFault,
    ValueTooLarge,
    KeyTooLarge,
    Credentials,
    Rejected,
}

/// Classifies a service error by its code, message and HTTP status.
pub(crate) fn classify(code: Option<&str>, message: Option<&str>, status: Option<u16>) -> Class {
    let message = message.unwrap_or_default();
    match code.unwrap_or_default() {
        "ResourceNotFoundException" => Class::MissingTable,
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "Throttling"
        | "RequestLimitExceeded"
        | "LimitExceededException"
        | "TransactionConflictException" => Class::Throttled,
        "InternalServerError" | "InternalFailure" | "ServiceUnavailable" => Class::ServerFault,
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignatureException"
        | "MissingAuthenticationTokenException"
        | "ExpiredTokenException"
        | "AccessDeniedException" => Class::Credentials,
        "ValidationException" if message.contains("Item size") => Class::ValueTooLarge,
        "ValidationException" if message.contains("key") && message.contains("size") => {
            Class::KeyTooLarge
        }
        _ if status.is_some_and(|s| s >= 500) => Class::ServerFault,
        _ => Class::Rejected,
    }
}

/// Converts the error of one SDK operation.
pub(crate) fn convert<E>(err: SdkError<E, HttpResponse>, cx: &Context<'_>) -> Error
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let Context {
        op,
        table,
        endpoint,
        ..
    } = *cx;
    let (kind, retryable, message) = match &err {
        SdkError::ServiceError(_) => {
            let code = err.code().unwrap_or("unknown error");
            let status = err.raw_response().map(|r| r.status().as_u16());
            match classify(err.code(), err.message(), status) {
                Class::MissingTable => (
                    ErrorKind::Config,
                    false,
                    format!(
                        "DynamoDB table {table:?} does not exist at {endpoint}; create it with \
                         DynamoDbStore::migrate() (development) or your infrastructure tooling"
                    ),
                ),
                Class::Throttled => (
                    ErrorKind::Busy,
                    true,
                    format!("DynamoDB throttled {op} on table {table:?} ({code}); retry later"),
                ),
                Class::ServerFault => (
                    ErrorKind::Unavailable,
                    true,
                    format!("DynamoDB at {endpoint} failed {op} on table {table:?} ({code})"),
                ),
                Class::ValueTooLarge => (
                    ErrorKind::ValueTooLarge,
                    false,
                    format!("DynamoDB refused {op} on table {table:?}: the item is over 400 KB"),
                ),
                Class::KeyTooLarge => (
                    ErrorKind::KeyTooLarge,
                    false,
                    format!(
                        "DynamoDB refused {op} on table {table:?}: the partition key is too long"
                    ),
                ),
                Class::Credentials => (
                    ErrorKind::Config,
                    false,
                    format!(
                        "DynamoDB at {endpoint} refused the credentials for {op} on table \
                         {table:?} ({code}); check the AWS credentials and IAM permissions"
                    ),
                ),
                Class::Rejected => (
                    ErrorKind::Store,
                    false,
                    format!("DynamoDB refused {op} on table {table:?} ({code})"),
                ),
            }
        }
        SdkError::TimeoutError(_) => (
            ErrorKind::Unavailable,
            true,
            format!("DynamoDB at {endpoint} did not answer {op} on table {table:?} in time"),
        ),
        SdkError::DispatchFailure(failure) => {
            let transient = failure.is_io() || failure.is_timeout() || failure.as_other().is_some();
            if transient {
                (
                    ErrorKind::Unavailable,
                    true,
                    format!("cannot reach DynamoDB at {endpoint} ({op} on table {table:?})"),
                )
            } else {
                (
                    ErrorKind::Config,
                    false,
                    format!(
                        "could not send {op} on table {table:?} to DynamoDB at {endpoint} \
                         (credentials, region or endpoint?)"
                    ),
                )
            }
        }
        SdkError::ResponseError(_) => (
            ErrorKind::Unavailable,
            true,
            format!(
                "unreadable answer from {endpoint} to {op} on table {table:?} (is it a \
                 DynamoDB endpoint?)"
            ),
        ),
        SdkError::ConstructionFailure(_) => (
            ErrorKind::Config,
            false,
            format!("could not build the DynamoDB {op} request for table {table:?}"),
        ),
        _ => (
            ErrorKind::Store,
            false,
            format!("DynamoDB {op} on table {table:?} failed"),
        ),
    };
    let source: Box<dyn StdError + Send + Sync> = match err.into_source() {
        Ok(source) => source,
        Err(err) => Box::new(err),
    };
    let mut e = Error::new(kind, message)
        .set_retryable(retryable)
        .with_source(Cause::new(source));
    if let Some(key) = cx.key {
        e = e.with_key(key);
    }
    e
}

/// Whether a conditional write was refused because its condition did not hold: contention,
/// a normal answer rather than an error.
pub(crate) fn is_condition_failure<E: ProvideErrorMetadata>(
    err: &SdkError<E, HttpResponse>,
) -> bool {
    matches!(err, SdkError::ServiceError(_))
        && err.code() == Some("ConditionalCheckFailedException")
}

/// The error of a conditional write that can carry the item its condition failed on.
pub(crate) trait ConditionalWriteError {
    /// The item returned with a failed condition (`ALL_OLD`), if any.
    fn failed_on(&self) -> Option<&Item>;
}

impl ConditionalWriteError for UpdateItemError {
    fn failed_on(&self) -> Option<&Item> {
        match self {
            UpdateItemError::ConditionalCheckFailedException(e) => e.item(),
            _ => None,
        }
    }
}

impl ConditionalWriteError for PutItemError {
    fn failed_on(&self) -> Option<&Item> {
        match self {
            PutItemError::ConditionalCheckFailedException(e) => e.item(),
            _ => None,
        }
    }
}

/// The item a conditional write returned when its condition failed (`ALL_OLD`).
pub(crate) fn condition_failure_item<E: ConditionalWriteError>(
    err: &SdkError<E, HttpResponse>,
) -> Option<Item> {
    err.as_service_error()?.failed_on().cloned()
}

/// Whether the service answered with `code` (e.g. `ResourceInUseException`).
pub(crate) fn is_service_error<E: ProvideErrorMetadata>(
    err: &SdkError<E, HttpResponse>,
    code: &str,
) -> bool {
    matches!(err, SdkError::ServiceError(_)) && err.code() == Some(code)
}

/// Whether enabling TTL failed only because it is already enabled (by a concurrent caller).
pub(crate) fn is_ttl_already_enabled<E: ProvideErrorMetadata>(
    err: &SdkError<E, HttpResponse>,
) -> bool {
    is_service_error(err, "ValidationException")
        && err.message().is_some_and(|m| m.contains("already enabled"))
}

/// The SDK's error, displayed with its whole chain of causes: the SDK's own errors show
/// only their category ("io error"), while what happened ("Connection refused") is deeper.
#[derive(Debug)]
struct Cause {
    chain: String,
    inner: Box<dyn StdError + Send + Sync>,
}

impl Cause {
    fn new(inner: Box<dyn StdError + Send + Sync>) -> Self {
        let mut parts: Vec<String> = Vec::new();
        let mut next: Option<&(dyn StdError + 'static)> = Some(&*inner);
        while let Some(err) = next {
            let shown = err.to_string();
            if parts.last() != Some(&shown) {
                parts.push(shown);
            }
            next = err.source();
        }
        Cause {
            chain: parts.join(": "),
            inner,
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.chain)
    }
}

impl StdError for Cause {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.inner)
    }
}

/// What to set when no credentials resolve.
const SET_CREDENTIALS: &str = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (for a local \
     server such as moto or DynamoDB Local any values work, e.g. test/test), or AWS_PROFILE, or \
     give them with DynamoDbStoreBuilder::credentials";

/// Converts the failure to resolve credentials when a store is built: no credentials, or a
/// broken configuration, is a [`ErrorKind::Config`] error saying what to set; a provider that
/// timed out or failed (instance metadata, STS) is [`ErrorKind::Unavailable`] and retryable.
pub(crate) fn credentials_error(err: CredentialsError, endpoint: &str) -> Error {
    match &err {
        CredentialsError::CredentialsNotLoaded(_) => Error::config(format!(
            "no AWS credentials found for DynamoDB at {endpoint}: {SET_CREDENTIALS}"
        )),
        CredentialsError::InvalidConfiguration(_) => Error::config(format!(
            "the AWS credentials configuration is invalid ({err}); {SET_CREDENTIALS}"
        )),
        _ => Error::new(
            ErrorKind::Unavailable,
            format!("resolving AWS credentials for DynamoDB at {endpoint} failed ({err})"),
        ),
    }
    .with_source(err)
}

/// The error when the client has no credentials provider at all.
pub(crate) fn no_credentials_provider(endpoint: &str) -> Error {
    Error::config(format!(
        "the DynamoDB client for {endpoint} has no credentials provider: {SET_CREDENTIALS}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ConnectorError;
    use aws_sdk_dynamodb::operation::get_item::GetItemError;

    const CX: Context<'static> = Context {
        op: "get_item",
        table: "results",
        endpoint: "http://127.0.0.1:1",
        key: Some("k"),
    };

    #[test]
    fn throttling_and_server_faults_are_retryable() {
        for code in [
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "RequestLimitExceeded",
        ] {
            assert_eq!(
                classify(Some(code), None, Some(400)),
                Class::Throttled,
                "{code}"
            );
        }
        assert_eq!(
            classify(Some("InternalServerError"), None, Some(500)),
            Class::ServerFault
        );
        assert_eq!(
            classify(Some("Whatever"), None, Some(503)),
            Class::ServerFault
        );
        assert_eq!(
            classify(Some("ResourceNotFoundException"), None, Some(400)),
            Class::MissingTable
        );
        assert_eq!(
            classify(
                Some("ValidationException"),
                Some("Item size has exceeded the maximum allowed size"),
                Some(400)
            ),
            Class::ValueTooLarge
        );
        assert_eq!(
            classify(
                Some("ValidationException"),
                Some("bad expression"),
                Some(400)
            ),
            Class::Rejected
        );
    }

    #[test]
    fn connection_failures_are_retryable_and_name_the_endpoint() {
        let refused =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let err: SdkError<GetItemError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(refused)));
        let e = convert(err, &CX);
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_retryable());
        assert_eq!(e.key(), Some("k"));
        let shown = e.to_string();
        assert!(shown.contains("http://127.0.0.1:1"), "{shown}");
        let cause = std::error::Error::source(&e)
            .expect("the driver error")
            .to_string();
        assert!(cause.contains("Connection refused"), "{cause}");
    }

    #[test]
    fn timeouts_are_retryable() {
        let err: SdkError<GetItemError, HttpResponse> =
            SdkError::timeout_error("operation timed out");
        let e = convert(err, &CX);
        assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::Unavailable, true));
    }

    #[test]
    fn construction_failures_are_configuration_errors() {
        let err: SdkError<GetItemError, HttpResponse> = SdkError::construction_failure("no region");
        let e = convert(err, &CX);
        assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::Config, false));
        assert!(e.to_string().contains("results"), "{e}");
    }
}
