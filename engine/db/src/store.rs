//! The local implementations of the cache and job store ports, on PostgreSQL
//! (tables `quarry.cache` and `quarry.jobs`, written as the writer role), and
//! the API key table.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use quarry_core::jobs::{Job, JobError, JobResult, JobState, ResultFormat};
use quarry_core::ports::{Cache, CachedValue, JobStore, PortError, PortResult};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::Row;

fn unavailable(what: &str, e: impl std::fmt::Display) -> PortError {
    PortError::Unavailable(format!("{what}: {e}"))
}

async fn client(pool: &Pool, what: &str) -> PortResult<deadpool_postgres::Object> {
    pool.get().await.map_err(|e| unavailable(what, e))
}

/// The result cache in `quarry.cache`.
///
/// Writes are batched: `put` hands its entry to one writer task and waits for
/// the statement that stores it. While a batch is being written the next ones
/// queue, and the writer takes all of them into one `INSERT ... SELECT FROM
/// unnest(...)`; under load (a cache miss per request) that is one statement
/// for many entries instead of one each, and with no load one statement per
/// entry as before, with no added wait.
pub struct PgCache {
    pool: Pool,
    writer: std::sync::OnceLock<tokio::sync::mpsc::Sender<PendingPut>>,
}

/// Entries a batch takes at most.
const CACHE_BATCH: usize = 256;

/// The one field of the document a cache row holds for an answer kept in
/// object storage, and how that document's text starts.
const POINTER_FIELD: &str = "$quarry_pointer";
const POINTER_PREFIX: &str = "{\"$quarry_pointer\"";

/// A JSON document's bytes as they are, to and from a `json` column. The
/// `json` type's binary form is its text (PostgreSQL still checks it on the
/// way in), so an answer goes into the cache and back out with no parse and
/// no re-serialization, in the very bytes it was first served in.
#[derive(Debug)]
struct RawJson(bytes::Bytes);

impl ToSql for RawJson {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for RawJson {
    fn from_sql(
        _ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawJson(bytes::Bytes::copy_from_slice(raw)))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON
    }
}

struct PendingPut {
    key: String,
    operation: String,
    body: RawJson,
    ttl_seconds: f64,
    done: tokio::sync::oneshot::Sender<PortResult<()>>,
}

impl PgCache {
    pub fn new(pool: Pool) -> Self {
        PgCache {
            pool,
            writer: std::sync::OnceLock::new(),
        }
    }

    /// Deletes expired entries; returns how many.
    pub async fn sweep(&self) -> PortResult<u64> {
        let c = client(&self.pool, "cache").await?;
        c.execute("DELETE FROM quarry.cache WHERE expires_at <= now()", &[])
            .await
            .map_err(|e| unavailable("sweeping the cache", e))
    }

    /// The writer task's queue, started on first use (inside the runtime).
    fn writer(&self) -> &tokio::sync::mpsc::Sender<PendingPut> {
        self.writer.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(4 * CACHE_BATCH);
            tokio::spawn(write_batches(self.pool.clone(), rx));
            tx
        })
    }
}

/// The writer task: one statement per batch of queued entries, each entry told
/// how its statement went. Ends when the cache is dropped.
async fn write_batches(pool: Pool, mut rx: tokio::sync::mpsc::Receiver<PendingPut>) {
    let mut batch = Vec::with_capacity(CACHE_BATCH);
    while rx.recv_many(&mut batch, CACHE_BATCH).await > 0 {
        // One row per key: a statement may not update the same row twice, and
        // the last answer for a key is the one to keep.
        let mut last: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (i, p) in batch.iter().enumerate() {
            last.insert(p.key.as_str(), i);
        }
        let mut rows: Vec<usize> = last.into_values().collect();
        rows.sort_unstable();
        let keys: Vec<&str> = rows.iter().map(|&i| batch[i].key.as_str()).collect();
        let ops: Vec<&str> = rows.iter().map(|&i| batch[i].operation.as_str()).collect();
        let bodies: Vec<&RawJson> = rows.iter().map(|&i| &batch[i].body).collect();
        let ttls: Vec<f64> = rows.iter().map(|&i| batch[i].ttl_seconds).collect();
        let outcome: PortResult<()> = async {
            let c = client(&pool, "cache").await?;
            let stmt = c
                .prepare_cached(
                    "INSERT INTO quarry.cache (key, operation, body, expires_at)
                     SELECT k, o, b, now() + make_interval(secs => t)
                     FROM unnest($1::text[], $2::text[], $3::json[], $4::float8[]) AS u(k, o, b, t)
                     ON CONFLICT (key) DO UPDATE
                       SET body = EXCLUDED.body, expires_at = EXCLUDED.expires_at, created_at = now()",
                )
                .await
                .map_err(|e| unavailable("writing the cache", e))?;
            c.execute(&stmt, &[&keys, &ops, &bodies, &ttls])
                .await
                .map_err(|e| unavailable("writing the cache", e))?;
            Ok(())
        }
        .await;
        // The same outcome for every entry of the statement.
        let message = outcome.err().map(|e| match e {
            PortError::Unavailable(m) => m,
            other => other.to_string(),
        });
        for p in batch.drain(..) {
            let _ = p.done.send(match &message {
                None => Ok(()),
                Some(m) => Err(PortError::Unavailable(m.clone())),
            });
        }
    }
}

#[async_trait]
impl Cache for PgCache {
    async fn get(&self, key: &str) -> PortResult<Option<CachedValue>> {
        let c = client(&self.pool, "cache").await?;
        // Prepared once per connection: the cache sits on every request's path.
        let stmt = c
            .prepare_cached("SELECT body FROM quarry.cache WHERE key = $1 AND expires_at > now()")
            .await
            .map_err(|e| unavailable("reading the cache", e))?;
        let row = c
            .query_opt(&stmt, &[&key])
            .await
            .map_err(|e| unavailable("reading the cache", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let RawJson(body) = row
            .try_get(0)
            .map_err(|e| unavailable("reading the cache", e))?;
        // Only a pointer document starts so (an answer starts with its
        // `operation`); anything else is the answer's own bytes.
        if body.starts_with(POINTER_PREFIX.as_bytes()) {
            let doc: Value =
                serde_json::from_slice(&body).map_err(|e| unavailable("reading the cache", e))?;
            if let Some(k) = doc.get(POINTER_FIELD).and_then(Value::as_str) {
                return Ok(Some(CachedValue::Pointer {
                    object_key: k.to_string(),
                }));
            }
        }
        Ok(Some(CachedValue::Inline(body)))
    }

    async fn put(
        &self,
        key: &str,
        operation: &str,
        value: &CachedValue,
        ttl: Duration,
    ) -> PortResult<()> {
        let body = RawJson(match value {
            CachedValue::Inline(b) => b.clone(),
            CachedValue::Pointer { object_key } => {
                bytes::Bytes::from(json!({ POINTER_FIELD: object_key }).to_string())
            }
        });
        let (done, stored) = tokio::sync::oneshot::channel();
        let pending = PendingPut {
            key: key.to_string(),
            operation: operation.to_string(),
            body,
            ttl_seconds: ttl.as_secs_f64(),
            done,
        };
        self.writer()
            .send(pending)
            .await
            .map_err(|_| unavailable("writing the cache", "the cache writer stopped"))?;
        stored
            .await
            .map_err(|_| unavailable("writing the cache", "the cache writer stopped"))?
    }
}

/// The job store in `quarry.jobs`.
pub struct PgJobStore {
    pool: Pool,
}

const JOB_COLUMNS: &str = "id, operation, operation_version, parameters, format, state, attempts, \
    max_attempts, submitted_at, started_at, finished_at, next_attempt_at, lease_expires_at, \
    error, result, owner, request_id";

fn job_from_row(r: &Row) -> PortResult<Job> {
    let bad = |what: &str| PortError::Unavailable(format!("job row has an invalid {what}"));
    let state: String = r.get("state");
    let format: String = r.get("format");
    let params: Value = r.get("parameters");
    let error: Option<Value> = r.get("error");
    let result: Option<Value> = r.get("result");
    Ok(Job {
        id: r.get("id"),
        operation: r.get("operation"),
        operation_version: r.get("operation_version"),
        parameters: match params {
            Value::Object(m) => m,
            _ => return Err(bad("parameters")),
        },
        format: ResultFormat::parse(&format).ok_or_else(|| bad("format"))?,
        state: JobState::parse(&state).ok_or_else(|| bad("state"))?,
        attempts: u32::try_from(r.get::<_, i32>("attempts")).map_err(|_| bad("attempts"))?,
        max_attempts: u32::try_from(r.get::<_, i32>("max_attempts"))
            .map_err(|_| bad("max_attempts"))?,
        submitted_at: r.get("submitted_at"),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
        next_attempt_at: r.get("next_attempt_at"),
        lease_expires_at: r.get("lease_expires_at"),
        error: error
            .map(serde_json::from_value::<JobError>)
            .transpose()
            .map_err(|_| bad("error"))?,
        result: result
            .map(serde_json::from_value::<JobResult>)
            .transpose()
            .map_err(|_| bad("result"))?,
        owner: r.get("owner"),
        request_id: r.get("request_id"),
    })
}

fn to_json<T: serde::Serialize>(v: &Option<T>) -> Option<Value> {
    v.as_ref().and_then(|v| serde_json::to_value(v).ok())
}

impl PgJobStore {
    pub fn new(pool: Pool) -> Self {
        PgJobStore { pool }
    }

    /// Deletes finished jobs older than `age`; returns the result object keys of
    /// the deleted jobs so their objects can be removed too.
    pub async fn sweep(&self, age: Duration) -> PortResult<Vec<String>> {
        let c = client(&self.pool, "job store").await?;
        let rows = c
            .query(
                "DELETE FROM quarry.jobs WHERE finished_at < now() - make_interval(secs => $1)
                 RETURNING result->>'key'",
                &[&age.as_secs_f64()],
            )
            .await
            .map_err(|e| unavailable("sweeping jobs", e))?;
        Ok(rows
            .iter()
            .filter_map(|r| r.get::<_, Option<String>>(0))
            .collect())
    }
}

#[async_trait]
impl JobStore for PgJobStore {
    async fn create(&self, job: &Job) -> PortResult<()> {
        let c = client(&self.pool, "job store").await?;
        let n = c
            .execute(
                &format!(
                    "INSERT INTO quarry.jobs ({JOB_COLUMNS}) VALUES \
                     ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17) \
                     ON CONFLICT (id) DO NOTHING"
                ),
                &[
                    &job.id,
                    &job.operation,
                    &job.operation_version,
                    &Value::Object(job.parameters.clone()),
                    &job.format.extension(),
                    &job.state.as_str(),
                    &(job.attempts as i32),
                    &(job.max_attempts as i32),
                    &job.submitted_at,
                    &job.started_at,
                    &job.finished_at,
                    &job.next_attempt_at,
                    &job.lease_expires_at,
                    &to_json(&job.error),
                    &to_json(&job.result),
                    &job.owner,
                    &job.request_id,
                ],
            )
            .await
            .map_err(|e| unavailable("creating a job", e))?;
        if n == 0 {
            return Err(PortError::Conflict(format!("job {} exists", job.id)));
        }
        Ok(())
    }

    async fn get(&self, id: &str) -> PortResult<Option<Job>> {
        let c = client(&self.pool, "job store").await?;
        let row = c
            .query_opt(
                &format!("SELECT {JOB_COLUMNS} FROM quarry.jobs WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(|e| unavailable("reading a job", e))?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn transition(&self, current: &Job, next: &Job) -> PortResult<()> {
        current
            .check_transition(next)
            .map_err(PortError::Conflict)?;
        let c = client(&self.pool, "job store").await?;
        let n = c
            .execute(
                "UPDATE quarry.jobs SET state = $3, attempts = $4, started_at = $5, finished_at = $6,
                        next_attempt_at = $7, lease_expires_at = $8, error = $9, result = $10
                  WHERE id = $1 AND state = $2 AND attempts = $11",
                &[
                    &current.id,
                    &current.state.as_str(),
                    &next.state.as_str(),
                    &(next.attempts as i32),
                    &next.started_at,
                    &next.finished_at,
                    &next.next_attempt_at,
                    &next.lease_expires_at,
                    &to_json(&next.error),
                    &to_json(&next.result),
                    &(current.attempts as i32),
                ],
            )
            .await
            .map_err(|e| unavailable("updating a job", e))?;
        if n == 0 {
            return Err(PortError::Conflict(format!(
                "job {} changed since it was read",
                current.id
            )));
        }
        Ok(())
    }

    async fn due(&self, now: DateTime<Utc>, limit: u32) -> PortResult<Vec<Job>> {
        let c = client(&self.pool, "job store").await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM quarry.jobs
                      WHERE state = 'queued' AND next_attempt_at <= $1
                      ORDER BY next_attempt_at, submitted_at LIMIT $2"
                ),
                &[&now, &i64::from(limit)],
            )
            .await
            .map_err(|e| unavailable("listing due jobs", e))?;
        rows.iter().map(job_from_row).collect()
    }

    async fn expired(&self, now: DateTime<Utc>) -> PortResult<Vec<Job>> {
        let c = client(&self.pool, "job store").await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM quarry.jobs
                      WHERE state = 'running' AND lease_expires_at < $1 ORDER BY submitted_at"
                ),
                &[&now],
            )
            .await
            .map_err(|e| unavailable("listing interrupted jobs", e))?;
        rows.iter().map(job_from_row).collect()
    }
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Jobs,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Jobs => "jobs",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Some(match s {
            "read" => Scope::Read,
            "jobs" => Scope::Jobs,
            "admin" => Scope::Admin,
            _ => return None,
        })
    }
}

/// One active API key as the server holds it.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub secret_sha256: String,
    pub scopes: Vec<Scope>,
    pub rate_per_second: Option<u32>,
}

/// A key as listed (never with its secret).
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub rate_per_second: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// sha256 of a key's secret part, as lowercase hex.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Splits `qk_<id>_<secret>` into its id and secret.
pub fn split_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("qk_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && secret.len() >= 32).then_some((id, secret))
}

/// Active (not revoked) keys.
pub async fn active_keys(c: &tokio_postgres::Client) -> anyhow::Result<Vec<ApiKey>> {
    let rows = c
        .query(
            "SELECT id, name, secret_sha256, scopes, rate_per_second FROM quarry.api_keys
              WHERE revoked_at IS NULL",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ApiKey {
            id: r.get(0),
            name: r.get(1),
            secret_sha256: r.get(2),
            scopes: r
                .get::<_, Vec<String>>(3)
                .iter()
                .filter_map(|s| Scope::parse(s))
                .collect(),
            rate_per_second: r
                .get::<_, Option<i32>>(4)
                .and_then(|n| u32::try_from(n).ok()),
        })
        .collect())
}

/// Checks one presented key through `quarry_auth.check_key`, which any role
/// may call: the key if it is active and its secret matches, else `None`.
pub async fn check_key(
    c: &tokio_postgres::Client,
    presented: &str,
) -> anyhow::Result<Option<ApiKey>> {
    let Some((id, secret)) = split_key(presented) else {
        return Ok(None);
    };
    let digest = hash_secret(secret);
    let row = c
        .query_opt(
            "SELECT name, scopes, rate_per_second FROM quarry_auth.check_key($1, $2)",
            &[&id, &digest],
        )
        .await?;
    Ok(row.map(|r| ApiKey {
        id: id.to_string(),
        name: r.get(0),
        secret_sha256: digest,
        scopes: r
            .get::<_, Vec<String>>(1)
            .iter()
            .filter_map(|s| Scope::parse(s))
            .collect(),
        rate_per_second: r
            .get::<_, Option<i32>>(2)
            .and_then(|n| u32::try_from(n).ok()),
    }))
}

/// Creates a key; returns its id and the full key, which is shown only now.
pub async fn create_key(
    c: &tokio_postgres::Client,
    name: &str,
    scopes: &[Scope],
    rate_per_second: Option<u32>,
    random: [u8; 38],
) -> anyhow::Result<(String, String)> {
    let id = hex::encode(&random[..6]);
    let secret = hex::encode(&random[6..]);
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let rate = rate_per_second.map(|r| r.min(i32::MAX as u32) as i32);
    c.execute(
        "INSERT INTO quarry.api_keys (id, name, secret_sha256, scopes, rate_per_second)
         VALUES ($1, $2, $3, $4, $5)",
        &[&id, &name, &hash_secret(&secret), &scopes, &rate],
    )
    .await?;
    Ok((id.clone(), format!("qk_{id}_{secret}")))
}

/// [`create_key`] with fresh random bytes from the operating system.
pub async fn create_random_key(
    c: &tokio_postgres::Client,
    name: &str,
    scopes: &[Scope],
    rate_per_second: Option<u32>,
) -> anyhow::Result<(String, String)> {
    let mut random = [0u8; 38];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut random);
    create_key(c, name, scopes, rate_per_second, random).await
}

pub async fn list_keys(c: &tokio_postgres::Client) -> anyhow::Result<Vec<KeyInfo>> {
    let rows = c
        .query(
            "SELECT id, name, scopes, rate_per_second, created_at, revoked_at
               FROM quarry.api_keys ORDER BY created_at",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| KeyInfo {
            id: r.get(0),
            name: r.get(1),
            scopes: r.get(2),
            rate_per_second: r.get(3),
            created_at: r.get(4),
            revoked_at: r.get(5),
        })
        .collect())
}

/// Revokes a key; false if no active key has that id.
pub async fn revoke_key(c: &tokio_postgres::Client, id: &str) -> anyhow::Result<bool> {
    Ok(c.execute(
        "UPDATE quarry.api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        &[&id],
    )
    .await?
        == 1)
}
