//! `quarry ingest`: files or folders laid out like the bucket, each file matched
//! to a source by its key and loaded with a per-file report: each source's
//! files one by one in key order, several sources at once (`--jobs`), and the
//! companies of all of them resolved once at the end.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use quarry_core::ingest::mapping::Mapping;
use quarry_db::ingest::{ingest_with, FileReport, FileStatus, IngestOptions, Opener};

/// A file to load and the object key it stands for.
struct Job {
    path: PathBuf,
    key: String,
}

/// A file's object key: the longest trailing part of its path that a mapping
/// claims (`.../samples/crm-data/x.json` -> `crm-data/x.json`), else its path
/// relative to the folder it was found in.
pub fn key_for(path: &Path, base: Option<&Path>, mappings: &[Arc<Mapping>]) -> (String, bool) {
    let parts: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect();
    if let Some(k) = (0..parts.len())
        .map(|i| parts[i..].join("/"))
        .find(|k| mappings.iter().any(|m| m.matches_key(k)))
    {
        return (k, true);
    }
    let rel = base.and_then(|b| path.strip_prefix(b).ok()).unwrap_or(path);
    (rel.to_string_lossy().replace('\\', "/"), false)
}

/// Files of the arguments, in key order. Files found in folders that no mapping
/// claims are left out (reported as skipped); a named file is always attempted.
fn collect(paths: &[PathBuf], mappings: &[Arc<Mapping>]) -> Result<(Vec<Job>, Vec<String>)> {
    let mut jobs = Vec::new();
    let mut skipped = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                let rd = std::fs::read_dir(&dir)
                    .with_context(|| format!("reading {}", dir.display()))?;
                for e in rd {
                    let f = e?.path();
                    if f.is_dir() {
                        stack.push(f);
                    } else if f.is_file() {
                        let (key, claimed) = key_for(&f, Some(p), mappings);
                        if claimed {
                            jobs.push(Job { path: f, key });
                        } else {
                            skipped.push(key);
                        }
                    }
                }
            }
        } else if p.is_file() {
            let (key, _) = key_for(p, None, mappings);
            jobs.push(Job {
                path: p.clone(),
                key,
            });
        } else {
            bail!("{} does not exist", p.display());
        }
    }
    jobs.sort_by(|a, b| a.key.cmp(&b.key).then_with(|| a.path.cmp(&b.path)));
    // The same file named twice (a folder and a file inside it) is loaded once.
    jobs.dedup_by(|a, b| {
        a.key == b.key && std::fs::canonicalize(&a.path).ok() == std::fs::canonicalize(&b.path).ok()
    });
    skipped.sort();
    Ok((jobs, skipped))
}

/// The mapping of `source`, or an error listing the known sources.
pub fn mapping_named(mappings: &[Arc<Mapping>], source: &str) -> Result<Arc<Mapping>> {
    match mappings.iter().find(|m| m.spec.source == source) {
        Some(m) => Ok(m.clone()),
        None => bail!(
            "no mapping for source `{source}`; known: {}",
            known_sources(mappings)
        ),
    }
}

/// The sources of `mappings`, for messages: `crm, erp, shop`.
pub fn known_sources(mappings: &[Arc<Mapping>]) -> String {
    mappings
        .iter()
        .map(|m| m.spec.source.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Loads and checks every mapping; any problem is an error listing all of them.
pub fn load_mappings(dir: &Path) -> Result<Vec<Arc<Mapping>>> {
    let mappings = quarry_core::files::load_mappings(dir).map_err(|d| {
        let list: Vec<String> = d.iter().map(ToString::to_string).collect();
        anyhow::anyhow!(
            "the mappings have problems (run `quarry check {}`):\n{}",
            dir.display(),
            list.join("\n")
        )
    })?;
    Ok(mappings.into_iter().map(Arc::new).collect())
}

/// The company rules of the mappings folder (`companies.yaml`), checked; the
/// shipped rules when the folder has none.
pub fn load_company_rules(dir: &Path) -> Result<quarry_core::companies::CompanyRules> {
    match quarry_core::files::load_company_rules(dir) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => quarry_db::companies::builtin_rules(),
        Err(d) => {
            let list: Vec<String> = d.iter().map(ToString::to_string).collect();
            anyhow::bail!(
                "the company rules have problems (run `quarry check {}`):\n{}",
                dir.display(),
                list.join("\n")
            )
        }
    }
}

/// Registers the folder's company rules when it has them; different rules than
/// the registered ones recompute every link and company first.
pub async fn register_company_rules(
    client: &mut quarry_db::Client,
    dir: &Path,
    quiet: bool,
) -> Result<()> {
    if !dir.join(quarry_core::companies::FILE_NAME).exists() {
        return Ok(());
    }
    let rules = load_company_rules(dir)?;
    let r = quarry_db::companies::register(client, &rules, false).await?;
    if r.changed && !quiet {
        println!(
            "company rules {} registered: links and companies recomputed ({} link(s), {} companies)",
            rules.version, r.links, r.companies
        );
    }
    Ok(())
}

/// Where raw copies of ingested files are kept (`keep_raw_files` of the
/// configuration named by QUARRY_CONFIG, else the defaults and environment).
pub fn raw_dir() -> Result<Option<PathBuf>> {
    let file = std::env::var_os("QUARRY_CONFIG").map(PathBuf::from);
    let cfg = quarry_api::Config::load(file.as_deref())?;
    Ok(cfg.keep_raw_files.then(|| cfg.data_dir.join("raw")))
}

/// How many sources `quarry ingest` loads at a time by default: one per core.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A file of the run, with what the run knows of it beforehand.
struct Planned {
    /// Its place in the run (key order), so reports come out in that order.
    idx: usize,
    job: Job,
    size: u64,
    mapping: Arc<Mapping>,
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    database_url: &str,
    mappings_dir: &Path,
    paths: &[PathBuf],
    source: Option<&str>,
    json: bool,
    claim_wait: std::time::Duration,
    jobs_at_once: usize,
) -> Result<ExitCode> {
    let raw_dir = raw_dir()?;
    let mappings = load_mappings(mappings_dir)?;
    if let Some(s) = source {
        mapping_named(&mappings, s)?;
    }
    let (jobs, skipped_keys) = collect(paths, &mappings)?;
    let mut reports = Vec::new();
    for k in &skipped_keys {
        if !json {
            println!("  skipped  {k}  (no mapping claims this key)");
        }
        // In --json too: every file asked about has a report.
        reports.push(FileReport::skipped(k, "no mapping claims this key"));
    }
    let writer_url = quarry_db::writer_url(database_url)?;
    let mut client = quarry_db::connect(&writer_url)
        .await
        .context("connecting as the writer role (run `quarry migrate` first)")?;
    register_company_rules(&mut client, mappings_dir, json).await?;
    let sizes: Vec<u64> = jobs
        .iter()
        .map(|j| std::fs::metadata(&j.path).map(|m| m.len()).unwrap_or(0))
        .collect();
    let overall = crate::progress::Overall::start(jobs.len(), sizes.iter().sum(), json);
    // One worker per source keeps each source's files in delivery (key) order
    // (without timestamps the later delivery wins); sources load in parallel,
    // each file leaving its companies queued for one resolution at the end.
    let mut by_source: Vec<(String, Vec<Planned>)> = Vec::new();
    let mut numbered: Vec<(usize, FileReport)> = Vec::new();
    for (idx, (job, size)) in jobs.into_iter().zip(sizes).enumerate() {
        let mapping = match source {
            Some(s) => mappings.iter().find(|m| m.spec.source == s).cloned(),
            None => mappings.iter().find(|m| m.matches_key(&job.key)).cloned(),
        };
        let Some(mapping) = mapping else {
            let mut r = skipped(&job.key);
            r.error = Some(format!("no mapping claims the key `{}`; lay files out like the bucket (crm-data/, erp-data/, shop-data/) or pass --source", job.key));
            if let Some(o) = &overall {
                o.file_done(idx, size, 0);
            }
            numbered.push((idx, r));
            continue;
        };
        let name = mapping.spec.source.clone();
        let planned = Planned {
            idx,
            job,
            size,
            mapping,
        };
        match by_source.iter_mut().find(|(s, _)| *s == name) {
            Some((_, files)) => files.push(planned),
            None => by_source.push((name, vec![planned])),
        }
    }
    let permits = Arc::new(tokio::sync::Semaphore::new(jobs_at_once.max(1)));
    let mut workers = tokio::task::JoinSet::new();
    for (_, files) in by_source {
        let permits = permits.clone();
        let overall = overall.clone();
        let raw_dir = raw_dir.clone();
        let writer_url = writer_url.clone();
        workers.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let mut client = quarry_db::connect(&writer_url)
                .await
                .context("connecting as the writer role")?;
            let mut done = Vec::new();
            for p in files {
                let report =
                    load_one(&mut client, &p, &overall, &raw_dir, claim_wait, json).await?;
                done.push((p.idx, report));
            }
            anyhow::Ok(done)
        });
    }
    let mut failure = None;
    while let Some(joined) = workers.join_next().await {
        match joined.context("an ingest worker failed") {
            Ok(Ok(done)) => numbered.extend(done),
            Ok(Err(e)) | Err(e) => {
                // The database is unusable: stop the other sources too (their
                // open transactions roll back with their connections).
                workers.abort_all();
                failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failure {
        if let Some(o) = &overall {
            o.finish();
        }
        return Err(e.context(
            "the run stopped; files it loaded before keep their companies queued: \
             run `quarry companies resolve` (or the next `quarry ingest`) once the database is back",
        ));
    }
    numbered.sort_by_key(|(idx, _)| *idx);
    reports.extend(numbered.into_iter().map(|(_, r)| r));
    // The companies of everything loaded (and of whatever an earlier run that
    // stopped left queued), in one pass once every file is in: resolving
    // beside the loads was slower (a load touching an organization being
    // resolved waits for the whole pass, and the two share the cores).
    let started = std::time::Instant::now();
    let resolved = quarry_db::companies::resolve_queue(&mut client)
        .await
        .context("the files are loaded, but their companies are not resolved yet; run `quarry companies resolve` (the next `quarry ingest` does it too)")?;
    let resolve_ms = started.elapsed().as_millis() as u64;
    if resolved.organizations > 0 {
        tracing::info!(
            organizations = resolved.organizations,
            elapsed_ms = resolve_ms,
            "companies resolved"
        );
        if !json {
            let line = format!(
                "companies: links and companies of {} organization(s) recomputed ({resolve_ms} ms)",
                resolved.organizations
            );
            match &overall {
                Some(o) => o.suspend(|| println!("{line}")),
                None => println!("{line}"),
            }
        }
    }
    if let Some(o) = &overall {
        o.finish();
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    let failed = reports
        .iter()
        .filter(|r| r.status == FileStatus::Failed)
        .count();
    // A file still claimed by another run after the wait was not loaded by this
    // one: the run does not succeed.
    let waiting = reports
        .iter()
        .filter(|r| r.status == FileStatus::InProgress)
        .count();
    if !json {
        let loaded = reports
            .iter()
            .filter(|r| r.status == FileStatus::Loaded)
            .count();
        let dup = reports
            .iter()
            .filter(|r| r.status == FileStatus::Duplicate)
            .count();
        let skipped = reports
            .iter()
            .filter(|r| r.status == FileStatus::Skipped)
            .count();
        println!(
            "{} file(s): {loaded} loaded, {dup} duplicate, {failed} failed, {skipped} skipped",
            reports.len()
        );
        if waiting > 0 {
            println!(
                "{waiting} file(s) NOT loaded: another run still held them after waiting {} s; run again once it has finished (or raise --claim-wait)",
                claim_wait.as_secs()
            );
        }
    }
    Ok(if failed > 0 || waiting > 0 {
        ExitCode::from(crate::EXIT_PARTIAL)
    } else {
        ExitCode::SUCCESS
    })
}

/// Loads one file of the run (its companies queued), reporting progress and
/// printing its report as it finishes.
async fn load_one(
    client: &mut quarry_db::Client,
    p: &Planned,
    overall: &Option<Arc<crate::progress::Overall>>,
    raw_dir: &Option<PathBuf>,
    claim_wait: std::time::Duration,
    json: bool,
) -> Result<FileReport> {
    let (idx, size) = (p.idx, p.size);
    let path = p.job.path.clone();
    let counted = overall.clone();
    let open: Opener = Arc::new(move || {
        let file = std::fs::File::open(&path)?;
        Ok(match &counted {
            Some(o) => Box::new(crate::progress::Counting::new(file, o.clone(), idx))
                as Box<dyn std::io::Read + Send>,
            None => Box::new(file) as Box<dyn std::io::Read + Send>,
        })
    });
    let bar = overall.as_ref().map(|o| o.file_bar(&p.job.key));
    let progress = match (&bar, overall) {
        (Some(b), Some(o)) => {
            let (b, o) = (b.clone(), o.clone());
            Some(Arc::new(move |n: u64| {
                b.set_position(n);
                o.records(idx, n);
            }) as quarry_db::ingest::Progress)
        }
        _ => None,
    };
    let opts = IngestOptions {
        progress,
        raw_dir: raw_dir.clone(),
        claim_wait: Some(claim_wait),
        defer_companies: true,
        ..IngestOptions::default()
    };
    let report = ingest_with(client, p.mapping.clone(), &p.job.key, open, opts).await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    match overall {
        Some(o) => {
            o.file_done(idx, size, report.records_read);
            if !json {
                o.suspend(|| print_report(&report));
            }
        }
        None if !json => print_report(&report),
        None => {}
    }
    Ok(report)
}

fn skipped(key: &str) -> FileReport {
    FileReport::failed(key, "")
}

fn print_report(r: &FileReport) {
    let status = match r.status {
        FileStatus::Loaded => "loaded",
        FileStatus::Failed => "FAILED",
        FileStatus::Duplicate => "duplicate",
        FileStatus::InProgress => "in progress elsewhere",
        FileStatus::Skipped => "skipped",
        FileStatus::HandedOff => "handed off",
    };
    let counted = |m: &std::collections::BTreeMap<String, u64>| {
        let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
        format!("{} ({})", m.values().sum::<u64>(), parts.join(", "))
    };
    let q = if r.quarantined.is_empty() {
        "0".to_string()
    } else {
        counted(&r.quarantined)
    };
    println!(
        "{status:>9}  {}  [{}] read {}, inserted {}, updated {}, unchanged {}, stale {}, quarantined {q}  ({} ms)",
        r.key, r.source, r.records_read, r.inserted, r.updated, r.unchanged, r.stale, r.elapsed_ms
    );
    if !r.skipped.is_empty() {
        println!("           skipped {}", counted(&r.skipped));
    }
    if !r.warnings.is_empty() {
        println!(
            "           kept in attributes (column could not hold the value) {}; see `quarry quarantine warnings`",
            counted(&r.warnings)
        );
    }
    if r.children_not_delivered > 0 {
        println!(
            "           {} record(s) without their nested rows (not expanded in the export); stored nested rows kept",
            r.children_not_delivered
        );
    }
    if let Some(e) = &r.error {
        println!("           error: {e}");
    }
}

/// `quarry watch`: ingests what lands in an inbox folder laid out like the bucket.
/// Where and how `watch` works.
pub struct Watch {
    pub inbox: PathBuf,
    /// Loaded and duplicate files go here.
    pub done: PathBuf,
    /// Failed files go here, each with `<name>.error.txt`.
    pub failed: PathBuf,
    /// Pause between scans.
    pub interval: std::time::Duration,
    /// Scan once and return.
    pub once: bool,
    /// Failed files are also published as system error events.
    pub notifier: Option<Arc<dyn quarry_core::ports::Notifier>>,
    /// Print a report per file on stdout (the `watch` command); inside `serve`
    /// reports go to the log only, so a closed stdout cannot stop the watcher.
    pub print: bool,
    /// Keep raw copies of ingested files here (for `quarry backfill`).
    pub raw_dir: Option<PathBuf>,
}

/// After its ingest commits, a file moves to `DONE/` (loaded or duplicate) or
/// `FAILED/` (with `<name>.error.txt` beside it), keeping its key path. A restart
/// in between is safe: the file is still in the inbox, and the ledger makes its
/// second ingest a duplicate, after which it moves.
pub async fn watch(database_url: &str, mappings_dir: &Path, w: &Watch) -> Result<ExitCode> {
    let Watch {
        inbox,
        done,
        failed,
        interval,
        once,
        notifier,
        print,
        raw_dir,
    } = w;
    let (inbox, done, failed, interval, once) = (
        inbox.as_path(),
        done.as_path(),
        failed.as_path(),
        *interval,
        *once,
    );
    let mappings = load_mappings(mappings_dir)?;
    let mut client = quarry_db::connect(&quarry_db::writer_url(database_url)?).await?;
    tracing::info!(inbox = %inbox.display(), "watching for files");
    loop {
        let (jobs, _) = collect(&[inbox.to_path_buf()], &mappings)?;
        for job in jobs {
            // Skip files still being written: size must be stable across a short pause.
            let size = std::fs::metadata(&job.path).map(|m| m.len()).unwrap_or(0);
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            if std::fs::metadata(&job.path)
                .map(|m| m.len())
                .unwrap_or(u64::MAX)
                != size
            {
                continue;
            }
            let Some(mapping) = mappings.iter().find(|m| m.matches_key(&job.key)).cloned() else {
                continue;
            };
            let path = job.path.clone();
            let open: Opener = Arc::new(move || {
                Ok(Box::new(std::fs::File::open(&path)?) as Box<dyn std::io::Read + Send>)
            });
            let opts = IngestOptions {
                raw_dir: raw_dir.clone(),
                ..IngestOptions::default()
            };
            let report = ingest_with(&mut client, mapping, &job.key, open, opts).await?;
            if *print {
                print_report(&report);
            } else {
                tracing::info!(key = %job.key, status = ?report.status, error = report.error.as_deref().unwrap_or(""), "inbox file processed");
            }
            let target_root = if report.status == FileStatus::Failed {
                failed
            } else {
                done
            };
            let rel = job.path.strip_prefix(inbox).unwrap_or(&job.path);
            let target = target_root.join(rel);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            if let (Some(err), Some(n)) = (&report.error, &notifier) {
                let ev = quarry_core::jobs::Event::system_error(
                    uuid::Uuid::new_v4().to_string(),
                    "ingest",
                    &format!("file {} failed to load: {err}", job.key),
                    chrono::Utc::now(),
                );
                if let Err(e) = n.publish(&ev).await {
                    tracing::warn!(error = %e, "could not publish the ingest failure");
                }
            }
            if let Some(err) = &report.error {
                let mut note = target.clone().into_os_string();
                note.push(".error.txt");
                std::fs::write(PathBuf::from(note), err).context("writing the error note")?;
            }
            if report.status != FileStatus::InProgress {
                std::fs::rename(&job.path, &target).with_context(|| {
                    format!("moving {} to {}", job.path.display(), target.display())
                })?;
            }
        }
        if once {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(interval).await;
    }
}

/// `quarry backfill --source S [--since DATE]`: the current mapping applied again
/// to the source's delivered files, read from their raw copies.
pub async fn backfill(
    database_url: &str,
    mappings_dir: &Path,
    source: &str,
    since: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let mappings = load_mappings(mappings_dir)?;
    let mapping = mapping_named(&mappings, source)?;
    let since = match since {
        None => None,
        Some(s) => Some(
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|d| d.with_timezone(&chrono::Utc))
                .or_else(|_| {
                    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                        .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
                })
                .with_context(|| {
                    format!("--since {s:?} is not a date (YYYY-MM-DD) or an RFC 3339 time")
                })?,
        ),
    };
    let Some(raw_dir) = raw_dir()? else {
        bail!("keep_raw_files is off, so no raw copies were kept to apply the mapping to; turn it on (it is on by default) for files delivered from now on");
    };
    let raw = quarry_db::backfill::RawFolder {
        dir: raw_dir,
        source: source.to_string(),
    };
    let mut client = quarry_db::connect(&quarry_db::writer_url(database_url)?)
        .await
        .context("connecting as the writer role (run `quarry migrate` first)")?;
    if !json {
        println!(
            "applying {source} mapping {} to the files already delivered",
            mapping.spec.version
        );
    }
    let mut print = |f: &quarry_db::backfill::BackfillFile| {
        if json {
            return;
        }
        use quarry_db::backfill::BackfillOutcome as O;
        match &f.outcome {
            O::AlreadyApplied => {
                println!("  current  {}  (already applied with this version)", f.key)
            }
            O::RawMissing { looked_at } => {
                println!("  MISSING  {}  no raw copy at {looked_at}", f.key)
            }
            O::Applied { report } => print_report(report),
        }
    };
    let report =
        quarry_db::backfill::backfill(&mut client, mapping, since, &raw, &mut print).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} file(s): {} row(s) changed (one new version each, the old one in history), {} added, {} already current, {} without a raw copy, {} failed",
            report.files.len(),
            report.rows_changed,
            report.rows_added,
            report.already_applied,
            report.raw_missing,
            report.failed
        );
    }
    Ok(if report.raw_missing + report.failed > 0 {
        ExitCode::from(crate::EXIT_PARTIAL)
    } else {
        ExitCode::SUCCESS
    })
}
