//! Loading one export file: ledger claim, streaming parse and mapping, COPY into
//! staging tables, set-based upserts with versions and stale detection,
//! quarantine, reference and link refresh: all in one transaction per file.
//!
//! File identity is (source, object key, sha256 of the content). A file already
//! loaded is a duplicate and loads nothing; a file another process is loading is
//! reported as in progress; a file left `processing` by a process that died is
//! taken over (the session advisory lock of the dead process is gone).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use bytes::Bytes;
use futures_util::SinkExt;
use quarry_core::ingest::canonical::{ColType, Entity};
use quarry_core::ingest::mapping::{LinkKey, Mapped, Mapping};
use quarry_core::ingest::stream::{stream_records, RecordFormat, StreamItem};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

/// Opens the file's content; called twice (hash, then parse).
pub type Opener = Arc<dyn Fn() -> std::io::Result<Box<dyn Read + Send>> + Send + Sync>;

/// Advisory-lock namespace for ledger rows, so they never collide with other locks.
pub const LEDGER_LOCK_BASE: i64 = 0x5155_4152_0000_0000;
/// Advisory lock class (with `hashtext(source)`) held, per transaction, while a
/// file of that source compares and writes canonical rows.
const APPLY_LOCK_CLASS: i32 = 0x5155_4101;
// Held, per transaction, while links are recomputed: two files of different
// sources must see each other's organizations.
use crate::companies::LINK_LOCK_CLASS;

/// How long a run waits for another run's claim on the same file (a concurrent
/// load, or the session of a run that was killed and has not ended yet).
pub const DEFAULT_CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(300);
/// Bytes of COPY text buffered per table before it is sent.
const COPY_CHUNK: usize = 1 << 20;

/// What happened to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    Loaded,
    Failed,
    /// Same source, key and content as a file already loaded: nothing done.
    Duplicate,
    /// Another process is loading this very file right now: nothing done.
    InProgress,
    /// No mapping claims the file's key: nothing done (`quarry ingest` on a folder).
    Skipped,
    /// Too large to load within this process's time: handed to a process with
    /// no time limit (`handed_to` names it: the ECS ingest task on AWS).
    HandedOff,
}

/// The per-file report `quarry ingest` prints.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub key: String,
    pub source: String,
    pub status: FileStatus,
    pub ingest_file_id: Option<i64>,
    pub bytes: u64,
    pub records_read: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub stale: u64,
    /// Quarantined records by reason code.
    pub quarantined: BTreeMap<String, u64>,
    /// Records left out by the mapping's skip rules, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Values kept in attributes because their column could not hold them, by
    /// `entity.column` (details in `quarry.ingest_warnings`).
    pub warnings: BTreeMap<String, u64>,
    /// Records loaded without their nested rows (not expanded in the export); the
    /// nested rows already stored were kept.
    pub children_not_delivered: u64,
    pub error: Option<String>,
    pub elapsed_ms: u64,
    /// Where a file `HandedOff` went (an ECS task ARN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handed_to: Option<String>,
}

impl FileReport {
    /// A report for a file that was not loaded.
    pub fn failed(key: &str, source: &str) -> Self {
        Self::new(key, source)
    }

    /// A file no mapping claims, left alone.
    pub fn skipped(key: &str, why: &str) -> Self {
        let mut r = Self::new(key, "");
        r.status = FileStatus::Skipped;
        r.error = Some(why.to_string());
        r
    }

    fn new(key: &str, source: &str) -> Self {
        FileReport {
            key: key.to_string(),
            source: source.to_string(),
            status: FileStatus::Failed,
            ingest_file_id: None,
            bytes: 0,
            records_read: 0,
            inserted: 0,
            updated: 0,
            unchanged: 0,
            stale: 0,
            quarantined: BTreeMap::new(),
            skipped: BTreeMap::new(),
            warnings: BTreeMap::new(),
            children_not_delivered: 0,
            error: None,
            elapsed_ms: 0,
            handed_to: None,
        }
    }
    pub fn quarantined_total(&self) -> u64 {
        self.quarantined.values().sum()
    }
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
    pub fn warnings_total(&self) -> u64 {
        self.warnings.values().sum()
    }
}

/// Progress callback: (records read so far, bytes hashed/parsed so far).
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// How a file is loaded, beyond the file itself.
#[derive(Default, Clone)]
pub struct IngestOptions {
    /// Called with the records read so far.
    pub progress: Option<Progress>,
    /// Read the records in this layout instead of the mapping's own (quarantine
    /// replay feeds stored records as NDJSON).
    pub format: Option<RecordFormat>,
    /// Keep a copy of the file as `<raw_dir>/<source>/<sha256>` (written while it
    /// is parsed, so duplicates cost nothing), for `quarry backfill`.
    pub raw_dir: Option<PathBuf>,
    /// Backfill: the file is applied again under a new mapping version. Only rows
    /// whose current version came from one of these ledger entries (earlier
    /// applications of the same file) are rewritten, so each row changes at most
    /// once, whatever the order of the files; rows the file did not write before
    /// are added.
    pub supersedes: Option<Vec<i64>>,
    /// How long to wait for another run's claim on the same file before
    /// reporting it `InProgress` (default [`DEFAULT_CLAIM_WAIT`]).
    pub claim_wait: Option<std::time::Duration>,
    /// Give up, keeping nothing, when the load is not done by then (a Lambda
    /// invocation's end): the file fails with a message instead of the process
    /// being stopped mid-transaction. The apply statements are bounded by it too.
    pub deadline: Option<Instant>,
    /// Leave the file's organizations queued for company resolution instead of
    /// recomputing their links and companies in the file's transaction; the
    /// caller runs [`crate::companies::resolve_queue`] once its files are in
    /// (`quarry ingest` does, at the end of the run). Such a file never waits
    /// for the link lock, so files of different sources load in parallel.
    pub defer_companies: bool,
}

/// Ingests one file with `mapping`. Never panics on bad input: a bad file comes
/// back as `Failed` with its error and has loaded nothing. `Err` is returned only
/// when the database itself is unusable.
pub async fn ingest_file(
    client: &mut Client,
    mapping: Arc<Mapping>,
    key: &str,
    open: Opener,
    progress: Option<Progress>,
) -> Result<FileReport> {
    let opts = IngestOptions {
        progress,
        ..IngestOptions::default()
    };
    ingest_with(client, mapping, key, open, opts).await
}

/// [`ingest_file`] with every option.
pub async fn ingest_with(
    client: &mut Client,
    mapping: Arc<Mapping>,
    key: &str,
    open: Opener,
    opts: IngestOptions,
) -> Result<FileReport> {
    let IngestOptions {
        progress,
        format,
        raw_dir,
        supersedes,
        claim_wait,
        deadline,
        defer_companies,
    } = opts;
    let started = Instant::now();
    let mut report = FileReport::new(key, &mapping.spec.source);
    let hashed = {
        let open = open.clone();
        tokio::task::spawn_blocking(move || hash_content(&open)).await
    };
    let (sha, size) = match hashed {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            report.error = Some(format!("{e:#}"));
            report.elapsed_ms = started.elapsed().as_millis() as u64;
            return Ok(report);
        }
        Err(e) => return Err(anyhow::anyhow!("the hashing thread failed: {e}")),
    };
    report.bytes = size;
    let wait = claim_wait.unwrap_or(DEFAULT_CLAIM_WAIT);
    let claim = claim(client, &mapping, key, &sha, size, wait).await?;
    let id = match claim {
        Claim::Duplicate(id) => {
            report.status = FileStatus::Duplicate;
            report.ingest_file_id = Some(id);
            report.elapsed_ms = started.elapsed().as_millis() as u64;
            return Ok(report);
        }
        Claim::InProgress(id) => {
            report.status = FileStatus::InProgress;
            report.ingest_file_id = Some(id);
            report.elapsed_ms = started.elapsed().as_millis() as u64;
            return Ok(report);
        }
        Claim::Mine(id) => id,
    };
    report.ingest_file_id = Some(id);
    let outcome = load(
        client,
        &mapping,
        key,
        id,
        open,
        LoadOptions {
            progress,
            format,
            supersedes,
            raw_dir: raw_dir.map(|d| d.join(&mapping.spec.source)),
            deadline,
            defer_companies,
        },
        &sha,
        &mut report,
    )
    .await;
    match outcome {
        Ok(()) => report.status = FileStatus::Loaded,
        Err(e) => {
            let msg = if deadline.is_some_and(|d| Instant::now() >= d) {
                // A statement cancelled by the deadline's timeout says only that.
                format!("{:#}", out_of_time(started, report.records_read))
            } else {
                format!("{e:#}")
            };
            tracing::warn!(key, error = %msg, "ingest failed; nothing from the file was loaded");
            report.status = FileStatus::Failed;
            report.error = Some(msg.clone());
            report.inserted = 0;
            report.updated = 0;
            report.unchanged = 0;
            report.stale = 0;
            report.quarantined.clear();
            report.skipped.clear();
            report.warnings.clear();
            report.children_not_delivered = 0;
            let marked = client
                .execute(
                    "UPDATE quarry.ingest_files SET status = 'failed', error = $2, finished_at = now(), records_read = $3 WHERE id = $1",
                    &[&id, &msg, &(report.records_read as i64)],
                )
                .await
                .context("marking the file failed in the ledger");
            if let Err(e) = marked {
                let _ = client
                    .execute("SELECT pg_advisory_unlock($1)", &[&(LEDGER_LOCK_BASE + id)])
                    .await;
                return Err(e);
            }
        }
    }
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&(LEDGER_LOCK_BASE + id)])
        .await;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Passes bytes through while hashing them.
struct HashingReader {
    inner: Box<dyn Read + Send>,
    hash: Sha256,
    /// The raw copy being written, if one is kept.
    copy: Option<RawCopy>,
}

impl Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        if let Some(c) = self.copy.as_mut() {
            c.out.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}

/// A raw copy of a file being loaded: written under a temporary name while the
/// file is parsed, renamed to `<dir>/<sha256>` once the content is verified,
/// removed otherwise. Only files that load are copied (never duplicates).
struct RawCopy {
    dir: PathBuf,
    tmp: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
}

impl RawCopy {
    fn create(dir: &Path) -> Result<RawCopy> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the raw file folder {}", dir.display()))?;
        let tmp = dir.join(format!(
            ".incoming-{}-{}",
            std::process::id(),
            RAW_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let f = std::fs::File::create(&tmp)
            .with_context(|| format!("keeping a raw copy at {}", tmp.display()))?;
        Ok(RawCopy {
            dir: dir.to_path_buf(),
            tmp,
            out: std::io::BufWriter::new(f),
        })
    }

    fn keep(self, sha256: &str) -> Result<()> {
        let RawCopy { dir, tmp, out } = self;
        out.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .context("keeping a raw copy")?;
        let target = dir.join(sha256);
        if target.exists() {
            std::fs::remove_file(&tmp).ok();
        } else {
            std::fs::rename(&tmp, &target)
                .with_context(|| format!("keeping a raw copy at {}", target.display()))?;
        }
        Ok(())
    }
}

impl Drop for HashingReader {
    fn drop(&mut self) {
        // A copy not kept (the load failed) leaves nothing behind.
        if let Some(c) = self.copy.take() {
            drop(c.out);
            std::fs::remove_file(&c.tmp).ok();
        }
    }
}

/// The error of a load that reached its deadline.
fn out_of_time(started: Instant, records: u64) -> anyhow::Error {
    anyhow::anyhow!(
        "the file did not finish loading in the time this run has ({records} records read in {:.1} s); nothing from it was kept. Split the export into smaller files",
        started.elapsed().as_secs_f64()
    )
}

/// The content's sha256 and size.
fn hash_content(open: &Opener) -> Result<(String, u64)> {
    let mut r = open().context("opening the file")?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf).context("reading the file")?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

/// Distinguishes temporary raw copies written at the same time by one process.
static RAW_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Where the raw copy of a file with this content is kept.
pub fn raw_path(raw_dir: &Path, source: &str, sha256: &str) -> PathBuf {
    raw_dir.join(source).join(sha256)
}

enum Claim {
    Mine(i64),
    Duplicate(i64),
    InProgress(i64),
}

async fn claim(
    client: &mut Client,
    mapping: &Mapping,
    key: &str,
    sha: &str,
    size: u64,
    wait: std::time::Duration,
) -> Result<Claim> {
    let source = &mapping.spec.source;
    let tx = client.transaction().await?;
    let inserted = tx
        .query_opt(
            "INSERT INTO quarry.ingest_files (source_system, object_key, content_sha256, size_bytes, mapping_version, status)
             VALUES ($1, $2, $3, $4, $5, 'processing')
             ON CONFLICT (source_system, object_key, content_sha256, mapping_version) DO NOTHING RETURNING id",
            &[source, &key, &sha, &(size as i64), &mapping.spec.version],
        )
        .await
        .context("recording the file in the ingest ledger")?;
    if let Some(row) = inserted {
        let id: i64 = row.get(0);
        // Held for the whole load; released on unlock or when this session ends.
        tx.execute("SELECT pg_advisory_lock($1)", &[&(LEDGER_LOCK_BASE + id)])
            .await?;
        tx.commit().await?;
        return Ok(Claim::Mine(id));
    }
    tx.commit().await?;
    let row = client
        .query_one(
            "SELECT id, status FROM quarry.ingest_files WHERE source_system = $1 AND object_key = $2 AND content_sha256 = $3 AND mapping_version = $4",
            &[source, &key, &sha, &mapping.spec.version],
        )
        .await?;
    let (id, status): (i64, String) = (row.get(0), row.get(1));
    if status == "loaded" {
        return Ok(Claim::Duplicate(id));
    }
    // Another session holds the claim: a concurrent run, or the session of a run
    // that was killed and has not noticed yet (it ends, and lets go, once its
    // current statement is over). Wait for it, then look again: loaded by the
    // other run, or abandoned and ours to take over. Never skip it silently.
    let lock = LEDGER_LOCK_BASE + id;
    let free: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&lock])
        .await?
        .get(0);
    if !free {
        tracing::info!(
            key,
            ingest_file_id = id,
            wait_s = wait.as_secs(),
            "another run holds this file's claim; waiting for it"
        );
        let tx = client.transaction().await?;
        let ms = wait.as_millis().clamp(1, i32::MAX as u128);
        tx.batch_execute(&format!("SET LOCAL lock_timeout = {ms}"))
            .await?;
        match tx.execute("SELECT pg_advisory_lock($1)", &[&lock]).await {
            // A session-level lock outlives the transaction that took it.
            Ok(_) => tx.commit().await?,
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
                let _ = tx.rollback().await;
                return Ok(Claim::InProgress(id));
            }
            Err(e) => return Err(e).context("waiting for another run's claim on the file"),
        }
    }
    // Re-read under the lock: the holder may have finished in between.
    let status: String = client
        .query_one(
            "SELECT status FROM quarry.ingest_files WHERE id = $1",
            &[&id],
        )
        .await?
        .get(0);
    if status == "loaded" {
        let _ = client
            .execute("SELECT pg_advisory_unlock($1)", &[&(LEDGER_LOCK_BASE + id)])
            .await;
        return Ok(Claim::Duplicate(id));
    }
    // Failed before, or left `processing` by a process that died: take it over.
    client
        .execute(
            "UPDATE quarry.ingest_files SET status = 'processing', error = NULL, started_at = now(), finished_at = NULL, mapping_version = $2 WHERE id = $1",
            &[&id, &mapping.spec.version],
        )
        .await?;
    Ok(Claim::Mine(id))
}

/// A chunk of COPY text for one staging table.
enum Chunk {
    Rows(Entity, Vec<u8>),
    Quarantine(Vec<u8>),
    Warnings(Vec<u8>),
    /// Raw records of nested rows delivered on their own, in case their parent is missing.
    Detached(Vec<u8>),
    Read(u64),
}

/// What the parser counted besides rows.
#[derive(Default)]
struct ParseCounts {
    skipped: BTreeMap<String, u64>,
    warnings: BTreeMap<String, u64>,
    children_not_delivered: u64,
}

fn pg_type(ty: ColType) -> &'static str {
    match ty {
        ColType::Text | ColType::Char(_) => "text",
        ColType::Integer => "bigint",
        ColType::Decimal { .. } => "numeric",
        ColType::Boolean => "boolean",
        ColType::Date => "date",
        ColType::Timestamp => "timestamptz",
    }
}

/// Appends one COPY text field (tab-separated, `\N` for NULL).
fn copy_field(buf: &mut Vec<u8>, v: Option<&str>, first: bool) {
    if !first {
        buf.push(b'\t');
    }
    match v {
        None => buf.extend_from_slice(b"\\N"),
        Some(s) => {
            for b in s.bytes() {
                match b {
                    b'\\' => buf.extend_from_slice(b"\\\\"),
                    b'\t' => buf.extend_from_slice(b"\\t"),
                    b'\n' => buf.extend_from_slice(b"\\n"),
                    b'\r' => buf.extend_from_slice(b"\\r"),
                    // PostgreSQL text cannot hold NUL: quarantined raw text keeps a marker.
                    0 => buf.extend_from_slice("\u{FFFD}".as_bytes()),
                    _ => buf.push(b),
                }
            }
        }
    }
}

/// The parts of [`IngestOptions`] the load itself uses.
struct LoadOptions {
    progress: Option<Progress>,
    format: Option<RecordFormat>,
    supersedes: Option<Vec<i64>>,
    /// Keep a raw copy of the file in this folder (the source's).
    raw_dir: Option<PathBuf>,
    deadline: Option<Instant>,
    defer_companies: bool,
}

#[allow(clippy::too_many_arguments)]
async fn load(
    client: &mut Client,
    mapping: &Arc<Mapping>,
    key: &str,
    file_id: i64,
    open: Opener,
    opts: LoadOptions,
    claimed_sha: &str,
    report: &mut FileReport,
) -> Result<()> {
    let LoadOptions {
        progress,
        format,
        supersedes,
        raw_dir,
        deadline,
        defer_companies,
    } = opts;
    let started = Instant::now();
    // Backfill: rows may be rewritten only where this file wrote them before.
    let mine: Option<Vec<i64>> = supersedes.map(|mut ids| {
        ids.push(file_id);
        ids
    });
    let source = mapping.spec.source.clone();
    let file_sha = claimed_sha.to_string();
    let claimed_sha = claimed_sha.to_string();
    let entities = mapping.entities();
    let columns: HashMap<Entity, Vec<String>> =
        entities.iter().map(|e| (*e, mapping.columns(*e))).collect();
    let tx = client.transaction().await?;
    for e in &entities {
        let cols: Vec<String> = columns[e]
            .iter()
            .map(|c| {
                let ty = e.column(c).map_or("text", |col| pg_type(col.ty));
                format!("{c} {ty}")
            })
            .collect();
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE stg_{t} (source_id text NOT NULL, _parent text, _main boolean NOT NULL, _pos bigint NOT NULL, _version timestamptz, _keep boolean NOT NULL, attributes jsonb NOT NULL{extra}) ON COMMIT DROP",
            t = e.table(),
            extra = cols.iter().map(|c| format!(", {c}")).collect::<String>()
        ))
        .await?;
    }
    tx.batch_execute(
        "CREATE TEMP TABLE stg_quarantine (position bigint, record_type text, raw_record text, reason_code text, message text) ON COMMIT DROP;
         CREATE TEMP TABLE stg_warnings (position bigint, entity text, source_id text, column_name text, reason_code text, message text) ON COMMIT DROP;
         CREATE TEMP TABLE stg_detached (position bigint, record_type text, raw_record text) ON COMMIT DROP",
    )
    .await?;

    // Parse and map on a blocking thread; COPY here as chunks arrive.
    let (txc, mut rxc) = tokio::sync::mpsc::channel::<Chunk>(8);
    let m = mapping.clone();
    let cols_for_parser = columns.clone();
    let own_format = format.is_none();
    let parser = tokio::task::spawn_blocking(move || -> Result<ParseCounts> {
        // The content is hashed again while it is parsed: if it changed since the
        // ledger claim, what loads would not be what the ledger says was loaded.
        let mut reader = HashingReader {
            inner: open().context("opening the file")?,
            hash: Sha256::new(),
            copy: raw_dir.as_deref().map(RawCopy::create).transpose()?,
        };
        let mut bufs: HashMap<Entity, Vec<u8>> = HashMap::new();
        let mut qbuf: Vec<u8> = Vec::new();
        let mut wbuf: Vec<u8> = Vec::new();
        let mut dbuf: Vec<u8> = Vec::new();
        let mut counts = ParseCounts::default();
        let mut read = 0u64;
        let send = |c: Chunk| {
            txc.blocking_send(c)
                .map_err(|_| "the loader stopped".to_string())
        };
        let format = format.unwrap_or_else(|| m.record_format());
        let quarantine =
            |qbuf: &mut Vec<u8>, pos: u64, ty: Option<&str>, raw: &str, reason: &str, msg: &str| {
                copy_field(qbuf, Some(&pos.to_string()), true);
                copy_field(qbuf, ty, false);
                copy_field(qbuf, Some(raw), false);
                copy_field(qbuf, Some(reason), false);
                copy_field(qbuf, Some(msg), false);
                qbuf.push(b'\n');
            };
        let mut on_item = |item: StreamItem| -> Result<(), String> {
            read += 1;
            match item {
                StreamItem::BadRecord {
                    position,
                    raw,
                    error,
                } => {
                    quarantine(&mut qbuf, position, None, &raw, "invalid_json", &error);
                }
                StreamItem::Record {
                    position,
                    value,
                    whole,
                } => match m.map_item(&value, whole, position)? {
                    Mapped::Skipped { reason } => {
                        *counts.skipped.entry(reason).or_default() += 1;
                    }
                    Mapped::Rejected {
                        record_type,
                        reason,
                        message,
                    } => {
                        quarantine(
                            &mut qbuf,
                            position,
                            record_type.as_deref(),
                            &value.to_string(),
                            &reason,
                            &message,
                        );
                    }
                    Mapped::Rows { rows, record_type } => {
                        if rows
                            .first()
                            .is_some_and(|r| r.main && r.parent_key.is_some())
                        {
                            copy_field(&mut dbuf, Some(&position.to_string()), true);
                            copy_field(&mut dbuf, Some(&record_type), false);
                            copy_field(&mut dbuf, Some(&value.to_string()), false);
                            dbuf.push(b'\n');
                        }
                        for row in rows {
                            if row.keep_children {
                                counts.children_not_delivered += 1;
                            }
                            for w in &row.warnings {
                                *counts
                                    .warnings
                                    .entry(format!("{}.{}", row.entity.table(), w.column))
                                    .or_default() += 1;
                                copy_field(&mut wbuf, Some(&position.to_string()), true);
                                copy_field(&mut wbuf, Some(row.entity.table()), false);
                                copy_field(&mut wbuf, Some(&row.source_id), false);
                                copy_field(&mut wbuf, Some(&w.column), false);
                                copy_field(&mut wbuf, Some(&w.reason), false);
                                copy_field(&mut wbuf, Some(&w.message), false);
                                wbuf.push(b'\n');
                            }
                            let buf = bufs.entry(row.entity).or_default();
                            copy_field(buf, Some(&row.source_id), true);
                            copy_field(buf, row.parent_key.as_deref(), false);
                            copy_field(buf, Some(if row.main { "t" } else { "f" }), false);
                            copy_field(buf, Some(&position.to_string()), false);
                            copy_field(buf, row.version.as_deref(), false);
                            copy_field(buf, Some(if row.keep_children { "t" } else { "f" }), false);
                            let attrs = serde_json::Value::Object(row.attributes).to_string();
                            copy_field(buf, Some(&attrs), false);
                            for c in &cols_for_parser[&row.entity] {
                                let v = row
                                    .values
                                    .iter()
                                    .find(|(k, _)| k == c)
                                    .and_then(|(_, v)| v.as_deref());
                                copy_field(buf, v, false);
                            }
                            buf.push(b'\n');
                            if buf.len() >= COPY_CHUNK {
                                let full = std::mem::take(buf);
                                send(Chunk::Rows(row.entity, full))?;
                            }
                        }
                    }
                },
            }
            if qbuf.len() >= COPY_CHUNK {
                send(Chunk::Quarantine(std::mem::take(&mut qbuf)))?;
            }
            if wbuf.len() >= COPY_CHUNK {
                send(Chunk::Warnings(std::mem::take(&mut wbuf)))?;
            }
            if dbuf.len() >= COPY_CHUNK {
                send(Chunk::Detached(std::mem::take(&mut dbuf)))?;
            }
            if read.is_multiple_of(1000) {
                send(Chunk::Read(read))?;
            }
            Ok(())
        };
        let result = stream_records(&mut reader, &format, &mut on_item);
        let summary = result.map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(e) = own_format
            .then(|| quarry_core::ingest::preview::file_error_for_summary(&summary))
            .flatten()
        {
            anyhow::bail!(e);
        }
        // Read to the end (trailing bytes after the records) before comparing.
        std::io::copy(&mut reader, &mut std::io::sink()).context("reading the file")?;
        let seen = hex::encode(reader.hash.clone().finalize());
        if seen != claimed_sha {
            anyhow::bail!(
                "the file changed while it was being loaded; load it again once it is complete"
            );
        }
        if let Some(copy) = reader.copy.take() {
            copy.keep(&seen)?;
        }
        for (e, buf) in bufs {
            if !buf.is_empty() {
                send(Chunk::Rows(e, buf)).map_err(anyhow::Error::msg)?;
            }
        }
        if !qbuf.is_empty() {
            send(Chunk::Quarantine(qbuf)).map_err(anyhow::Error::msg)?;
        }
        if !wbuf.is_empty() {
            send(Chunk::Warnings(wbuf)).map_err(anyhow::Error::msg)?;
        }
        if !dbuf.is_empty() {
            send(Chunk::Detached(dbuf)).map_err(anyhow::Error::msg)?;
        }
        send(Chunk::Read(read)).map_err(anyhow::Error::msg)?;
        Ok(counts)
    });

    let mut copy_error = None;
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), rxc.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    copy_error = Some(out_of_time(started, report.records_read));
                    break;
                }
            },
            None => rxc.recv().await,
        };
        let Some(chunk) = next else { break };
        let res: Result<()> = async {
            match chunk {
                Chunk::Read(n) => {
                    report.records_read = n;
                    if let Some(p) = &progress {
                        p(n);
                    }
                }
                Chunk::Rows(e, buf) => {
                    let cols = columns[&e].iter().map(|c| format!(", {c}")).collect::<String>();
                    copy_chunk(&tx, &format!("COPY stg_{} (source_id, _parent, _main, _pos, _version, _keep, attributes{cols}) FROM STDIN", e.table()), buf).await?;
                }
                Chunk::Quarantine(buf) => {
                    copy_chunk(&tx, "COPY stg_quarantine (position, record_type, raw_record, reason_code, message) FROM STDIN", buf).await?;
                }
                Chunk::Detached(buf) => {
                    copy_chunk(&tx, "COPY stg_detached (position, record_type, raw_record) FROM STDIN", buf).await?;
                }
                Chunk::Warnings(buf) => {
                    copy_chunk(&tx, "COPY stg_warnings (position, entity, source_id, column_name, reason_code, message) FROM STDIN", buf).await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = res {
            copy_error = Some(e);
            break;
        }
    }
    drop(rxc);
    let parsed = parser.await.context("the parser thread failed")?;
    if let Some(e) = copy_error {
        return Err(e.context("loading into staging"));
    }
    let counts = parsed?;
    report.skipped = counts.skipped;
    report.warnings = counts.warnings;
    report.children_not_delivered = counts.children_not_delivered;
    if let Some(d) = deadline {
        // What is left of the time bounds every statement of the apply below.
        let left = d.saturating_duration_since(Instant::now());
        if left < std::time::Duration::from_secs(1) {
            return Err(out_of_time(started, report.records_read));
        }
        tx.batch_execute(&format!(
            "SET LOCAL statement_timeout = {}",
            // PostgreSQL takes at most i32::MAX ms (about 24 days).
            left.as_millis().min(i32::MAX as u128)
        ))
        .await?;
    }

    // One file of a source applies at a time: what is compared below is what is
    // written (parsing and staging above run in parallel with other loads).
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&APPLY_LOCK_CLASS, &source],
    )
    .await
    .context("waiting for other loads of the source to commit")?;
    // A file that writes organizations takes the link lock now, before it locks
    // any organization row: a late version is placed under `FOR UPDATE`
    // (`canonical.place_late_version`), and another source's link refresh,
    // holding the link lock, needs `KEY SHARE` on that row for its links'
    // foreign keys. Taken later, the two waited for each other (deadlock). A
    // file that leaves its companies to a later resolution never takes it.
    if entities.contains(&Entity::Organizations) && !defer_companies {
        tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LINK_LOCK_CLASS])
            .await
            .context("waiting for other loads' link refresh")?;
    }
    // The canonical type of every column: a staged row is compared with the
    // stored one as the row it would become (see `staged_row_json`).
    let mut canonical_types: HashMap<Entity, HashMap<String, String>> = HashMap::new();
    for e in &entities {
        let rows = tx
            .query(
                "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
                 WHERE attrelid = ('canonical.' || $1)::regclass AND attnum > 0 AND NOT attisdropped",
                &[&e.table()],
            )
            .await
            .with_context(|| format!("reading the columns of canonical.{}", e.table()))?;
        canonical_types.insert(*e, rows.iter().map(|r| (r.get(0), r.get(1))).collect());
    }
    let backfill = mine.is_some();

    // Which records apply: for every entity, the newest main row per key wins
    // (older in-file copies are superseded), and a winner older than the stored
    // row is stale. Versions are ordered by source timestamp, a version without
    // one first, and equal timestamps by content (migration 0007), so the order
    // files arrive in does not decide. Nested rows of other entities (an order's
    // customer, its products) stand on their own; an order's lines follow it: a
    // stale order writes none of its lines.
    let src = quote_literal(&source);
    tx.batch_execute("CREATE TEMP TABLE applied_pos (_pos bigint PRIMARY KEY) ON COMMIT DROP")
        .await?;
    for e in &entities {
        let t = e.table();
        let stale_cond = match mapping.version_column(*e) {
            Some(v) => format!(
                "SELECT w.source_id FROM win_{t} w
                 JOIN stg_{t} s ON s._pos = w._pos AND s._main AND s.source_id = w.source_id
                 JOIN canonical.{t} c ON c.source_system = {src} AND c.source_id = w.source_id
                 WHERE {older}",
                older = older_than_stored(&v, &columns[e], &canonical_types[e], backfill)
            ),
            None => format!("SELECT source_id FROM win_{t} WHERE false"),
        };
        // Temp tables are never auto-analyzed: without statistics the planner
        // picks nested loops over tens of thousands of rows.
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE win_{t} ON COMMIT DROP AS
             SELECT DISTINCT ON (source_id) source_id, _pos, _version FROM stg_{t} WHERE _main
             ORDER BY source_id, _version DESC NULLS LAST, _pos DESC;
             CREATE UNIQUE INDEX ON win_{t} (source_id);
             ANALYZE win_{t};
             CREATE TEMP TABLE stale_{t} ON COMMIT DROP AS {stale_cond};
             CREATE UNIQUE INDEX ON stale_{t} (source_id);
             INSERT INTO applied_pos SELECT w._pos FROM win_{t} w
             WHERE NOT EXISTS (SELECT 1 FROM stale_{t} x WHERE x.source_id = w.source_id)
             ON CONFLICT DO NOTHING;"
        ))
        .await?;
    }
    tx.batch_execute("ANALYZE applied_pos").await?;
    // The organizations this file writes as they were before it: the links of
    // their values before and after the file are recomputed.
    let writes_orgs = entities.contains(&Entity::Organizations);
    if writes_orgs {
        tx.execute(
            "CREATE TEMP TABLE touched_orgs ON COMMIT DROP AS
             SELECT * FROM canonical.organizations
             WHERE source_system = $1 AND source_id IN (SELECT source_id FROM stg_organizations)",
            &[&source],
        )
        .await
        .context("noting the link keys of the organizations before the file")?;
    }
    let rules_seen = if writes_orgs {
        crate::companies::queue_stored_organizations(&tx, file_id).await?
    } else {
        None
    };

    // Set-based upserts, parents before children.
    for e in &entities {
        let t = e.table();
        let cols = &columns[e];
        let version = mapping.version_column(*e);
        let ver_expr = version.as_deref().unwrap_or("_version");
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE cur_{t} ON COMMIT DROP AS
             SELECT DISTINCT ON (s.source_id) s.* FROM stg_{t} s
             WHERE (s._main AND EXISTS (SELECT 1 FROM win_{t} w WHERE w.source_id = s.source_id AND w._pos = s._pos))
                OR (NOT s._main AND ({on_their_own} OR EXISTS (SELECT 1 FROM applied_pos a WHERE a._pos = s._pos)))
             ORDER BY s.source_id, {sv} DESC NULLS LAST, s._pos DESC;
             CREATE UNIQUE INDEX ON cur_{t} (source_id);
             ANALYZE cur_{t};
             CREATE TEMP TABLE late_{t} ON COMMIT DROP AS {late};
             CREATE UNIQUE INDEX ON late_{t} (source_id);",
            on_their_own = !backfill && *e != Entity::OrderLines,
            sv = version.as_deref().map_or("s._version".to_string(), |v| staged_version(v, cols)),
            late = match &version {
                // A version older than the stored row: not written, placed in history.
                Some(v) => format!(
                    "SELECT s.source_id, ({json} || jsonb_build_object('ingest_file_id', {file_id}::bigint)) - ARRAY['organization_id', 'product_id'] AS row_data
                     FROM cur_{t} s JOIN canonical.{t} c ON c.source_system = {src} AND c.source_id = s.source_id
                     WHERE {older}",
                    json = staged_row_json(cols, &canonical_types[e]),
                    older = older_than_stored(v, cols, &canonical_types[e], backfill)
                ),
                None => format!("SELECT source_id, NULL::jsonb AS row_data FROM cur_{t} WHERE false"),
            }
        ))
        .await?;
        let stale_db = count(&tx, &format!("SELECT count(*) FROM stale_{t}")).await?;
        let main_staged = count(&tx, &format!("SELECT count(*) FROM stg_{t} WHERE _main")).await?;
        let main_cur = count(&tx, &format!("SELECT count(*) FROM cur_{t} WHERE _main")).await?;
        let col_list = cols.iter().map(|c| format!(", {c}")).collect::<String>();
        let sel_list = cols.iter().map(|c| format!(", s.{c}")).collect::<String>();
        let set_list = cols
            .iter()
            .map(|c| format!("{c} = EXCLUDED.{c}, "))
            .collect::<String>();
        // Parent id and references are resolved in the same statement, so no
        // second pass over fresh rows is needed (references to rows loaded
        // later are caught by refresh_references).
        let src = quote_literal(&source);
        let mut ref_cols = String::new();
        let mut ref_sel = String::new();
        let mut ref_join = String::new();
        let mut ref_set = String::new();
        // `key_col`: the source key the reference is resolved from. The old id is
        // kept only while that key is unchanged (the target may load later).
        let mut add_ref = |col: &str, sel: &str, join: String, key_col: Option<&str>| {
            ref_cols.push_str(&format!(", {col}"));
            ref_sel.push_str(&format!(", {sel}"));
            ref_join.push_str(&join);
            match key_col {
                Some(k) => ref_set.push_str(&format!(
                    "{col} = CASE WHEN EXCLUDED.{k} IS NOT DISTINCT FROM t.{k} THEN COALESCE(EXCLUDED.{col}, t.{col}) ELSE EXCLUDED.{col} END, "
                )),
                None => ref_set.push_str(&format!("{col} = EXCLUDED.{col}, ")),
            }
        };
        match e {
            Entity::OrderLines => {
                add_ref("order_id", "o.id", format!(" JOIN canonical.orders o ON o.source_system = {src} AND o.source_id = s._parent"), None);
                if cols.iter().any(|c| c == "sku") {
                    add_ref("product_id", "p.id", format!(" LEFT JOIN canonical.products p ON p.source_system = {src} AND p.source_id = s.sku"), Some("sku"));
                }
            }
            Entity::Orders if cols.iter().any(|c| c == "customer_source_id") => {
                add_ref("organization_id", "g.id", format!(" LEFT JOIN canonical.organizations g ON g.source_system = {src} AND g.source_id = s.customer_source_id"), Some("customer_source_id"));
            }
            Entity::Opportunities | Entity::People
                if cols.iter().any(|c| c == "organization_source_id") =>
            {
                add_ref("organization_id", "g.id", format!(" LEFT JOIN canonical.organizations g ON g.source_system = {src} AND g.source_id = s.organization_source_id"), Some("organization_source_id"));
            }
            _ => {}
        }
        let (order_col, order_sel, order_join, order_set) = (ref_cols, ref_sel, ref_join, ref_set);
        // A row changes when the record is not older than it and, in a backfill,
        // when this file wrote its current version ($3 is null otherwise).
        let newer = match &version {
            Some(_) => format!("WHERE (t.{ver_expr} IS NULL OR EXCLUDED.{ver_expr} IS NULL OR EXCLUDED.{ver_expr} >= t.{ver_expr}) AND ($3::bigint[] IS NULL OR t.ingest_file_id = ANY($3))"),
            None => "WHERE ($3::bigint[] IS NULL OR t.ingest_file_id = ANY($3))".to_string(),
        };
        if *e == Entity::OrderLines {
            // Lines no longer present in an applied order are removed with it, before
            // the upsert renumbers the remaining ones.
            tx.execute(
                "DELETE FROM canonical.order_lines l USING canonical.orders o, cur_orders p
                 WHERE l.order_id = o.id AND o.source_system = $1 AND o.source_id = p.source_id
                   AND NOT p._keep
                   AND ($2::bigint[] IS NULL OR o.ingest_file_id = ANY($2))
                   AND NOT EXISTS (SELECT 1 FROM stale_orders x WHERE x.source_id = p.source_id)
                   AND NOT EXISTS (SELECT 1 FROM cur_order_lines c WHERE c.source_id = l.source_id)",
                &[&source, &mine],
            )
            .await?;
        }
        // When none of the rows is stored yet (a source's first load, a
        // delivery of new records only), a plain INSERT: the conflict arbiter's
        // speculative insertion cost a quarter of the insert (98,000 order lines:
        // 1.29 s against 1.00 s). One file of a source applies at a time (the
        // apply lock above), so none can appear meanwhile.
        let any_stored: bool = tx
            .query_one(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM cur_{t} s JOIN canonical.{t} c
                                    ON c.source_system = $1 AND c.source_id = s.source_id)"
                ),
                &[&source],
            )
            .await
            .with_context(|| format!("looking up the stored rows of {t}"))?
            .get(0);
        let (on_conflict, params): (String, Vec<&(dyn ToSql + Sync)>) = if any_stored {
            (
                format!(
                    "ON CONFLICT (source_system, source_id) DO UPDATE SET {set_list}{order_set}attributes = EXCLUDED.attributes, ingest_file_id = EXCLUDED.ingest_file_id
                       {newer}"
                ),
                vec![&source, &file_id, &mine],
            )
        } else {
            (String::new(), vec![&source, &file_id])
        };
        let row = tx
            .query_one(
                &format!(
                    "WITH up AS (
                       INSERT INTO canonical.{t} AS t (source_system, source_id, attributes, ingest_file_id{order_col}{col_list})
                       SELECT $1, s.source_id, s.attributes, $2{order_sel}{sel_list}
                       FROM cur_{t} s {order_join}
                       WHERE NOT EXISTS (SELECT 1 FROM late_{t} x WHERE x.source_id = s.source_id)
                       {on_conflict}
                       RETURNING t.source_id, (xmax = 0) AS ins
                     )
                     SELECT count(*) FILTER (WHERE up.ins AND c._main), count(*) FILTER (WHERE NOT up.ins AND c._main)
                     FROM up JOIN cur_{t} c USING (source_id)"
                ),
                &params,
            )
            .await
            .with_context(|| format!("upserting {t}"))?;
        let (ins, upd): (i64, i64) = (row.get(0), row.get(1));
        let ins = ins as u64;
        let upd = upd as u64;
        report.inserted += ins;
        report.updated += upd;
        report.stale += (main_staged - main_cur) + stale_db;
        report.unchanged += main_cur.saturating_sub(ins + upd + stale_db);
        if !backfill {
            let placed = count(
                &tx,
                &format!("SELECT count(*) FILTER (WHERE canonical.place_late_version('{t}', row_data)) FROM late_{t}"),
            )
            .await
            .with_context(|| format!("placing late versions of {t} in history"))?;
            if placed > 0 {
                tracing::info!(
                    entity = t,
                    placed,
                    "versions older than the stored rows placed in history"
                );
            }
        }
    }

    // Nested rows delivered on their own whose parent is neither in the file nor
    // loaded before were not written (their insert needs the parent): they are
    // quarantined, not lost.
    if mapping.has_detached_records() {
        let orphans = tx
            .execute(
                "INSERT INTO stg_quarantine (position, record_type, raw_record, reason_code, message)
                 SELECT d.position, d.record_type, d.raw_record, 'missing_parent',
                        'the record belongs to ' || s._parent || ', which is neither in the file nor loaded before'
                 FROM stg_detached d
                 JOIN stg_order_lines s ON s._pos = d.position AND s._main
                 WHERE NOT EXISTS (SELECT 1 FROM canonical.orders o WHERE o.source_system = $1 AND o.source_id = s._parent)",
                &[&source],
            )
            .await
            .context("quarantining rows whose parent is missing")?;
        report.unchanged = report.unchanged.saturating_sub(orphans);
    }

    // Quarantine.
    let q = tx
        .query(
            "WITH ins AS (
               INSERT INTO quarry.quarantine (ingest_file_id, source_system, object_key, position, record_type, raw_record, reason_code, message, mapping_version)
               SELECT $1, $2, $3, position, record_type, raw_record, reason_code, message, $4 FROM stg_quarantine
               RETURNING reason_code)
             SELECT reason_code, count(*) FROM ins GROUP BY 1 ORDER BY 1",
            &[&file_id, &source, &key, &mapping.spec.version],
        )
        .await?;
    for r in q {
        report
            .quarantined
            .insert(r.get(0), r.get::<_, i64>(1) as u64);
    }
    // Open entries of earlier applications of this very file (under another
    // mapping version) are superseded: this application re-quarantined whatever
    // is still bad.
    tx.execute(
        "UPDATE quarry.quarantine SET resolved_at = now()
         WHERE resolved_at IS NULL AND ingest_file_id IN (
           SELECT id FROM quarry.ingest_files
           WHERE source_system = $1 AND object_key = $2 AND content_sha256 = $3 AND id <> $4)",
        &[&source, &key, &file_sha, &file_id],
    )
    .await
    .context("superseding earlier quarantine entries of the file")?;
    tx.execute(
        "INSERT INTO quarry.ingest_warnings (ingest_file_id, source_system, object_key, position, entity, source_id, column_name, reason_code, message)
         SELECT $1, $2, $3, position, entity, source_id, column_name, reason_code, message FROM stg_warnings",
        &[&file_id, &source, &key],
    )
    .await
    .context("recording field warnings")?;

    refresh_references(&tx, &source).await?;
    if writes_orgs {
        refresh_links(
            &tx,
            &source,
            &mapping.link_keys(),
            file_id,
            rules_seen.as_deref(),
            defer_companies,
        )
        .await?;
    }

    tx.execute(
        "UPDATE quarry.ingest_files SET status = 'loaded', error = NULL, finished_at = now(),
           records_read = $2, inserted = $3, updated = $4, unchanged = $5, stale = $6, quarantined = $7,
           skipped = $8, warnings = $9, children_not_delivered = $10
         WHERE id = $1",
        &[
            &file_id,
            &(report.records_read as i64),
            &(report.inserted as i64),
            &(report.updated as i64),
            &(report.unchanged as i64),
            &(report.stale as i64),
            &(report.quarantined_total() as i64),
            &(report.skipped_total() as i64),
            &(report.warnings_total() as i64),
            &(report.children_not_delivered as i64),
        ],
    )
    .await?;
    tx.execute(
        "UPDATE quarry.data_version SET version = version + 1, changed_at = now()",
        &[],
    )
    .await?;
    tx.commit().await.context("committing the file")?;
    Ok(())
}

/// Whether staged row `s` would change stored row `c` at all: its mapped columns
/// (cast to their canonical types) and attributes against the stored ones. A
/// plain row comparison: the content rank (to_jsonb and md5 of both sides) is
/// only computed for rows that differ.
fn staged_differs(cols: &[String], types: &HashMap<String, String>) -> String {
    let staged: Vec<String> = cols
        .iter()
        .map(|c| match types.get(c) {
            Some(ty) => format!("s.{c}::{ty}"),
            None => format!("s.{c}"),
        })
        .chain(std::iter::once("s.attributes".to_string()))
        .collect();
    let stored: Vec<String> = cols
        .iter()
        .map(|c| format!("c.{c}"))
        .chain(std::iter::once("c.attributes".to_string()))
        .collect();
    format!(
        "ROW({}) IS DISTINCT FROM ROW({})",
        staged.join(", "),
        stored.join(", ")
    )
}

/// A staged row (`s`) as the canonical row it would make of the stored one
/// (`c`): the mapped columns cast to their canonical types over the stored
/// row, so both compare as `canonical.version_rank` sees them.
fn staged_row_json(cols: &[String], types: &HashMap<String, String>) -> String {
    let mut pairs: Vec<String> = cols
        .iter()
        .map(|c| match types.get(c) {
            Some(ty) => format!("'{c}', s.{c}::{ty}"),
            None => format!("'{c}', s.{c}"),
        })
        .collect();
    pairs.push("'attributes', s.attributes".to_string());
    // jsonb_build_object takes at most 100 arguments.
    let objects: Vec<String> = pairs
        .chunks(40)
        .map(|p| format!("jsonb_build_object({})", p.join(", ")))
        .collect();
    format!("(to_jsonb(c) || {})", objects.join(" || "))
}

/// The condition under which staged row `s` is older than stored row `c`:
/// an earlier source timestamp, none where the stored row has one, or the same
/// timestamp and a lower content rank. Between two versions without a
/// timestamp the later delivery wins (nothing else can tell which is newer).
/// A backfill rewrites what its own file wrote: equal timestamps apply there.
fn older_than_stored(
    version_col: &str,
    cols: &[String],
    types: &HashMap<String, String>,
    backfill: bool,
) -> String {
    let staged_json = &staged_row_json(cols, types);
    let differs = staged_differs(cols, types);
    let v = version_col;
    if !cols.iter().any(|c| c == version_col) {
        // Rows that do not carry the timestamp keep the stored one: when there
        // is one, only the content can tell them apart; when there is none, the
        // later delivery wins.
        return if backfill {
            "false".to_string()
        } else {
            format!("(c.{v} IS NOT NULL AND {differs} AND canonical.version_rank({staged_json}) < canonical.version_rank(to_jsonb(c)))")
        };
    }
    let sv = staged_version(version_col, cols);
    let tie = if backfill {
        String::new()
    } else {
        format!(
            " OR (c.{v} = {sv} AND {differs} AND canonical.version_rank({staged_json}) < canonical.version_rank(to_jsonb(c)))"
        )
    };
    format!("(c.{v} > {sv} OR (c.{v} IS NOT NULL AND {sv} IS NULL){tie})")
}

/// A staged row's version: its own version column where the mapping fills it
/// (a nested customer's `updated_at`), else the record's.
fn staged_version(version_col: &str, cols: &[String]) -> String {
    if cols.iter().any(|c| c == version_col) {
        format!("s.{version_col}")
    } else {
        "s._version".to_string()
    }
}

/// Sends one chunk of COPY text to a staging table.
async fn copy_chunk(tx: &tokio_postgres::Transaction<'_>, copy: &str, buf: Vec<u8>) -> Result<()> {
    let sink = tx.copy_in(copy).await?;
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from(buf)).await?;
    sink.as_mut().finish().await?;
    Ok(())
}

async fn count(tx: &tokio_postgres::Transaction<'_>, sql: &str) -> Result<u64> {
    Ok(tx.query_one(sql, &[]).await?.get::<_, i64>(0) as u64)
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Resolves references within the source system that are still unresolved.
async fn refresh_references(tx: &tokio_postgres::Transaction<'_>, source: &str) -> Result<()> {
    // (table, column holding the organization's source key, what it resolves)
    for (table, key, what) in [
        ("orders", "customer_source_id", "order customers"),
        (
            "opportunities",
            "organization_source_id",
            "opportunity accounts",
        ),
        ("people", "organization_source_id", "people's organizations"),
    ] {
        tx.execute(
            &format!(
                "UPDATE canonical.{table} o SET organization_id = g.id FROM canonical.organizations g
                 WHERE o.source_system = $1 AND o.organization_id IS NULL
                   AND g.source_system = o.source_system AND g.source_id = o.{key}"
            ),
            &[&source],
        )
        .await
        .with_context(|| format!("resolving {what}"))?;
    }
    tx.execute(
        "UPDATE canonical.order_lines l SET product_id = p.id FROM canonical.products p
         WHERE l.source_system = $1 AND l.product_id IS NULL
           AND p.source_system = l.source_system AND p.source_id = l.sku",
        &[&source],
    )
    .await
    .context("resolving order line products")?;
    Ok(())
}

/// Records which link keys the source's mapping declares and queues the
/// file's new organizations for company resolution; unless `defer`, resolves
/// the queue in the file's transaction ([`crate::companies::resolve_queue_in`]):
/// the links of every block value the file touched (its organizations' values
/// before and after it) by the declared matching rules, and the companies of
/// what changed. Links are a function of the organizations and the rules, not
/// of the order files came in. Manual links and people's decisions are never
/// touched.
async fn refresh_links(
    tx: &tokio_postgres::Transaction<'_>,
    source: &str,
    keys: &[LinkKey],
    file_id: i64,
    rules_seen: Option<&str>,
    defer: bool,
) -> Result<()> {
    let declared: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
    tx.execute(
        "INSERT INTO quarry.source_link_keys (source_system, link_keys) VALUES ($1, $2)
         ON CONFLICT (source_system) DO UPDATE SET link_keys = EXCLUDED.link_keys, updated_at = now()
         WHERE source_link_keys.link_keys IS DISTINCT FROM EXCLUDED.link_keys",
        &[&source, &declared],
    )
    .await
    .context("recording the source's link keys")?;
    crate::companies::queue_new_organizations(tx, source, file_id, rules_seen).await?;
    if defer {
        return Ok(());
    }
    // Serialised across files (held since before the upserts): a concurrent
    // load of another source must see this file's organizations (and this one
    // its), or a link is lost.
    tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LINK_LOCK_CLASS])
        .await
        .context("waiting for other loads' link refresh")?;
    crate::companies::resolve_queue_in(tx, Some(file_id)).await?;
    Ok(())
}
