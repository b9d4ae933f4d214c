//! [`ResultStore`] for DynamoDB: each operation sends what the crate docs' table lists.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata as _};
use aws_sdk_dynamodb::operation::delete_item::builders::DeleteItemFluentBuilder as DeleteItem;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder as UpdateItem;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, KeySchemaElement, KeyType,
    ReturnValuesOnConditionCheckFailure::AllOld, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus, WriteRequest,
};
use futures_util::{StreamExt as _, TryStreamExt as _};
use stent_core::store::{check_key_len, check_value_len};
use stent_core::{
    Capabilities, Claim, ClaimOutcome, Clock, Error, ErrorKind, LeaseToken, ListQuery, Namespace,
    Page, Record, RecordMeta, RecordState, Result, ResultStore, Timestamp,
};

use crate::config::{self, DynamoDbStoreBuilder, Hidden};
use crate::error::{applied, convert};
use crate::schema::{self, Item, OWNED_CONDITION, map, n, names, s};

/// DynamoDB's limit on the requests of one `BatchWriteItem`.
const BATCH_LEN: usize = 25;

/// How many conditional deletes `purge_expired` keeps in flight.
const PURGE_CONCURRENCY: usize = 8;

/// How long [`DynamoDbStore::migrate`] waits for a new table to become active.
const TABLE_READY_TIMEOUT: Duration = Duration::from_secs(300);

/// A [`ResultStore`] in one DynamoDB table, one item per record (the crate docs show the item
/// and what each operation sends). Cheap to clone: clones share the SDK client.
#[derive(Clone, Debug)]
pub struct DynamoDbStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Hidden<Client>,
    table: String,
    key_prefix: String,
    /// The endpoint override, or a description of the AWS endpoint, for error messages.
    endpoint: String,
    clock: Arc<dyn Clock>,
    /// Each namespace's partition-key prefix, by [`Namespace`] order.
    ns_prefixes: [String; Namespace::ALL.len()],
}

impl DynamoDbStore {
    pub(crate) fn new(client: Client, endpoint: Option<String>, b: DynamoDbStoreBuilder) -> Self {
        let endpoint = endpoint.unwrap_or_else(|| match client.config().region() {
            Some(region) => format!("the DynamoDB endpoint of region {region}"),
            None => "the client's DynamoDB endpoint".to_owned(),
        });
        let ns_prefixes = Namespace::ALL.map(|ns| match b.key_prefix.as_str() {
            "" => format!("{ns}#"),
            prefix => format!("{prefix}#{ns}#"),
        });
        let inner = Arc::new(Inner {
            client: Hidden(client),
            table: b.table,
            key_prefix: b.key_prefix,
            endpoint,
            clock: b.clock,
            ns_prefixes,
        });
        DynamoDbStore { inner }
    }

    /// A builder with the defaults: the default table, no key prefix, the SDK from the environment.
    pub fn builder() -> DynamoDbStoreBuilder {
        DynamoDbStoreBuilder::default()
    }

    /// A store configured from [`ENV_URL`](crate::ENV_URL), [`ENV_TABLE`](crate::ENV_TABLE) and
    /// the AWS SDK's own variables (`AWS_REGION`, credentials, profile).
    pub async fn from_env() -> Result<Self> {
        let builder = config::builder_from_vars(|name| std::env::var(name).ok())?;
        builder.build().await
    }

    /// Opens the store a URL names: `dynamodb://TABLE?endpoint=…&region=…&prefix=…` (see
    /// [`DynamoDbStoreBuilder::url`]).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder().url(url)?.build().await
    }

    /// A store on an existing SDK client, in `table`, on the system clock and with no key
    /// prefix (use [`builder`](Self::builder) and [`DynamoDbStoreBuilder::client`] for more).
    pub fn from_client(client: Client, table: &str) -> Result<Self> {
        Ok(Self::new(client, None, Self::builder().table(table)?))
    }

    /// The SDK client, for your own requests against the table.
    pub fn client(&self) -> &Client {
        &self.inner.client.0
    }

    /// The table.
    pub fn table(&self) -> &str {
        &self.inner.table
    }

    /// The key prefix (empty when none is set).
    pub fn key_prefix(&self) -> &str {
        &self.inner.key_prefix
    }

    /// The partition key (`pk`) of `key` in `ns`, as stored.
    pub fn partition_key(&self, ns: Namespace, key: &str) -> String {
        format!("{}{key}", self.ns_prefix(ns))
    }

    pub(crate) fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// Creates the table of the crate docs (one that exists is left as it is, if its key is
    /// stent's: else a `Config` error), waits until it is active (`Unavailable` after 5 minutes)
    /// and enables DynamoDB's TTL on [`ttl`](crate::TTL_ATTRIBUTE). Safe to call concurrently
    /// and repeatedly; meant for development and tests.
    pub async fn migrate(&self) -> Result<()> {
        let (client, table, endpoint) = (self.client(), self.table(), self.endpoint());
        let pk = AttributeDefinition::builder().attribute_name("pk");
        let pk = built(pk.attribute_type(ScalarAttributeType::S).build())?;
        let hash = KeySchemaElement::builder().attribute_name("pk");
        let hash = built(hash.key_type(KeyType::Hash).build())?;
        let create = client.create_table().key_schema(hash.clone());
        let create = create.table_name(table).attribute_definitions(pk.clone());
        match create.billing_mode(BillingMode::PayPerRequest).send().await {
            Ok(_) => tracing::info!(%table, %endpoint, "created DynamoDB table"),
            // It exists already, or another process created it first.
            Err(e) if e.code() == Some("ResourceInUseException") => {}
            Err(e) => return Err(convert(e, self, "create_table", None)),
        }
        let started = Instant::now();
        loop {
            // A table just created may not be described yet.
            let described = match client.describe_table().table_name(table).send().await {
                Ok(out) => out.table,
                Err(e) if e.code() == Some("ResourceNotFoundException") => None,
                Err(e) => return Err(convert(e, self, "describe_table", None)),
            };
            if let Some(t) = described {
                if t.key_schema() != [hash.clone()] || !t.attribute_definitions().contains(&pk) {
                    let key =
                        |k: &KeySchemaElement| format!("{} ({})", k.attribute_name(), k.key_type());
                    let key: Vec<_> = t.key_schema().iter().map(key).collect();
                    return Err(Error::config(format!(
                        "DynamoDB table {table:?} at {endpoint} has key schema [{}]; stent needs \
                         a table whose only key is the partition key \"pk\" of type string \
                         (choose another table)",
                        key.join(", ")
                    )));
                }
                if t.table_status() != Some(&TableStatus::Creating) {
                    break;
                }
            }
            if started.elapsed() > TABLE_READY_TIMEOUT {
                let secs = TABLE_READY_TIMEOUT.as_secs();
                let message =
                    format!("DynamoDB table {table:?} at {endpoint} is not active after {secs} s");
                return Err(Error::new(ErrorKind::Unavailable, message));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let describe = client.describe_time_to_live().table_name(table);
        let ttl = describe.send().await;
        let ttl = ttl.map_err(|e| convert(e, self, "describe_time_to_live", None))?;
        let on = [TimeToLiveStatus::Enabled, TimeToLiveStatus::Enabling];
        if let Some(ttl) = ttl.time_to_live_description()
            && let Some(attribute) = ttl.attribute_name()
            && ttl.time_to_live_status().is_some_and(|s| on.contains(s))
        {
            if attribute != crate::TTL_ATTRIBUTE {
                tracing::warn!(
                    %table,
                    attribute,
                    "the table's TTL is enabled on another attribute; expired stent records \
                     stay until purge_expired removes them"
                );
            }
            return Ok(());
        }
        let spec = TimeToLiveSpecification::builder().attribute_name(crate::TTL_ATTRIBUTE);
        let spec = built(spec.enabled(true).build())?;
        let update = client.update_time_to_live().table_name(table);
        match update.time_to_live_specification(spec).send().await {
            Ok(_) => Ok(()),
            // A concurrent migrate enabled it first.
            Err(e) if e.message().is_some_and(|m| m.contains("already enabled")) => Ok(()),
            Err(e) => Err(convert(e, self, "update_time_to_live", None)),
        }
    }

    fn ns_prefix(&self, ns: Namespace) -> &str {
        &self.inner.ns_prefixes[ns as usize]
    }

    /// The partition key of `key`, once the key is known to fit.
    fn pk(&self, ns: Namespace, key: &str) -> Result<AttributeValue> {
        check_key_len(&self.capabilities(), key)?;
        Ok(s(self.partition_key(ns, key)))
    }

    /// A `DeleteItem` of partition key `pk` under `condition`, whose placeholders `values` fill.
    fn delete_if(&self, pk: AttributeValue, condition: &str, values: Option<Item>) -> DeleteItem {
        self.client()
            .delete_item()
            .table_name(self.table())
            .key("pk", pk)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names(&[condition])))
            .set_expression_attribute_values(values)
    }

    /// An `UpdateItem` of `pk` under [`OWNED_CONDITION`], whose placeholders `values` fill.
    fn update_owned(&self, pk: AttributeValue, update: &str, values: Item) -> UpdateItem {
        self.client()
            .update_item()
            .table_name(self.table())
            .key("pk", pk)
            .update_expression(update)
            .condition_expression(OWNED_CONDITION)
            .set_expression_attribute_names(Some(names(&[update, OWNED_CONDITION])))
            .set_expression_attribute_values(Some(values))
    }

    /// Every item matching `filter`, across all pages of a consistent `Scan`.
    async fn scan(&self, filter: &str, values: Item, project: Option<&str>) -> Result<Vec<Item>> {
        self.client()
            .scan()
            .table_name(self.table())
            .filter_expression(filter)
            .set_projection_expression(project.map(str::to_owned))
            .set_expression_attribute_names(Some(names(&[filter, project.unwrap_or_default()])))
            .set_expression_attribute_values(Some(values))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| convert(e, self, "scan", None))
    }

    /// The partition keys of this store's items in `ns`, only those expired at `expired_at` if set.
    async fn scan_keys(&self, ns: Namespace, expired_at: Option<Timestamp>) -> Result<Vec<String>> {
        let mut filter = "begins_with(#pk, :prefix)".to_owned();
        let mut values = map([(":prefix", s(self.ns_prefix(ns)))]);
        if let Some(now) = expired_at {
            filter.push_str(" AND #expires_ms <= :now");
            values.insert(":now".to_owned(), n(now.as_millis()));
        }
        let items = self.scan(&filter, values, Some("#pk")).await?;
        let pk = |mut item: Item| item.remove("pk")?.as_s().ok().cloned();
        Ok(items.into_iter().filter_map(pk).collect())
    }
}

/// A request part the SDK's builder checked.
fn built<T>(part: std::result::Result<T, BuildError>) -> Result<T> {
    part.map_err(|e| Error::new(ErrorKind::Store, "invalid DynamoDB request").with_source(e))
}

#[async_trait]
impl ResultStore for DynamoDbStore {
    fn capabilities(&self) -> Capabilities {
        // The same limit in every namespace: the longest namespace prefix decides.
        let longest = self.inner.ns_prefixes.iter().map(String::len).max();
        Capabilities::new()
            .native_ttl(true)
            .shared(true)
            .durable(true)
            .max_key_len(Some(crate::MAX_PARTITION_KEY_LEN - longest.unwrap_or(0)))
            .max_value_len(Some(crate::MAX_VALUE_LEN))
    }

    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Record>> {
        let now = self.inner.clock.now();
        let get = self.client().get_item().table_name(self.table());
        let get = get.key("pk", self.pk(ns, key)?).consistent_read(true);
        let out = get.send().await;
        let out = out.map_err(|e| convert(e, self, "get_item", Some(key)))?;
        let record = out.item.as_ref().map(|item| schema::decode(item, key));
        Ok(record.transpose()?.filter(|r| !r.is_expired(now)))
    }

    async fn claim(&self, ns: Namespace, key: &str, claim: &Claim<'_>) -> Result<ClaimOutcome> {
        let pk = self.pk(ns, key)?;
        // The lapsed lease the next write takes over; `None`: a fresh claim.
        let mut lapsed: Option<Record> = None;
        for _ in 0..8 {
            let now = self.inner.clock.now();
            let lease_until = now.add(claim.lease);
            let attempt = lapsed.as_ref().map_or(1, |r| r.attempt.saturating_add(1));
            let (condition, values) = schema::claim_condition(lapsed.as_ref(), now);
            let item = schema::claim_item(pk.clone(), claim, now, lease_until, attempt);
            let put = self.client().put_item().table_name(self.table());
            let out = put
                .set_item(Some(item))
                .condition_expression(&condition)
                .set_expression_attribute_names(Some(names(&[&condition])))
                .set_expression_attribute_values(Some(values))
                .return_values_on_condition_check_failure(AllOld)
                .send()
                .await;
            let acquired = |attempt| ClaimOutcome::Acquired {
                attempt,
                lease_expires_at: lease_until,
            };
            let standing = match out {
                Ok(_) => return Ok(acquired(attempt)),
                Err(e) => match e.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(e)) => e.item.clone(),
                    _ => return Err(convert(e, self, "claim (put_item)", Some(key))),
                },
            };
            lapsed = match standing.map(|i| schema::decode(&i, key)).transpose()? {
                // This very write, applied, its answer lost and sent again by the SDK.
                Some(r)
                    if r.state == RecordState::InProgress
                        && r.lease_token.as_ref() == Some(claim.token)
                        && (r.created_at, r.lease_expires_at) == (now, Some(lease_until)) =>
                {
                    return Ok(acquired(r.attempt));
                }
                Some(r) if r.lease_lapsed(now) => Some(r),
                // Gone or expired since the write: claim it afresh.
                None => None,
                Some(r) if r.is_expired(now) => None,
                Some(r) if r.state == RecordState::Completed => {
                    return Ok(ClaimOutcome::Completed(r));
                }
                Some(r) => return Ok(ClaimOutcome::InFlight(r)),
            };
        }
        Err(Error::new(ErrorKind::Busy, "claim kept racing with other writers").with_key(key))
    }

    async fn renew(
        &self,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        lease: Duration,
    ) -> Result<Timestamp> {
        let until = self.inner.clock.now().add(lease);
        let values = schema::owned(token, [(":until", n(until.as_millis()))]);
        let update = self.update_owned(self.pk(ns, key)?, "SET #lease_expires_ms = :until", values);
        let renewed = applied(update.send().await, self, "renew (update_item)", Some(key))?;
        let lost = || Error::lease_lost(key);
        renewed.then_some(until).ok_or_else(lost)
    }

    async fn complete(
        &self,
        ns: Namespace,
        key: &str,
        token: &LeaseToken,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()> {
        check_value_len(&self.capabilities(), key, value)?;
        let now = self.inner.clock.now();
        let (update, values) = schema::complete_update(token, value, now, ttl.map(|t| now.add(t)));
        let req = self.update_owned(self.pk(ns, key)?, &update, values);
        let out = req.return_values_on_condition_check_failure(AllOld).send();
        let standing = match out.await {
            Ok(_) => return Ok(()),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(e)) => e.item.clone(),
                _ => return Err(convert(e, self, "complete (update_item)", Some(key))),
            },
        };
        // This very request applied, its answer lost and sent again by the SDK (the crate
        // docs tell how it is recognised). Any other second completion is refused.
        let resent = standing.is_some_and(|old| {
            let mine = Some(s(token.as_str()));
            let by_token = [old.get("lease_token"), old.get("completed_token")];
            let this = (RecordState::Completed, Some(now), Some(value));
            let same = |r: Record| (r.state, r.completed_at, r.value.as_deref()) == this;
            by_token.contains(&mine.as_ref()) && schema::decode(&old, key).is_ok_and(same)
        });
        resent.then_some(()).ok_or_else(|| Error::lease_lost(key))
    }

    async fn release(&self, ns: Namespace, key: &str, token: &LeaseToken) -> Result<bool> {
        let owned = Some(schema::owned(token, []));
        let out = self.delete_if(self.pk(ns, key)?, OWNED_CONDITION, owned);
        applied(out.send().await, self, "release (delete_item)", Some(key))
    }

    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        meta: RecordMeta<'_>,
    ) -> Result<()> {
        check_value_len(&self.capabilities(), key, value)?;
        let now = self.inner.clock.now();
        let expires = ttl.map(|t| now.add(t));
        let item = schema::put_item(self.pk(ns, key)?, value, now, expires, &meta);
        let put = self.client().put_item().table_name(self.table());
        let out = put.set_item(Some(item)).send().await;
        out.map_err(|e| convert(e, self, "put (put_item)", Some(key)))?;
        Ok(())
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool> {
        let out = self.delete_if(self.pk(ns, key)?, "attribute_exists(#pk)", None);
        applied(out.send().await, self, "delete (delete_item)", Some(key))
    }

    async fn list(&self, ns: Namespace, query: &ListQuery) -> Result<Page> {
        let now = self.inner.clock.now();
        let base = self.ns_prefix(ns);
        let mut filter = "begins_with(#pk, :prefix)".to_owned();
        let mut values = map([(":prefix", s(format!("{base}{}", query.prefix)))]);
        if let Some(cursor) = &query.cursor {
            filter.push_str(" AND #pk > :after");
            values.insert(":after".to_owned(), s(format!("{base}{cursor}")));
        }
        if !query.include_expired {
            filter.push_str(" AND (attribute_not_exists(#expires_ms) OR #expires_ms > :now)");
            values.insert(":now".to_owned(), n(now.as_millis()));
        }
        let mut records = Vec::new();
        for item in self.scan(&filter, values, None).await? {
            let pk = item.get("pk").and_then(|pk| pk.as_s().ok());
            let key = pk.and_then(|pk| pk.strip_prefix(base)).unwrap_or_default();
            records.push(schema::decode(&item, key)?);
        }
        records.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(Page::from_fetched(records, query.limit))
    }

    async fn clear(&self, ns: Namespace) -> Result<u64> {
        let (client, table) = (self.client(), self.table());
        let pks = self.scan_keys(ns, None).await?;
        let fail = |e| convert(e, self, "clear (batch_write_item)", None);
        for chunk in pks.chunks(BATCH_LEN) {
            let delete = |pk: &String| {
                let req = DeleteRequest::builder().key("pk", s(pk.as_str())).build();
                Ok(WriteRequest::builder().delete_request(built(req)?).build())
            };
            let mut requests = chunk.iter().map(delete).collect::<Result<Vec<_>>>()?;
            for retry in 0.. {
                let batch = client.batch_write_item().request_items(table, requests);
                let out = batch.send().await.map_err(fail)?;
                let left = out.unprocessed_items.and_then(|mut l| l.remove(table));
                requests = left.unwrap_or_default();
                if requests.is_empty() {
                    break;
                } else if retry == 10 {
                    let message = format!(
                        "DynamoDB left {} deletes on table {table:?} unprocessed after {retry} retries",
                        requests.len()
                    );
                    return Err(Error::new(ErrorKind::Busy, message));
                }
                tracing::debug!(left = requests.len(), "retrying unprocessed batch deletes");
                let backoff = Duration::from_millis(50 << retry).min(Duration::from_secs(2));
                tokio::time::sleep(backoff).await;
            }
        }
        Ok(pks.len() as u64)
    }

    async fn purge_expired(&self, ns: Namespace, limit: usize) -> Result<u64> {
        let now = self.inner.clock.now();
        let pks = self.scan_keys(ns, Some(now)).await?;
        // One conditional delete per item rather than a batch: a record claimed or rewritten
        // since the scan is no longer expired and must survive.
        let values = map([(":now", n(now.as_millis()))]);
        let done = |out| applied(out, self, "purge_expired (delete_item)", None);
        let delete = |pk| {
            let request = self.delete_if(s(pk), "#expires_ms <= :now", Some(values.clone()));
            async move { done(request.send().await) }
        };
        let deletes = futures_util::stream::iter(pks.into_iter().take(limit).map(delete));
        let deleted = deletes.buffer_unordered(PURGE_CONCURRENCY);
        let count = |n: u64, deleted: bool| async move { Ok(n + u64::from(deleted)) };
        deleted.try_fold(0, count).await
    }
}
