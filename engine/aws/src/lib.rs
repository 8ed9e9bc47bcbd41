//! # quarry-aws
//!
//! The AWS runtime: the engine's ports on S3 ([`S3Store`]), DynamoDB
//! ([`DynamoCache`], [`DynamoJobStore`]), SNS ([`SnsNotifier`]) and Step
//! Functions ([`SfnStarter`]). Endpoints follow the standard `AWS_ENDPOINT_URL`
//! variables, so the same code runs against a local emulator (moto) in tests.
//!
//! This crate is outside the default build (`cargo build` at the root skips
//! it): the AWS SDK costs minutes of compile time that the local runtime does
//! not need.

pub mod admin;
pub mod api;
pub mod db;
pub mod emf;
pub mod handoff;
pub mod ingest;
pub mod runtime;
pub mod steps;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};
use quarry_core::jobs::{Event, Job};
use quarry_core::ports::{
    Cache, CachedValue, JobStore, Notifier, ObjectStore, ObjectWriter, PortError, PortResult,
    WorkflowStarter,
};

/// The shared SDK configuration: region, credentials and endpoint from the
/// environment (`AWS_REGION`, `AWS_ENDPOINT_URL`, ...).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_from_env().await
}

fn unavailable<E: std::error::Error + 'static>(what: &str, e: E) -> PortError {
    PortError::Unavailable(format!(
        "{what}: {}",
        aws_sdk_s3::error::DisplayErrorContext(&e)
    ))
}

fn epoch(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Results and oversized cache values in one S3 bucket.
#[derive(Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Store {
    pub fn new(config: &aws_config::SdkConfig, bucket: impl Into<String>) -> Self {
        // Emulators (and S3-compatible stores) serve path-style addresses only.
        let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        let conf = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(path_style)
            .build();
        S3Store {
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket: bucket.into(),
        }
    }

    /// The bucket this store was made for (empty when events name it).
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// An object as ingest reads it: streamed from S3 each time it is opened
    /// (once to hash it, once to parse it), never held in memory or written to
    /// disk, so its size is bounded only by the time a load has. Every read
    /// after the first is of the same content (`If-Match` with the first read's
    /// ETag): an upload over the key in between fails the load instead of
    /// mixing two files. Open it from a blocking thread (ingest does).
    pub fn opener(&self, bucket: &str, key: &str) -> quarry_db::ingest::Opener {
        let client = self.client.clone();
        let (bucket, key) = (bucket.to_string(), key.to_string());
        let pinned: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let handle = tokio::runtime::Handle::current();
        Arc::new(move || {
            let etag = pinned.lock().ok().and_then(|t| t.clone());
            let mut req = client.get_object().bucket(&bucket).key(&key);
            if let Some(t) = &etag {
                req = req.if_match(t);
            }
            let out = handle.block_on(req.send()).map_err(|e| {
                let changed = e.raw_response().map(|r| r.status().as_u16()) == Some(412);
                std::io::Error::other(if changed {
                    format!("s3://{bucket}/{key} was replaced while it was being loaded; the new upload is loaded by its own event")
                } else {
                    format!(
                        "reading s3://{bucket}/{key}: {}",
                        aws_sdk_s3::error::DisplayErrorContext(&e)
                    )
                })
            })?;
            if etag.is_none() {
                if let (Some(t), Ok(mut slot)) = (out.e_tag(), pinned.lock()) {
                    *slot = Some(t.to_string());
                }
            }
            let body = out.body.into_async_read();
            Ok(Box::new(tokio_util::io::SyncIoBridge::new_with_handle(
                body,
                handle.clone(),
            )) as Box<dyn std::io::Read + Send>)
        })
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> PortResult<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| unavailable("S3 PutObject", e))?;
        Ok(())
    }

    async fn writer<'a>(
        &'a self,
        key: &str,
        content_type: &str,
    ) -> PortResult<Box<dyn ObjectWriter + 'a>> {
        Ok(Box::new(S3Writer {
            store: self,
            key: key.to_string(),
            content_type: content_type.to_string(),
            buffer: Vec::new(),
            upload_id: None,
            parts: Vec::new(),
            written: 0,
        }))
    }

    async fn get(&self, key: &str) -> PortResult<Option<Vec<u8>>> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| PortError::Unavailable(format!("S3 GetObject body: {e}")))?;
                Ok(Some(bytes.into_bytes().to_vec()))
            }
            Err(e) => {
                // Without s3:ListBucket a missing key answers 403, not 404.
                let missing = e.as_service_error().is_some_and(|s| s.is_no_such_key())
                    || e.raw_response()
                        .is_some_and(|r| matches!(r.status().as_u16(), 403 | 404));
                if missing {
                    Ok(None)
                } else {
                    Err(unavailable("S3 GetObject", e))
                }
            }
        }
    }

    async fn signed_url(&self, key: &str, ttl: Duration) -> PortResult<String> {
        let cfg = PresigningConfig::expires_in(ttl)
            .map_err(|e| PortError::Invalid(format!("presigning: {e}")))?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(cfg)
            .await
            .map_err(|e| unavailable("S3 presign", e))?;
        Ok(req.uri().to_string())
    }
}

/// Size of each part of a multipart upload (S3's minimum is 5 MiB, except the
/// last): memory holds one part.
const PART_BYTES: usize = 8 << 20;

/// An S3 object written in parts: one PutObject if it stays under a part,
/// else a multipart upload completed by `finish` (nothing is visible before)
/// and aborted on failure; the results bucket's lifecycle rule removes any
/// upload a crash left behind.
struct S3Writer<'a> {
    store: &'a S3Store,
    key: String,
    content_type: String,
    buffer: Vec<u8>,
    upload_id: Option<String>,
    parts: Vec<aws_sdk_s3::types::CompletedPart>,
    written: u64,
}

impl S3Writer<'_> {
    async fn upload_part(&mut self) -> PortResult<()> {
        let s = self.store;
        let id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let out = s
                    .client
                    .create_multipart_upload()
                    .bucket(&s.bucket)
                    .key(&self.key)
                    .content_type(&self.content_type)
                    .send()
                    .await
                    .map_err(|e| unavailable("S3 CreateMultipartUpload", e))?;
                let id = out.upload_id().unwrap_or_default().to_string();
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = i32::try_from(self.parts.len() + 1)
            .map_err(|_| PortError::Invalid("too many parts".into()))?;
        let body = std::mem::take(&mut self.buffer);
        let out = s
            .client
            .upload_part()
            .bucket(&s.bucket)
            .key(&self.key)
            .upload_id(&id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| unavailable("S3 UploadPart", e))?;
        self.parts.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build(),
        );
        Ok(())
    }

    async fn abort_upload(&mut self) {
        if let Some(id) = self.upload_id.take() {
            let s = self.store;
            if let Err(e) = s
                .client
                .abort_multipart_upload()
                .bucket(&s.bucket)
                .key(&self.key)
                .upload_id(id)
                .send()
                .await
            {
                tracing::warn!(key = %self.key, error = %aws_sdk_s3::error::DisplayErrorContext(&e), "could not abort a multipart upload; the bucket's lifecycle rule removes it");
            }
        }
    }
}

#[async_trait]
impl ObjectWriter for S3Writer<'_> {
    async fn write(&mut self, chunk: &[u8]) -> PortResult<()> {
        self.buffer.extend_from_slice(chunk);
        self.written += chunk.len() as u64;
        if self.buffer.len() >= PART_BYTES {
            if let Err(e) = self.upload_part().await {
                self.abort_upload().await;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> PortResult<u64> {
        if self.upload_id.is_none() {
            let body = std::mem::take(&mut self.buffer);
            self.store.put(&self.key, body, &self.content_type).await?;
            return Ok(self.written);
        }
        let done = async {
            if !self.buffer.is_empty() {
                self.upload_part().await?;
            }
            let s = self.store;
            s.client
                .complete_multipart_upload()
                .bucket(&s.bucket)
                .key(&self.key)
                .upload_id(self.upload_id.clone().unwrap_or_default())
                .multipart_upload(
                    aws_sdk_s3::types::CompletedMultipartUpload::builder()
                        .set_parts(Some(self.parts.clone()))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| unavailable("S3 CompleteMultipartUpload", e))?;
            Ok::<_, PortError>(())
        }
        .await;
        match done {
            Ok(()) => {
                self.upload_id = None;
                Ok(self.written)
            }
            Err(e) => {
                self.abort_upload().await;
                Err(e)
            }
        }
    }

    async fn abort(mut self: Box<Self>) {
        self.abort_upload().await;
    }
}

/// Largest cache value kept in the item itself; DynamoDB items stop at 400 KB.
const DYNAMO_INLINE_MAX: usize = 350 * 1024;

/// The result cache on DynamoDB: `key` (S), `operation` (S), `body` (S, JSON) or
/// `pointer` (S, an object key), `expires_at` (N, epoch seconds; the table's TTL
/// attribute). DynamoDB deletes expired items lazily, so reads ignore them too.
pub struct DynamoCache {
    client: aws_sdk_dynamodb::Client,
    table: String,
    objects: S3Store,
}

impl DynamoCache {
    pub fn new(config: &aws_config::SdkConfig, table: impl Into<String>, objects: S3Store) -> Self {
        DynamoCache {
            client: aws_sdk_dynamodb::Client::new(config),
            table: table.into(),
            objects,
        }
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

#[async_trait]
impl Cache for DynamoCache {
    async fn get(&self, key: &str) -> PortResult<Option<CachedValue>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("key", s(key))
            .send()
            .await
            .map_err(|e| unavailable("DynamoDB GetItem (cache)", e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let expires = item
            .get("expires_at")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        if expires <= epoch(SystemTime::now()) {
            return Ok(None);
        }
        if let Some(p) = item.get("pointer").and_then(|v| v.as_s().ok()) {
            return Ok(Some(CachedValue::Pointer {
                object_key: p.clone(),
            }));
        }
        let body = item
            .get("body")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| PortError::Unavailable("cache item without a body".into()))?;
        // Stored as the answer's very text (see `put`) and served as it is,
        // once checked to be JSON (without building it: `IgnoredAny`).
        serde_json::from_str::<serde::de::IgnoredAny>(body)
            .map_err(|e| PortError::Unavailable(format!("cache item body is not JSON: {e}")))?;
        Ok(Some(CachedValue::Inline(bytes::Bytes::from(body.clone()))))
    }

    async fn put(
        &self,
        key: &str,
        operation: &str,
        value: &CachedValue,
        ttl: Duration,
    ) -> PortResult<()> {
        let expires = epoch(SystemTime::now() + ttl);
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("key", s(key))
            .item("operation", s(operation))
            .item("expires_at", n(expires));
        req = match value {
            CachedValue::Pointer { object_key } => req.item("pointer", s(object_key)),
            CachedValue::Inline(body) => {
                if body.len() > DYNAMO_INLINE_MAX {
                    let object_key = format!("cache/{key}.json");
                    self.objects
                        .put(&object_key, body.to_vec(), "application/json")
                        .await?;
                    req.item("pointer", s(&object_key))
                } else {
                    let text = std::str::from_utf8(body).map_err(|e| {
                        PortError::Invalid(format!("a cached answer is not UTF-8 text: {e}"))
                    })?;
                    req.item("body", s(text))
                }
            }
        };
        req.send()
            .await
            .map_err(|e| unavailable("DynamoDB PutItem (cache)", e))?;
        Ok(())
    }
}

/// The job store on DynamoDB: `id` (S), `state` (S), `attempts` (N), `doc` (S,
/// the job as JSON) and `expires_at` (N, the retention TTL). Every write of an
/// existing job is conditional on the state and attempts read, so state only
/// moves forward.
pub struct DynamoJobStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    retention: Duration,
}

impl DynamoJobStore {
    pub fn new(
        config: &aws_config::SdkConfig,
        table: impl Into<String>,
        retention: Duration,
    ) -> Self {
        DynamoJobStore {
            client: aws_sdk_dynamodb::Client::new(config),
            table: table.into(),
            retention,
        }
    }

    fn item(&self, job: &Job) -> PortResult<std::collections::HashMap<String, AttributeValue>> {
        let doc = serde_json::to_string(job)
            .map_err(|e| PortError::Invalid(format!("job not serializable: {e}")))?;
        let base: DateTime<Utc> = job.finished_at.unwrap_or(job.submitted_at);
        let expires = base.timestamp() + self.retention.as_secs() as i64;
        Ok([
            ("id".to_string(), s(&job.id)),
            ("state".to_string(), s(job.state.as_str())),
            ("attempts".to_string(), n(i64::from(job.attempts))),
            ("doc".to_string(), s(&doc)),
            ("expires_at".to_string(), n(expires)),
        ]
        .into_iter()
        .collect())
    }
}

#[async_trait]
impl JobStore for DynamoJobStore {
    async fn create(&self, job: &Job) -> PortResult<()> {
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item(job)?))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(PortError::Conflict(format!("job {} exists", job.id)))
            }
            Err(e) => Err(unavailable("DynamoDB PutItem (job)", e)),
        }
    }

    async fn get(&self, id: &str) -> PortResult<Option<Job>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("DynamoDB GetItem (job)", e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let doc = item
            .get("doc")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| PortError::Unavailable("job item without a doc".into()))?;
        serde_json::from_str(doc)
            .map(Some)
            .map_err(|e| PortError::Unavailable(format!("job item doc is invalid: {e}")))
    }

    async fn transition(&self, current: &Job, next: &Job) -> PortResult<()> {
        current
            .check_transition(next)
            .map_err(PortError::Conflict)?;
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item(next)?))
            .condition_expression("#st = :st AND attempts = :att")
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":st", s(current.state.as_str()))
            .expression_attribute_values(":att", n(i64::from(current.attempts)))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(PortError::Conflict(format!(
                    "job {} changed since it was read",
                    current.id
                )))
            }
            Err(e) => Err(unavailable("DynamoDB PutItem (job)", e)),
        }
    }

    /// On AWS, Step Functions schedules attempts and retries; nothing polls the
    /// store (and the functions' IAM policies grant no Scan), so there is never a
    /// due job to hand out here.
    async fn due(&self, _now: DateTime<Utc>, _limit: u32) -> PortResult<Vec<Job>> {
        Ok(Vec::new())
    }

    /// On AWS, an interrupted attempt is Step Functions' to retry or fail (task
    /// timeouts and Catch), not a poller's.
    async fn expired(&self, _now: DateTime<Utc>) -> PortResult<Vec<Job>> {
        Ok(Vec::new())
    }
}

/// Events to an SNS topic, with the event type as a message attribute (for
/// subscription filter policies). The payload is the same CloudEvents JSON the
/// local notifier logs and posts.
pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsNotifier {
    pub fn new(config: &aws_config::SdkConfig, topic_arn: impl Into<String>) -> Self {
        SnsNotifier {
            client: aws_sdk_sns::Client::new(config),
            topic_arn: topic_arn.into(),
        }
    }
}

#[async_trait]
impl Notifier for SnsNotifier {
    async fn publish(&self, event: &Event) -> PortResult<()> {
        let body = serde_json::to_string(event)
            .map_err(|e| PortError::Invalid(format!("event not serializable: {e}")))?;
        let kind = serde_json::to_value(event.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let attr = aws_sdk_sns::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(kind)
            .build()
            .map_err(|e| PortError::Invalid(format!("SNS attribute: {e}")))?;
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .message(body)
            .message_attributes("type", attr)
            .send()
            .await
            .map_err(|e| unavailable("SNS Publish", e))?;
        Ok(())
    }
}

/// Starts one Step Functions execution per job, named after the job id, so a
/// repeated start (a retried submit) cannot run the job twice.
pub struct SfnStarter {
    client: aws_sdk_sfn::Client,
    state_machine_arn: String,
}

impl SfnStarter {
    pub fn new(config: &aws_config::SdkConfig, state_machine_arn: impl Into<String>) -> Self {
        SfnStarter {
            client: aws_sdk_sfn::Client::new(config),
            state_machine_arn: state_machine_arn.into(),
        }
    }
}

#[async_trait]
impl WorkflowStarter for SfnStarter {
    async fn start(&self, job: &Job) -> PortResult<()> {
        let input = serde_json::json!({
            "job_id": job.id,
            "operation": job.operation,
            "parameters": job.parameters,
        });
        let r = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(&job.id)
            .input(input.to_string())
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_execution_already_exists()) =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable("Step Functions StartExecution", e)),
        }
    }
}
