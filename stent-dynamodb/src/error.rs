//! The one place the SDK's request errors become stent errors.

use std::error::Error as StdError;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use stent_core::ErrorKind::{Busy, Config, KeyTooLarge, Store, Unavailable, ValueTooLarge};
use stent_core::{Error, ErrorKind, Result};

use crate::DynamoDbStore;

/// The error of an SDK operation.
pub(crate) trait OpError: ProvideErrorMetadata + StdError + Send + Sync + 'static {}

impl<E: ProvideErrorMetadata + StdError + Send + Sync + 'static> OpError for E {}

/// The kind of a service error answer, by its code, message and HTTP status, and what to say.
fn classify(code: &str, message: &str, status: Option<u16>) -> (ErrorKind, &'static str) {
    const MISSING: &str = "the table does not exist; create it with DynamoDbStore::migrate() \
         (development) or your infrastructure tooling";
    const REFUSED: &str = "credentials refused; check the AWS credentials and IAM permissions";
    match code {
        "ResourceNotFoundException" => (Config, MISSING),
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "Throttling"
        | "RequestLimitExceeded"
        | "LimitExceededException"
        | "TransactionConflictException" => (Busy, "throttled; retry later"),
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignatureException"
        | "MissingAuthenticationTokenException"
        | "ExpiredTokenException"
        | "AccessDeniedException" => (Config, REFUSED),
        "ValidationException" if message.contains("Item size") => {
            (ValueTooLarge, "the item is over 400 KB")
        }
        "ValidationException" if message.contains("key") && message.contains("size") => {
            (KeyTooLarge, "the partition key is too long")
        }
        "InternalServerError" | "InternalFailure" | "ServiceUnavailable" => {
            (Unavailable, "server failure")
        }
        _ if status.is_some_and(|s| s >= 500) => (Unavailable, "server failure"),
        _ => (Store, "refused"),
    }
}

/// Converts the error of SDK operation `op` of `store` on `key` (if any), naming the table
/// and the endpoint; throttling and unavailability are retryable.
pub(crate) fn convert<E: OpError>(
    err: SdkError<E, HttpResponse>,
    store: &DynamoDbStore,
    op: &str,
    key: Option<&str>,
) -> Error {
    let (kind, what) = match &err {
        SdkError::ServiceError(_) => {
            let status = err.raw_response().map(|r| r.status().as_u16());
            let message = err.message().unwrap_or_default();
            classify(err.code().unwrap_or_default(), message, status)
        }
        SdkError::TimeoutError(_) => (Unavailable, "no answer in time"),
        SdkError::DispatchFailure(f) if f.is_io() || f.is_timeout() || f.as_other().is_some() => {
            (Unavailable, "cannot reach the endpoint")
        }
        SdkError::DispatchFailure(_) => (Config, "cannot send (credentials, region or endpoint?)"),
        SdkError::ResponseError(_) => (Unavailable, "unreadable answer (not a DynamoDB endpoint?)"),
        SdkError::ConstructionFailure(_) => (Config, "could not build the request"),
        _ => (Store, "failed"),
    };
    let code = err.code().map(|c| format!(" ({c})")).unwrap_or_default();
    let (table, endpoint) = (store.table(), store.endpoint());
    let message = format!("DynamoDB {op} on table {table:?} at {endpoint}: {what}{code}");
    // The whole chain of causes: the SDK's own errors show only their category ("io
    // error"), while what happened ("Connection refused") is deeper.
    let source = err.into_source().unwrap_or_else(|err| Box::new(err));
    let chain = std::iter::successors(Some(&*source as &dyn StdError), |e| (*e).source());
    let mut causes: Vec<String> = chain.map(ToString::to_string).collect();
    causes.dedup();
    let e = Error::new(kind, message).with_source(causes.join(": "));
    if let Some(k) = key { e.with_key(k) } else { e }
}

/// Whether a conditional write was applied: `false` when its condition did not hold
/// (contention, an answer rather than an error).
pub(crate) fn applied<T, E: OpError>(
    out: Result<T, SdkError<E, HttpResponse>>,
    store: &DynamoDbStore,
    op: &str,
    key: Option<&str>,
) -> Result<bool> {
    match out {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
        Err(e) => Err(convert(e, store, op, key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ConnectorError;
    use aws_sdk_dynamodb::operation::get_item::GetItemError;

    /// The error of a `get_item` on key `k` of table `results` at `http://127.0.0.1:1`.
    fn convert(err: SdkError<GetItemError, HttpResponse>) -> Error {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .build();
        let client = aws_sdk_dynamodb::Client::from_conf(config);
        let builder = crate::DynamoDbStoreBuilder::default()
            .table("results")
            .unwrap();
        let store = DynamoDbStore::new(client, Some("http://127.0.0.1:1".into()), builder);
        super::convert(err, &store, "get_item", Some("k"))
    }

    #[test]
    fn throttling_and_server_faults_are_retryable() {
        for code in [
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "RequestLimitExceeded",
        ] {
            assert_eq!(classify(code, "", Some(400)).0, ErrorKind::Busy, "{code}");
        }
        let kind = |code, message, status| classify(code, message, Some(status)).0;
        assert_eq!(kind("InternalServerError", "", 500), ErrorKind::Unavailable);
        assert_eq!(kind("Whatever", "", 503), ErrorKind::Unavailable);
        let missing = classify("ResourceNotFoundException", "", Some(400));
        assert_eq!(missing.0, ErrorKind::Config);
        assert!(missing.1.contains("does not exist"), "{}", missing.1);
        let too_big = "Item size has exceeded the maximum allowed size";
        assert_eq!(
            kind("ValidationException", too_big, 400),
            ErrorKind::ValueTooLarge
        );
        assert_eq!(
            kind("ValidationException", "bad expression", 400),
            ErrorKind::Store
        );
        for retryable in [ErrorKind::Busy, ErrorKind::Unavailable] {
            assert!(Error::new(retryable, "").is_retryable());
        }
        for not in [
            ErrorKind::Config,
            ErrorKind::Store,
            ErrorKind::ValueTooLarge,
        ] {
            assert!(!Error::new(not, "").is_retryable());
        }
    }

    #[test]
    fn connection_failures_are_retryable_and_name_the_endpoint() {
        let refused =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let err: SdkError<GetItemError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(refused)));
        let e = convert(err);
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
        let e = convert(err);
        assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::Unavailable, true));
    }

    #[test]
    fn construction_failures_are_configuration_errors() {
        let err: SdkError<GetItemError, HttpResponse> = SdkError::construction_failure("no region");
        let e = convert(err);
        assert_eq!((e.kind(), e.is_retryable()), (ErrorKind::Config, false));
        assert!(e.to_string().contains("results"), "{e}");
    }
}
