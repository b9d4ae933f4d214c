//! [`ResultStore`] for DynamoDB.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, KeySchemaElement, KeyType,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableDescription, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus, WriteRequest,
};
use futures_util::{StreamExt as _, TryStreamExt as _};
use stent_core::store::{check_key_len, check_value_len};
use stent_core::{
    Capabilities, Claim, ClaimOutcome, Clock, Error, ErrorKind, LeaseToken, ListQuery, Namespace,
    Page, Record, RecordMeta, RecordState, Result, ResultStore, Timestamp,
};

use crate::config::{self, DynamoDbStoreBuilder};
use crate::error::{
    Context, condition_failure_item, convert, is_condition_failure, is_service_error,
    is_ttl_already_enabled,
};
use crate::schema::{
    self, CLAIM_CONDITION, COMPLETED_TOKEN, Fields, IN_PROGRESS, Item, OWNED_CONDITION, PK, n, s,
};

/// DynamoDB's limit on the requests of one `BatchWriteItem`.
const BATCH_LEN: usize = 25;

/// How many conditional deletes `purge_expired` keeps in flight.
const PURGE_CONCURRENCY: usize = 8;

/// How long [`DynamoDbStore::migrate`] waits for a new table to become active.
const TABLE_READY_TIMEOUT: Duration = Duration::from_secs(300);

/// A [`ResultStore`] in one DynamoDB table.
///
/// Every record is one item whose partition key is `{prefix}#{namespace}#{key}`, so keys
/// spread over partitions and several stores (with different
/// [key prefixes](DynamoDbStoreBuilder::key_prefix)) can share a table. Every state
/// transition is one conditional write:
///
/// - **claim** of an absent or expired key is one `PutItem` of the whole in-progress item,
///   conditioned on `attribute_not_exists(pk) OR <expired>`, with
///   `ReturnValuesOnConditionCheckFailure = ALL_OLD`: a contended claim (a completed record,
///   a live lease) costs one round trip and returns the record that stands. A lapsed lease
///   fails that condition too; its takeover is a second `PutItem`, whose attempt is the
///   returned record's + 1 and whose condition is that the same lease still stands, still
///   lapsed, so a renewal or a rival takeover in between wins over it.
/// - **complete**, **renew** and **release** are conditioned on
///   `lease_token = :token AND state = :in_progress` (fencing). Complete sets the state,
///   value and times and leaves the lease attributes (reads ignore them once completed).
/// - Reads are strongly consistent and always re-check expiry: DynamoDB deletes expired
///   items on its own schedule (up to days later), and local servers never do.
///
/// Time comes from a [`Clock`] (the system clock by default): conditions compare the
/// stored milliseconds against the time this process binds, so processes sharing a table
/// need synchronized clocks (NTP is plenty next to leases of seconds).
///
/// `list`, `clear` and `purge_expired` are admin operations: they `Scan` the whole table
/// (filtered to this store's namespace and prefix), which costs read capacity in proportion
/// to the table's size. Never put them on a request path.
///
/// Cheap to clone: clones share the SDK client.
#[derive(Clone)]
pub struct DynamoDbStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    table: String,
    key_prefix: String,
    endpoint: String,
    clock: Arc<dyn Clock>,
    /// Each namespace's partition-key prefix, by [`Namespace`] order.
    ns_prefixes: [String; Namespace::ALL.len()],
}

impl fmt::Debug for DynamoDbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoDbStore")
            .field("table", &self.inner.table)
            .field("key_prefix", &self.inner.key_prefix)
            .field("endpoint", &self.inner.endpoint)
            .field("clock", &self.inner.clock)
            .finish()
    }
}

impl DynamoDbStore {
    pub(crate) fn new(
        client: Client,
        endpoint: Option<String>,
        table: String,
        key_prefix: String,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let endpoint = match (endpoint, client.config().region()) {
            (Some(url), _) => url,
            (None, Some(region)) => format!("the DynamoDB endpoint of region {region}"),
            (None, None) => "the client's DynamoDB endpoint".to_owned(),
        };
        let ns_prefix = |ns: Namespace| {
            if key_prefix.is_empty() {
                format!("{ns}#")
            } else {
                format!("{key_prefix}#{ns}#")
            }
        };
        DynamoDbStore {
            inner: Arc::new(Inner {
                ns_prefixes: Namespace::ALL.map(ns_prefix),
                client,
                table,
                key_prefix,
                endpoint,
                clock,
            }),
        }
    }

    /// A builder with the defaults: table [`DEFAULT_TABLE`](crate::DEFAULT_TABLE), no key
    /// prefix, the SDK configured from the environment.
    pub fn builder() -> DynamoDbStoreBuilder {
        DynamoDbStoreBuilder::default()
    }

    /// A store configured from the environment: [`STENT_DYNAMODB_URL`](crate::ENV_URL) (an
    /// endpoint override, e.g. `http://127.0.0.1:5599`; unset for AWS),
    /// [`STENT_DYNAMODB_TABLE`](crate::ENV_TABLE) (default `stent`), and the AWS SDK's own
    /// variables (`AWS_REGION`, credentials, profile).
    pub async fn from_env() -> Result<Self> {
        config::builder_from_vars(|name| std::env::var(name).ok())?
            .build()
            .await
    }

    /// Opens the store a URL names: `dynamodb://TABLE`, with optional query options
    /// `endpoint=http://127.0.0.1:5599` (an endpoint override, percent-encoded or not),
    /// `region=eu-west-1` and `prefix=app` (see [`DynamoDbStoreBuilder::url`]).
    /// `dynamodb://` alone uses the default table.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder().url(url)?.build().await
    }

    /// A store on an existing SDK client, in `table`, on the system clock and with no key
    /// prefix (use [`builder`](Self::builder) and [`DynamoDbStoreBuilder::client`] for more).
    pub fn from_client(client: Client, table: &str) -> Result<Self> {
        config::validate_table(table)?;
        Ok(Self::new(
            client,
            None,
            table.to_owned(),
            String::new(),
            Arc::new(stent_core::SystemClock),
        ))
    }

    /// The SDK client, for your own requests against the table.
    pub fn client(&self) -> &Client {
        &self.inner.client
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

    /// Creates the table if it is missing (on-demand billing, partition key `pk` of type
    /// string), waits until it is active, and enables DynamoDB's TTL on the
    /// [`ttl`](crate::TTL_ATTRIBUTE) attribute. Safe to call concurrently and repeatedly.
    ///
    /// Meant for development and tests; in production create the table with your
    /// infrastructure tooling (see the crate docs for its definition).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when the table exists with another key schema, or the
    /// credentials may not create or describe tables; [`ErrorKind::Unavailable`] when the
    /// endpoint cannot be reached.
    pub async fn migrate(&self) -> Result<()> {
        let started = Instant::now();
        let mut created = false;
        loop {
            match self.describe_table().await? {
                Some(table) => {
                    self.check_key_schema(&table)?;
                    if table.table_status() != Some(&TableStatus::Creating) {
                        break;
                    }
                }
                None if !created => {
                    self.create_table().await?;
                    created = true;
                    continue;
                }
                None => {}
            }
            if started.elapsed() > TABLE_READY_TIMEOUT {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "DynamoDB table {:?} at {} is not active after {} s",
                        self.inner.table,
                        self.inner.endpoint,
                        TABLE_READY_TIMEOUT.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.enable_ttl().await
    }

    fn cx<'a>(&'a self, op: &'a str, key: Option<&'a str>) -> Context<'a> {
        Context {
            op,
            table: &self.inner.table,
            endpoint: &self.inner.endpoint,
            key,
        }
    }

    async fn describe_table(&self) -> Result<Option<TableDescription>> {
        let out = self
            .inner
            .client
            .describe_table()
            .table_name(&self.inner.table)
            .send()
            .await;
        match out {
            Ok(out) => Ok(out.table),
            Err(e) if is_service_error(&e, "ResourceNotFoundException") => Ok(None),
            Err(e) => Err(convert(e, &self.cx("describe_table", None))),
        }
    }

    async fn create_table(&self) -> Result<()> {
        let invalid = |e: aws_sdk_dynamodb::error::BuildError| {
            Error::new(ErrorKind::Store, "invalid create_table request").with_source(e)
        };
        let out = self
            .inner
            .client
            .create_table()
            .table_name(&self.inner.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(PK)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(invalid)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(PK)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(invalid)?,
            )
            .send()
            .await;
        match out {
            Ok(_) => {
                tracing::info!(table = %self.inner.table, endpoint = %self.inner.endpoint, "created DynamoDB table");
                Ok(())
            }
            // Another process created it first.
            Err(e) if is_service_error(&e, "ResourceInUseException") => Ok(()),
            Err(e) => Err(convert(e, &self.cx("create_table", None))),
        }
    }

    fn check_key_schema(&self, table: &TableDescription) -> Result<()> {
        let hash_is_pk = matches!(
            table.key_schema(),
            [k] if k.attribute_name() == PK && k.key_type() == &KeyType::Hash
        );
        let pk_is_string = table
            .attribute_definitions()
            .iter()
            .any(|d| d.attribute_name() == PK && d.attribute_type() == &ScalarAttributeType::S);
        if hash_is_pk && pk_is_string {
            return Ok(());
        }
        let schema: Vec<String> = table
            .key_schema()
            .iter()
            .map(|k| format!("{} ({})", k.attribute_name(), k.key_type().as_str()))
            .collect();
        Err(Error::config(format!(
            "DynamoDB table {:?} at {} has key schema [{}]; stent needs a table whose only key \
             is the partition key \"pk\" of type string (choose another table)",
            self.inner.table,
            self.inner.endpoint,
            schema.join(", ")
        )))
    }

    async fn enable_ttl(&self) -> Result<()> {
        let cx = self.cx("describe_time_to_live", None);
        let out = self
            .inner
            .client
            .describe_time_to_live()
            .table_name(&self.inner.table)
            .send()
            .await
            .map_err(|e| convert(e, &cx))?;
        if let Some(ttl) = out.time_to_live_description() {
            let on = matches!(
                ttl.time_to_live_status(),
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            );
            match ttl.attribute_name() {
                Some(crate::TTL_ATTRIBUTE) if on => return Ok(()),
                Some(other) if on => {
                    tracing::warn!(
                        table = %self.inner.table,
                        attribute = other,
                        "the table's TTL is enabled on another attribute; expired stent records \
                         stay until purge_expired removes them"
                    );
                    return Ok(());
                }
                _ => {}
            }
        }
        let spec = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(crate::TTL_ATTRIBUTE)
            .build()
            .map_err(|e| {
                Error::new(ErrorKind::Store, "invalid TTL specification").with_source(e)
            })?;
        let out = self
            .inner
            .client
            .update_time_to_live()
            .table_name(&self.inner.table)
            .time_to_live_specification(spec)
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            // A concurrent migrate enabled it first.
            Err(e) if is_ttl_already_enabled(&e) => Ok(()),
            Err(e) => Err(convert(e, &self.cx("update_time_to_live", None))),
        }
    }

    fn ns_prefix(&self, ns: Namespace) -> &str {
        &self.inner.ns_prefixes[ns as usize]
    }

    fn pk(&self, ns: Namespace, key: &str) -> Result<AttributeValue> {
        check_key_len(&self.capabilities(), key)?;
        Ok(s(self.partition_key(ns, key)))
    }

    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    async fn get_item(&self, ns: Namespace, key: &str) -> Result<Option<Item>> {
        let out = self
            .inner
            .client
            .get_item()
            .table_name(&self.inner.table)
            .key(PK, self.pk(ns, key)?)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| convert(e, &self.cx("get_item", Some(key))))?;
        Ok(out.item)
    }

    /// Every item matching `filter`, across all pages of a consistent `Scan`.
    async fn scan(
        &self,
        filter: &str,
        values: HashMap<String, AttributeValue>,
        projection: Option<&str>,
    ) -> Result<Vec<Item>> {
        let names = schema::names(&[filter, projection.unwrap_or_default()]);
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .inner
                .client
                .scan()
                .table_name(&self.inner.table)
                .filter_expression(filter)
                .set_projection_expression(projection.map(str::to_owned))
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| convert(e, &self.cx("scan", None)))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(items),
            }
        }
    }

    /// The partition keys of the items `scan` found.
    fn partition_keys(items: Vec<Item>) -> Vec<String> {
        items
            .into_iter()
            .filter_map(|mut item| match item.remove(PK) {
                Some(AttributeValue::S(pk)) => Some(pk),
                _ => None,
            })
            .collect()
    }

    /// Deletes items unconditionally, 25 per `BatchWriteItem`, retrying unprocessed ones
    /// with backoff.
    async fn batch_delete(&self, pks: Vec<String>) -> Result<()> {
        let cx = self.cx("batch_write_item", None);
        for chunk in pks.chunks(BATCH_LEN) {
            let mut requests = chunk
                .iter()
                .map(|pk| {
                    let delete = DeleteRequest::builder()
                        .key(PK, s(pk.as_str()))
                        .build()
                        .map_err(|e| {
                            Error::new(ErrorKind::Store, "invalid delete request").with_source(e)
                        })?;
                    Ok(WriteRequest::builder().delete_request(delete).build())
                })
                .collect::<Result<Vec<_>>>()?;
            let mut backoff = Duration::from_millis(50);
            for round in 0.. {
                let out = self
                    .inner
                    .client
                    .batch_write_item()
                    .request_items(&self.inner.table, requests)
                    .send()
                    .await
                    .map_err(|e| convert(e, &cx))?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut left| left.remove(&self.inner.table))
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                if round == 10 {
                    return Err(Error::new(
                        ErrorKind::Busy,
                        format!(
                            "DynamoDB left {} deletes on table {:?} unprocessed after {round} retries",
                            requests.len(),
                            self.inner.table
                        ),
                    ));
                }
                tracing::debug!(left = requests.len(), "retrying unprocessed batch deletes");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
        Ok(())
    }

    /// A claim's `PutItem` of `item` under `condition`: `None` when written, otherwise the
    /// item that failed the condition (`Some(None)` when there is none any more).
    async fn put_claim(
        &self,
        ns: Namespace,
        key: &str,
        item: Item,
        condition: &str,
        values: HashMap<String, AttributeValue>,
    ) -> Result<Option<Option<Item>>> {
        let out = self
            .inner
            .client
            .put_item()
            .table_name(&self.inner.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(schema::names(&[condition])))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match out {
            Ok(_) => Ok(None),
            Err(e) if is_condition_failure(&e) => match condition_failure_item(&e) {
                Some(item) => Ok(Some(Some(item))),
                None => Ok(Some(self.get_item(ns, key).await?)),
            },
            Err(e) => Err(convert(e, &self.cx("claim (put_item)", Some(key)))),
        }
    }

    /// What the record a claim's write failed on means.
    fn contended(
        record: Record,
        token: &LeaseToken,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Found {
        let applied = record.state == RecordState::InProgress
            && record.lease_token.as_ref() == Some(token)
            && record.created_at == now
            && record.lease_expires_at == Some(lease_until);
        if applied {
            // This very request was applied, but its answer was lost and the SDK sent it again.
            return Found::Outcome(ClaimOutcome::Acquired {
                attempt: record.attempt,
                lease_expires_at: lease_until,
            });
        }
        if record.is_expired(now) || record.lease_lapsed(now) {
            return Found::Replaceable(record);
        }
        Found::Outcome(match record.state {
            RecordState::Completed => ClaimOutcome::Completed(record),
            RecordState::InProgress => ClaimOutcome::InFlight(record),
        })
    }
}

/// What the record a claim's write failed on means.
enum Found {
    /// The claim's answer: the record stands (or is this claim's own, resent).
    Outcome(ClaimOutcome),
    /// Expired, or a lapsed lease: for the claim to replace.
    Replaceable(Record),
}

#[async_trait]
impl ResultStore for DynamoDbStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .native_ttl(true)
            .shared(true)
            .durable(true)
            // The same limit in every namespace: the longest namespace prefix decides.
            .max_key_len(Some(
                crate::MAX_PARTITION_KEY_LEN
                    - self
                        .inner
                        .ns_prefixes
                        .iter()
                        .map(String::len)
                        .max()
                        .unwrap_or(0),
            ))
            .max_value_len(Some(crate::MAX_VALUE_LEN))
    }

    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Record>> {
        let now = self.now();
        let Some(item) = self.get_item(ns, key).await? else {
            return Ok(None);
        };
        let record = schema::decode(&item, key)?;
        Ok((!record.is_expired(now)).then_some(record))
    }

    async fn claim(&self, ns: Namespace, key: &str, claim: &Claim<'_>) -> Result<ClaimOutcome> {
        let pk = self.pk(ns, key)?;
        // A few rounds at most: another round is only needed when the record changed between
        // the write that failed and the next (a takeover lost to another, a record gone).
        for _ in 0..8 {
            let now = self.now();
            let lease_until = now.add(claim.lease);
            let item = |attempt| {
                schema::claim_item(
                    pk.clone(),
                    claim.token,
                    now,
                    lease_until,
                    attempt,
                    &claim.meta,
                )
            };
            let values = HashMap::from([(":now".to_owned(), n(now.as_millis()))]);
            let seen = match self
                .put_claim(ns, key, item(1), CLAIM_CONDITION, values)
                .await?
            {
                None => {
                    return Ok(ClaimOutcome::Acquired {
                        attempt: 1,
                        lease_expires_at: lease_until,
                    });
                }
                Some(None) => continue,
                Some(Some(seen)) => schema::decode(&seen, key)?,
            };
            let seen = match Self::contended(seen, claim.token, now, lease_until) {
                Found::Outcome(outcome) => return Ok(outcome),
                Found::Replaceable(seen) => seen,
            };
            if !seen.lease_lapsed(now) {
                // Expired, so the write would have replaced it: the record was read after the
                // write failed (nothing came back with it) and changed meanwhile.
                continue;
            }
            // The rare second write of a claim: the takeover of a lapsed lease, whose attempt
            // is the one it replaces + 1, so it depends on the record just returned.
            let attempt = seen.attempt.saturating_add(1);
            let (condition, values) = schema::takeover_condition(&seen, now);
            match self
                .put_claim(ns, key, item(attempt), condition, values)
                .await?
            {
                None => {
                    return Ok(ClaimOutcome::Acquired {
                        attempt,
                        lease_expires_at: lease_until,
                    });
                }
                Some(Some(seen)) => {
                    let seen = schema::decode(&seen, key)?;
                    if let Found::Outcome(outcome) =
                        Self::contended(seen, claim.token, now, lease_until)
                    {
                        return Ok(outcome);
                    }
                }
                Some(None) => {}
            }
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
        let pk = self.pk(ns, key)?;
        let until = self.now().add(lease);
        let update = "SET #lease_expires_ms = :until";
        let out = self
            .inner
            .client
            .update_item()
            .table_name(&self.inner.table)
            .key(PK, pk)
            .update_expression(update)
            .condition_expression(OWNED_CONDITION)
            .set_expression_attribute_names(Some(schema::names(&[update, OWNED_CONDITION])))
            .expression_attribute_values(":until", n(until.as_millis()))
            .expression_attribute_values(":token", s(token.as_str()))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .send()
            .await;
        match out {
            Ok(_) => Ok(until),
            Err(e) if is_condition_failure(&e) => Err(Error::lease_lost(key)),
            Err(e) => Err(convert(e, &self.cx("renew (update_item)", Some(key)))),
        }
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
        let pk = self.pk(ns, key)?;
        let now = self.now();
        let update = schema::complete_update(token, value, now, ttl.map(|t| now.add(t)));
        let out = self
            .inner
            .client
            .update_item()
            .table_name(&self.inner.table)
            .key(PK, pk)
            .update_expression(&update.expression)
            .condition_expression(OWNED_CONDITION)
            .set_expression_attribute_names(Some(schema::names(&[
                &update.expression,
                OWNED_CONDITION,
            ])))
            .set_expression_attribute_values(Some(update.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => {
                // This very request was applied, but its answer was lost and the SDK sent it
                // again: same token, same time, same value. Any other second completion is refused.
                // A completed record keeps the token that completed it in `lease_token`
                // (`completed_token` in items of earlier versions).
                let done = condition_failure_item(&e).is_some_and(|old| {
                    let f = Fields::new(&old, key);
                    let completed_by = |attr| f.string(attr).ok().flatten() == Some(token.as_str());
                    f.string(schema::STATE).ok().flatten() == Some(schema::COMPLETED)
                        && (completed_by(schema::LEASE_TOKEN) || completed_by(COMPLETED_TOKEN))
                        && f.number(schema::COMPLETED_MS).ok().flatten() == Some(now.as_millis())
                        && f.bytes(schema::VALUE).ok().flatten().as_deref() == Some(value)
                });
                if done {
                    Ok(())
                } else {
                    Err(Error::lease_lost(key))
                }
            }
            Err(e) => Err(convert(e, &self.cx("complete (update_item)", Some(key)))),
        }
    }

    async fn release(&self, ns: Namespace, key: &str, token: &LeaseToken) -> Result<bool> {
        let pk = self.pk(ns, key)?;
        let out = self
            .inner
            .client
            .delete_item()
            .table_name(&self.inner.table)
            .key(PK, pk)
            .condition_expression(OWNED_CONDITION)
            .set_expression_attribute_names(Some(schema::names(&[OWNED_CONDITION])))
            .expression_attribute_values(":token", s(token.as_str()))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(convert(e, &self.cx("release (delete_item)", Some(key)))),
        }
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
        check_key_len(&self.capabilities(), key)?;
        let now = self.now();
        let item = schema::put_item(
            self.partition_key(ns, key),
            value,
            now,
            ttl.map(|t| now.add(t)),
            &meta,
        );
        self.inner
            .client
            .put_item()
            .table_name(&self.inner.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| convert(e, &self.cx("put (put_item)", Some(key))))?;
        Ok(())
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool> {
        let pk = self.pk(ns, key)?;
        let condition = "attribute_exists(#pk)";
        let out = self
            .inner
            .client
            .delete_item()
            .table_name(&self.inner.table)
            .key(PK, pk)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(schema::names(&[condition])))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
            Err(e) => Err(convert(e, &self.cx("delete (delete_item)", Some(key)))),
        }
    }

    async fn list(&self, ns: Namespace, query: &ListQuery) -> Result<Page> {
        let now = self.now();
        let base = self.ns_prefix(ns);
        let mut filter = "begins_with(#pk, :prefix)".to_owned();
        let mut values =
            HashMap::from([(":prefix".to_owned(), s(format!("{base}{}", query.prefix)))]);
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
            let key = match item.get(PK) {
                Some(AttributeValue::S(pk)) => pk.strip_prefix(base).unwrap_or(pk).to_owned(),
                _ => continue,
            };
            let record = schema::decode(&item, &key)?;
            if query.matches(&key) && (query.include_expired || !record.is_expired(now)) {
                records.push(record);
            }
        }
        records.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(Page::from_fetched(records, query.limit))
    }

    async fn clear(&self, ns: Namespace) -> Result<u64> {
        let filter = "begins_with(#pk, :prefix)";
        let values = HashMap::from([(":prefix".to_owned(), s(self.ns_prefix(ns)))]);
        let pks = Self::partition_keys(self.scan(filter, values, Some("#pk")).await?);
        let count = pks.len() as u64;
        self.batch_delete(pks).await?;
        Ok(count)
    }

    async fn purge_expired(&self, ns: Namespace, limit: usize) -> Result<u64> {
        let now = n(self.now().as_millis());
        let filter = "begins_with(#pk, :prefix) AND #expires_ms <= :now";
        let values = HashMap::from([
            (":prefix".to_owned(), s(self.ns_prefix(ns))),
            (":now".to_owned(), now.clone()),
        ]);
        let mut pks = Self::partition_keys(self.scan(filter, values, Some("#pk")).await?);
        pks.truncate(limit);
        // One conditional delete per item rather than a batch: a record claimed or rewritten
        // since the scan is no longer expired and must survive.
        let condition = "#expires_ms <= :now";
        let names = schema::names(&[condition]);
        let deleted = futures_util::stream::iter(pks)
            .map(|pk| {
                let request = self
                    .inner
                    .client
                    .delete_item()
                    .table_name(&self.inner.table)
                    .key(PK, s(pk))
                    .condition_expression(condition)
                    .set_expression_attribute_names(Some(names.clone()))
                    .expression_attribute_values(":now", now.clone());
                async move {
                    match request.send().await {
                        Ok(_) => Ok(1),
                        Err(e) if is_condition_failure(&e) => Ok(0),
                        Err(e) => Err(convert(e, &self.cx("purge_expired (delete_item)", None))),
                    }
                }
            })
            .buffer_unordered(PURGE_CONCURRENCY)
            .try_fold(0u64, |sum, n| async move { Ok(sum + n) })
            .await?;
        Ok(deleted)
    }
}
