//! The builder, and validation of what it is given.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::ProfileFileRegionProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{Credentials, ProvideCredentials as _, Region};
use aws_sdk_dynamodb::config::{SharedCredentialsProvider, SharedHttpClient};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use stent_core::store::{percent_decode, take_url_params};
use stent_core::{Clock, Error, ErrorKind, Namespace, Result, SystemClock};

use crate::store::DynamoDbStore;

/// The region with an endpoint override when none is configured: local servers accept any.
const LOCAL_REGION: &str = "us-east-1";

/// Longest key prefix accepted.
const MAX_PREFIX_LEN: usize = 64;

/// A credentials provider, if a client has one.
type Creds = Option<SharedCredentialsProvider>;

/// What to set when no credentials resolve.
const SET_CREDENTIALS: &str = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (for a local \
     server such as moto or DynamoDB Local any values work, e.g. test/test), or AWS_PROFILE, or \
     give them with DynamoDbStoreBuilder::credentials";

/// Builds a [`DynamoDbStore`]. The SDK is configured from the environment (credential chain,
/// `AWS_REGION` or the profile's region) unless [`sdk_config`](Self::sdk_config) gives a
/// configuration; the settings below override either. A [`client`](Self::client) is used
/// exactly as configured: endpoint, region, credentials, timeout and retries here are ignored.
#[derive(Clone, Debug)]
pub struct DynamoDbStoreBuilder {
    pub(crate) table: String,
    pub(crate) key_prefix: String,
    endpoint_url: Option<String>,
    region: Option<String>,
    credentials: Option<Hidden<SharedCredentialsProvider>>,
    timeout: Duration,
    max_attempts: u32,
    pub(crate) clock: Arc<dyn Clock>,
    create_tables: bool,
    source: Source,
}

/// Where the SDK client comes from: the environment, a configuration, or a client used as is.
#[derive(Clone, Debug)]
enum Source {
    Environment,
    SdkConfig(Hidden<Box<SdkConfig>>),
    Client(Hidden<Client>),
}

/// What `Debug` does not show: credentials, and what may hold them.
#[derive(Clone)]
pub(crate) struct Hidden<T>(pub(crate) T);

impl<T> fmt::Debug for Hidden<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

impl Default for DynamoDbStoreBuilder {
    fn default() -> Self {
        DynamoDbStoreBuilder {
            table: crate::DEFAULT_TABLE.to_owned(),
            key_prefix: String::new(),
            endpoint_url: None,
            region: None,
            credentials: None,
            timeout: crate::DEFAULT_TIMEOUT,
            max_attempts: 3,
            clock: Arc::new(SystemClock),
            create_tables: false,
            source: Source::Environment,
        }
    }
}

/// Whether `name` is `len` bytes of ASCII letters, digits and `extra`.
fn charset(name: &str, len: std::ops::RangeInclusive<usize>, extra: &[u8]) -> bool {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || extra.contains(&b);
    len.contains(&name.len()) && name.bytes().all(allowed)
}

impl DynamoDbStoreBuilder {
    /// The table (default [`DEFAULT_TABLE`](crate::DEFAULT_TABLE)): 3 to 255 characters of
    /// `A-Z a-z 0-9 _ - .`, as DynamoDB requires.
    pub fn table(mut self, name: impl Into<String>) -> Result<Self> {
        self.table = name.into();
        if charset(&self.table, 3..=255, b"_-.") {
            return Ok(self);
        }
        Err(Error::config(format!(
            "invalid DynamoDB table name {:?}: use 3 to 255 characters of A-Z, a-z, 0-9, '_', \
             '-' and '.'",
            self.table
        )))
    }

    /// Keeps this store's records apart from others in the same table: partition keys
    /// become `{prefix}#{namespace}#{key}`. 1 to 64 characters of `A-Z a-z 0-9 _ - . :`,
    /// other than a namespace name (so prefixed and unprefixed keys never collide).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Result<Self> {
        self.key_prefix = prefix.into();
        let prefix = &self.key_prefix;
        if charset(prefix, 1..=MAX_PREFIX_LEN, b"_-.:") && prefix.parse::<Namespace>().is_err() {
            return Ok(self);
        }
        let namespaces = Namespace::ALL.map(|ns| format!("{:?}", ns.as_str()));
        Err(Error::config(format!(
            "invalid key prefix {prefix:?}: use 1 to {MAX_PREFIX_LEN} characters of A-Z, a-z, \
             0-9, '_', '-', '.' and ':', other than a namespace name ({})",
            namespaces.join(", ")
        )))
    }

    /// Sends requests to this endpoint instead of AWS's: an `http://` or `https://` URL with
    /// a host, e.g. `http://127.0.0.1:5599` for moto or DynamoDB Local. With an endpoint
    /// override and no region configured anywhere, the region is `us-east-1`.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Result<Self> {
        let url = url.into();
        let host = (url.strip_prefix("http://")).or_else(|| url.strip_prefix("https://"));
        if host.is_some_and(|h| !h.is_empty() && !h.starts_with(['/', '?', '#', ':'])) {
            self.endpoint_url = Some(url);
            return Ok(self);
        }
        Err(Error::config(format!(
            "invalid DynamoDB endpoint {url:?}: expected http://host:port or https://host"
        )))
    }

    /// The table, endpoint, region and key prefix a URL names, in the form of the crate docs'
    /// [Configuration](crate#configuration), checked as the setters check them.
    pub fn url(mut self, url: &str) -> Result<Self> {
        let (rest, options) = take_url_params(url, &["endpoint", "region", "prefix"]);
        let Some(table) = rest.strip_prefix("dynamodb://") else {
            let message = format!("not a dynamodb URL: {url:?} (expected dynamodb://table)");
            return Err(Error::config(message));
        };
        if let Some((_, unknown)) = table.split_once('?') {
            let name = unknown.split(['=', '&']).next().unwrap_or_default();
            return Err(Error::config(format!(
                "unknown option {name:?} in dynamodb URL (known: endpoint, region, prefix)"
            )));
        }
        if !table.is_empty() {
            self = self.table(table)?;
        }
        for (name, value) in options {
            let value = String::from_utf8(percent_decode(&value))
                .map_err(|_| Error::config(format!("{name} in {url:?} is not UTF-8")))?;
            self = match name {
                "endpoint" => self.endpoint_url(value)?,
                "region" => self.region(value),
                _ => self.key_prefix(value)?,
            };
        }
        Ok(self)
    }

    stent_core::builder_setters! {
        /// The AWS region, overriding `AWS_REGION` and the profile.
        region(region: impl Into<String>) => region = Some(region.into());

        /// Static credentials, overriding the standard credential chain (for local servers,
        /// any values work).
        credentials(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) =>
            credentials = Some(Hidden(SharedCredentialsProvider::new(Credentials::new(
                access_key_id, secret_access_key, None, None, "stent-dynamodb",
            ))));

        /// How long one operation may take, SDK retries included (default
        /// [`DEFAULT_TIMEOUT`](crate::DEFAULT_TIMEOUT)); past it the call fails with a
        /// retryable [`Unavailable`](stent_core::ErrorKind::Unavailable) error.
        timeout(timeout: Duration) => timeout = timeout;

        /// How many times the SDK tries one request on throttling, 5xx and connection errors
        /// before giving up (default 3, at least 1).
        max_attempts(attempts: u32) => max_attempts = attempts.max(1);

        /// The clock leases and expiry are decided by (default: the system clock). Processes
        /// sharing a table need synchronized clocks.
        clock(clock: impl Clock) => clock = Arc::new(clock);

        /// Starts from this SDK configuration instead of the environment (with this crate's
        /// HTTP client if it has none); the settings of this builder still apply when set.
        sdk_config(config: &SdkConfig) =>
            source = Source::SdkConfig(Hidden(Box::new(config.clone())));

        /// Uses this client exactly as configured. It needs an HTTP client: `aws-sdk-dynamodb`'s
        /// default features provide one.
        client(client: Client) => source = Source::Client(Hidden(client));

        /// Whether [`build`](Self::build) runs [`DynamoDbStore::migrate`] (default `false`:
        /// meant for development and tests).
        create_tables(yes: bool) => create_tables = yes;
    }

    /// Configures the SDK client and resolves its credentials once (a [`client`](Self::client)
    /// keeps its own, unchecked), with the errors of the crate docs'
    /// [Configuration](crate#configuration). Sends no request unless told to
    /// [create the table](Self::create_tables).
    pub async fn build(self) -> Result<DynamoDbStore> {
        let (client, endpoint, credentials) = match &self.source {
            Source::Client(client) => (client.0.clone(), None, None),
            Source::SdkConfig(sdk) => self.configure(&sdk.0),
            Source::Environment => self.configure(&self.load_environment().await),
        };
        if client.config().region().is_none() {
            return Err(Error::config(
                "no AWS region is configured for DynamoDB: set AWS_REGION, a profile region, \
                 or DynamoDbStoreBuilder::region",
            ));
        }
        let (timeout, create_tables) = (self.timeout, self.create_tables);
        let store = DynamoDbStore::new(client, endpoint, self);
        if let Some(credentials) = credentials {
            check_credentials(credentials, timeout, store.endpoint()).await?;
        }
        if create_tables {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// The environment's SDK configuration with this crate's HTTP client and this builder's
    /// region; with an endpoint override and none set, the environment's or [`LOCAL_REGION`]
    /// (the default chain would ask EC2 instance metadata, slowly).
    async fn load_environment(&self) -> SdkConfig {
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).http_client(https_client());
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        } else if self.endpoint_url.is_some() {
            let region = RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new());
            let region = region.or_else(ProfileFileRegionProvider::new());
            loader = loader.region(region.or_else(Region::from_static(LOCAL_REGION)));
        }
        loader.load().await
    }

    /// A client of `sdk` with this builder's settings, its endpoint override, and the
    /// credentials it signs with (to resolve in `build`; `Some(None)`: it has none).
    fn configure(&self, sdk: &SdkConfig) -> (Client, Option<String>, Option<Creds>) {
        let credentials = self.credentials.as_ref().map(|c| c.0.clone());
        let credentials = credentials.or_else(|| sdk.credentials_provider());
        let endpoint = self.endpoint_url.clone();
        let endpoint = endpoint.or_else(|| sdk.endpoint_url().map(str::to_owned));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(self.timeout.min(Duration::from_secs(3)))
            .operation_timeout(self.timeout);
        let mut config = aws_sdk_dynamodb::config::Builder::from(sdk)
            .timeout_config(timeouts.build())
            .retry_config(RetryConfig::standard().with_max_attempts(self.max_attempts));
        config.set_http_client(Some(sdk.http_client().unwrap_or_else(https_client)));
        config.set_credentials_provider(credentials.clone());
        let local = (self.endpoint_url.is_some()).then(|| Region::from_static(LOCAL_REGION));
        let region = (self.region.clone()).map(Region::new);
        config.set_region(region.or_else(|| sdk.region().cloned()).or(local));
        config.set_endpoint_url(endpoint.clone());
        let client = Client::from_conf(config.build());
        (client, endpoint, Some(credentials))
    }
}

/// Resolves the credentials once, with the errors [`DynamoDbStoreBuilder::build`] lists (at
/// the first call the SDK would name only the last source it tried: instance metadata).
async fn check_credentials(provider: Creds, timeout: Duration, endpoint: &str) -> Result<()> {
    let Some(provider) = provider else {
        return Err(Error::config(format!(
            "the DynamoDB client for {endpoint} has no credentials provider: {SET_CREDENTIALS}"
        )));
    };
    let unavailable = |what: String| {
        let message = format!("resolving AWS credentials for DynamoDB at {endpoint} {what}");
        Error::new(ErrorKind::Unavailable, message)
    };
    let err = match tokio::time::timeout(timeout, provider.provide_credentials()).await {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(err)) => err,
        Err(_) => return Err(unavailable(format!("took more than {timeout:?}"))),
    };
    Err(match &err {
        CredentialsError::CredentialsNotLoaded(_) => Error::config(format!(
            "no AWS credentials found for DynamoDB at {endpoint}: {SET_CREDENTIALS}"
        )),
        CredentialsError::InvalidConfiguration(_) => Error::config(format!(
            "the AWS credentials configuration is invalid ({err}); {SET_CREDENTIALS}"
        )),
        _ => unavailable(format!("failed ({err})")),
    }
    .with_source(err))
}

/// The HTTP client of stores this crate configures: hyper with rustls on *ring*.
fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// A builder configured from `STENT_DYNAMODB_URL` (endpoint override; unset or empty for
/// AWS) and `STENT_DYNAMODB_TABLE`, read through `var`.
pub(crate) fn builder_from_vars(var: fn(&str) -> Option<String>) -> Result<DynamoDbStoreBuilder> {
    let named = |v: &'static str| move |e: Error| Error::config(format!("{v}: {}", e.message()));
    let mut builder = DynamoDbStoreBuilder::default();
    if let Some(url) = var(crate::ENV_URL).filter(|u| !u.is_empty()) {
        builder = builder.endpoint_url(url).map_err(named(crate::ENV_URL))?;
    }
    if let Some(table) = var(crate::ENV_TABLE).filter(|t| !t.is_empty()) {
        builder = builder.table(table).map_err(named(crate::ENV_TABLE))?;
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_follow_dynamodb_rules() {
        for ok in ["abc", "stent", "my-app.results_v2", &"t".repeat(255)] {
            DynamoDbStoreBuilder::default().table(ok).unwrap();
        }
        for bad in ["", "ab", "has space", "slash/name", "ünï", &"t".repeat(256)] {
            let e = DynamoDbStoreBuilder::default().table(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn prefixes_cannot_collide_with_namespaces() {
        let prefix = |p: &str| DynamoDbStoreBuilder::default().key_prefix(p);
        prefix("c0123456789abcdef").unwrap();
        prefix("app:billing-v2").unwrap();
        for bad in [
            "",
            "a#b",
            "idempotency",
            "cache",
            "progress",
            "with space",
            &"p".repeat(65),
        ] {
            assert_eq!(
                prefix(bad).unwrap_err().kind(),
                ErrorKind::Config,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn endpoints_must_be_http_urls() {
        let endpoint = |url: &str| DynamoDbStoreBuilder::default().endpoint_url(url);
        endpoint("http://127.0.0.1:5599").unwrap();
        endpoint("https://dynamodb.eu-west-1.amazonaws.com").unwrap();
        for bad in ["127.0.0.1:5599", "http://", "ftp://h", "http://:80"] {
            let e = endpoint(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn environment_sets_endpoint_and_table() {
        let b = builder_from_vars(|name| match name {
            "STENT_DYNAMODB_URL" => Some("http://127.0.0.1:5599".into()),
            "STENT_DYNAMODB_TABLE" => Some("results".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(b.endpoint_url.as_deref(), Some("http://127.0.0.1:5599"));
        assert_eq!(b.table, "results");
        let b = builder_from_vars(|_| None).unwrap();
        assert_eq!(
            (b.endpoint_url, b.table.as_str()),
            (None, crate::DEFAULT_TABLE)
        );
        let e = builder_from_vars(|name| (name == "STENT_DYNAMODB_TABLE").then(|| "x".into()))
            .unwrap_err();
        assert!(
            e.to_string().contains("STENT_DYNAMODB_TABLE") && e.to_string().contains("\"x\""),
            "{e}"
        );
    }

    #[test]
    fn urls_name_table_endpoint_region_and_prefix() {
        let b = DynamoDbStoreBuilder::default().url(
            "dynamodb://results?endpoint=http%3A%2F%2F127.0.0.1%3A5599&region=eu-west-1&prefix=app",
        )
        .unwrap();
        assert_eq!(b.table, "results");
        assert_eq!(b.endpoint_url.as_deref(), Some("http://127.0.0.1:5599"));
        assert_eq!(b.region.as_deref(), Some("eu-west-1"));
        assert_eq!(b.key_prefix, "app");
        let b = DynamoDbStoreBuilder::default()
            .url("dynamodb://?endpoint=http://localhost:8000")
            .unwrap();
        assert_eq!(b.table, crate::DEFAULT_TABLE);
        assert_eq!(b.endpoint_url.as_deref(), Some("http://localhost:8000"));
        for bad in [
            "redis://x",
            "dynamodb://t",
            "dynamodb://table?colour=red",
            "dynamodb://table?endpoint=http://h:1&colour",
            "dynamodb://table?prefix=%zz",
        ] {
            let e = DynamoDbStoreBuilder::default().url(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{bad}");
            if bad.contains("colour") {
                assert!(e.to_string().contains(r#"unknown option "colour""#), "{e}");
            }
        }
    }

    #[test]
    fn debug_hides_credentials() {
        let b = DynamoDbStoreBuilder::default().credentials("AKIDEXAMPLE", "wJalrXUtnFEMI");
        let shown = format!("{b:?}");
        assert!(
            !shown.contains("wJalrXUtnFEMI") && !shown.contains("AKIDEXAMPLE"),
            "{shown}"
        );
    }
}
