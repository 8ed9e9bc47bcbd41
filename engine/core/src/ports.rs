//! The ports: the few things the engine needs from where it runs, as traits.
//! Each has a local implementation (folder, Postgres, in-process, log and
//! webhooks) and an AWS one (S3, DynamoDB, Step Functions, SNS). Nothing in the
//! engine knows which it is talking to.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::jobs::{Event, Job};

/// A failure of a port's backend.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// A conditional write found the record changed by someone else.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend could not be reached or answered with an error; retrying may help.
    #[error("{0}")]
    Unavailable(String),
    /// The request itself was invalid (bad key, oversized value, ...).
    #[error("{0}")]
    Invalid(String),
}

pub type PortResult<T> = Result<T, PortError>;

/// A cached operation answer: the body itself, or, when it is too large for the
/// cache, the key of the object in object storage that holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum CachedValue {
    /// The answer's JSON document, byte for byte as it was served: the answer
    /// is serialized once, and a cache stores and returns those bytes as they
    /// are (no parse on the way in or out).
    Inline(bytes::Bytes),
    Pointer {
        object_key: String,
    },
}

/// The result cache, keyed by [`crate::packs::cache::cache_key`].
#[async_trait]
pub trait Cache: Send + Sync {
    /// The entry under `key`, if present and not expired.
    async fn get(&self, key: &str) -> PortResult<Option<CachedValue>>;
    /// Stores `value` under `key` for `ttl`, replacing any earlier entry.
    async fn put(
        &self,
        key: &str,
        operation: &str,
        value: &CachedValue,
        ttl: Duration,
    ) -> PortResult<()>;
}

/// Where jobs are persisted. Every write of an existing job is conditional: it
/// succeeds only if the stored job still has the state and attempt count the
/// writer read, so state moves only forward and one attempt runs only once.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Persists a new job; `Conflict` if its id exists.
    async fn create(&self, job: &Job) -> PortResult<()>;
    async fn get(&self, id: &str) -> PortResult<Option<Job>>;
    /// Replaces `current` by `next`. `Conflict` if the stored job is no longer
    /// `current` (state or attempts differ) or the move is not a legal transition.
    async fn transition(&self, current: &Job, next: &Job) -> PortResult<()>;
    /// Queued jobs whose `next_attempt_at` has passed, oldest first.
    async fn due(&self, now: DateTime<Utc>, limit: u32) -> PortResult<Vec<Job>>;
    /// Running jobs whose lease expired before `now` (their runner is gone).
    async fn expired(&self, now: DateTime<Utc>) -> PortResult<Vec<Job>>;
}

/// Object storage for large results and oversized cache entries.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> PortResult<()>;
    /// An object written part by part as its bytes are made (a large job
    /// result), so memory holds one part whatever the object's size. Nothing
    /// is visible under `key` until [`ObjectWriter::finish`].
    async fn writer<'a>(
        &'a self,
        key: &str,
        content_type: &str,
    ) -> PortResult<Box<dyn ObjectWriter + 'a>>;
    /// The object's bytes, or `None` if there is no such object.
    async fn get(&self, key: &str) -> PortResult<Option<Vec<u8>>>;
    /// A link that lets whoever holds it GET the object until `ttl` passes.
    async fn signed_url(&self, key: &str, ttl: Duration) -> PortResult<String>;
    /// For stores whose objects are local files (the folder): the file of
    /// `key`, so the API streams a downloaded object instead of reading it
    /// whole into memory.
    fn local_file(&self, _key: &str) -> Option<std::path::PathBuf> {
        None
    }
    /// For stores whose signed links the API itself serves (the local folder):
    /// whether `signature` is valid for `key` until `expires` (epoch seconds).
    fn verify_signed(&self, _key: &str, _expires: i64, _signature: &str) -> bool {
        false
    }
}

/// An object being written (see [`ObjectStore::writer`]). Dropped without
/// `finish`, nothing of it becomes visible.
#[async_trait]
pub trait ObjectWriter: Send {
    /// Appends `chunk`.
    async fn write(&mut self, chunk: &[u8]) -> PortResult<()>;
    /// Makes the object visible, whole; returns its size in bytes.
    async fn finish(self: Box<Self>) -> PortResult<u64>;
    /// Discards what was written.
    async fn abort(self: Box<Self>);
}

/// Publishes [`Event`]s (log and webhooks locally, SNS on AWS).
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn publish(&self, event: &Event) -> PortResult<()>;
}

/// Starts the execution of a submitted job (an in-process runner locally, a Step
/// Functions execution named after the job id on AWS). Starting a job twice must
/// not run it twice.
#[async_trait]
pub trait WorkflowStarter: Send + Sync {
    async fn start(&self, job: &Job) -> PortResult<()>;
}
