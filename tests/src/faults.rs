//! The fault harness: seeded schedules of unlucky loads, each compared with one
//! clean load of the same files.
//!
//! A schedule takes the corpus in a shuffled order, spreads it over one to three
//! concurrent workers (a file may go to two workers at once, or be delivered twice
//! by one), runs each file as its own `quarry ingest` process, and meanwhile
//! SIGKILLs some of those processes, terminates the loaders' database sessions
//! (`pg_terminate_backend`) and restarts the whole PostgreSQL cluster (a private
//! one, started here, stopped in immediate mode: a crash). Then it completes the
//! load (`quarry ingest` of everything, as an operator would) and compares the
//! whole canonical state with the clean load: rows with their versions, history,
//! links, quarantine, field warnings and the ledger, by natural keys. A run that
//! exited 0 must have loaded every file it was given.
//!
//! What is compared leaves out what records *when* or *in which order* something
//! happened rather than *what*: surrogate ids (references are compared as the
//! natural keys they point at), `created_at`/`updated_at`/`valid_from`/`valid_to`,
//! which file wrote a row, a history snapshot's resolved reference ids, and the
//! ledger's per-delivery counts (inserted, updated, unchanged, stale: what a
//! delivery changed depends on what came before it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// What a harness run is asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    pub schedules: u64,
    pub seed: u64,
    /// The `quarry` binary.
    pub quarry: PathBuf,
    /// Working directory of `quarry` (the repository: mappings are found there).
    pub repo: PathBuf,
    /// Files, or folders of files, to load.
    pub corpus: Vec<PathBuf>,
    /// Print every schedule, not only the bad ones.
    pub verbose: bool,
}

/// What a harness run found.
#[derive(Debug, Default)]
pub struct Summary {
    pub schedules: u64,
    pub kills: u64,
    pub terminations: u64,
    pub restarts: u64,
    pub concurrent_same_file: u64,
    pub duplicate_deliveries: u64,
    /// Rows (of any kind compared) in the clean load but not after the schedule.
    pub lost: u64,
    /// Rows after the schedule that the clean load does not have, or has fewer of.
    pub duplicated: u64,
    /// Rows present in both whose content differs.
    pub differing: u64,
    /// Schedules whose load could not be completed.
    pub incomplete: u64,
    /// Runs that exited 0 although a file they were given was not loaded.
    pub false_successes: u64,
    /// Differences in rows whose mapping declares no version field (last
    /// delivery wins there, by declaration): reported, not failures.
    pub unversioned: u64,
    pub failures: Vec<String>,
}

impl Summary {
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.differing == 0
            && self.incomplete == 0
            && self.false_successes == 0
    }

    pub fn line(&self) -> String {
        format!(
            "{} schedules ({} kills, {} terminated sessions, {} cluster restarts, {} concurrent loads of one file, {} duplicate deliveries): {} rows lost, {} duplicated, {} differing, {} incomplete loads, {} false successes ({} differences in rows without a version field, where the last delivery wins by declaration)",
            self.schedules, self.kills, self.terminations, self.restarts, self.concurrent_same_file,
            self.duplicate_deliveries, self.lost, self.duplicated, self.differing, self.incomplete,
            self.false_successes, self.unversioned
        )
    }
}

/// The server binaries of the newest PostgreSQL installed.
fn pg_bin(name: &str) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL server binaries are expected under /usr/lib/postgresql")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found
        .pop()
        .with_context(|| format!("{name} not found under /usr/lib/postgresql"))
}

fn is_root() -> bool {
    std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0"))
            .unwrap_or(false)
}

/// A private PostgreSQL cluster (initdb, trust on loopback), restartable.
pub struct Cluster {
    dir: PathBuf,
    pub port: u16,
    root: bool,
}

impl Cluster {
    fn command(&self, bin: &str) -> Result<Command> {
        let path = pg_bin(bin)?;
        Ok(if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        })
    }

    fn run(&self, bin: &str, args: &[&str]) -> Result<()> {
        let out = self
            .command(bin)?
            .args(args)
            .stdout(Stdio::null())
            .output()
            .with_context(|| format!("running {bin}"))?;
        if !out.status.success() {
            bail!(
                "{bin} {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    pub fn start_new() -> Result<Cluster> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir =
            std::env::temp_dir().join(format!("quarry-faults-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let root = is_root();
        let cluster = Cluster { dir, port, root };
        if root {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&cluster.dir)
                .status()?;
            if !st.success() {
                bail!(
                    "could not hand {} to the postgres user",
                    cluster.dir.display()
                );
            }
        }
        let data = cluster.data();
        cluster.run(
            "initdb",
            &["-A", "trust", "-U", "postgres", "--no-sync", "-D", &data],
        )?;
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\nmax_connections = 200\n",
            cluster.dir.display()
        );
        let pc = Path::new(&data).join("postgresql.conf");
        let mut text = std::fs::read_to_string(&pc)?;
        text.push_str(&conf);
        std::fs::write(&pc, text)?;
        cluster.start()?;
        Ok(cluster)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn start(&self) -> Result<()> {
        let log = self.dir.join("log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-l", &log, "-w", "-t", "60", "start"],
        )
    }

    /// Stops the cluster the way a crash would (no checkpoint) and starts it again.
    pub fn crash_restart(&self) -> Result<()> {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        )?;
        self.start()
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match quarry_db::connect(url).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).context("connecting to the private cluster"),
        }
    }
}

/// The corpus as a list of files (folders walked; notes such as SOURCES.md left out).
pub fn corpus_files(corpus: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = corpus.to_vec();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).with_context(|| format!("reading {}", p.display()))? {
                stack.push(e?.path());
            }
        } else if p.extension().is_none_or(|e| e != "md") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// One `quarry ingest` run: exit code and the per-file reports it printed.
struct RunOutcome {
    code: Option<i32>,
    reports: Vec<Value>,
}

fn ingest_cmd(opts: &Options, url: &str, files: &[PathBuf]) -> Command {
    let mut c = Command::new(&opts.quarry);
    c.args(["ingest", "--json", "--claim-wait", "60"])
        .args(files)
        .current_dir(&opts.repo)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    c
}

fn parse_reports(stdout: &[u8]) -> Vec<Value> {
    serde_json::from_slice::<Value>(stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// A clean, sequential load of everything: the reference state.
async fn clean_load(opts: &Options, url: &str, files: &[PathBuf]) -> Result<RunOutcome> {
    let out = ingest_cmd(opts, url, files)
        .output()
        .context("running quarry ingest")?;
    Ok(RunOutcome {
        code: out.status.code(),
        reports: parse_reports(&out.stdout),
    })
}

/// The canonical state by natural keys: (what, key) -> content, with a count so
/// duplicates show.
pub type State = BTreeMap<(String, String), (u64, String)>;

const ROW_TABLES: &[(&str, &[(&str, &str)])] = &[
    ("organizations", &[]),
    ("people", &[("organization_id", "organizations")]),
    ("products", &[]),
    ("orders", &[("organization_id", "organizations")]),
    ("opportunities", &[("organization_id", "organizations")]),
    (
        "order_lines",
        &[("order_id", "orders"), ("product_id", "products")],
    ),
];

async fn collect(
    c: &tokio_postgres::Client,
    state: &mut State,
    what: &str,
    sql: &str,
) -> Result<()> {
    for r in c
        .query(sql, &[])
        .await
        .with_context(|| format!("reading {what}"))?
    {
        let key: String = r.get(0);
        let content: String = r.get(1);
        let e = state
            .entry((what.to_string(), key))
            .or_insert((0, String::new()));
        e.0 += 1;
        e.1 = content;
    }
    Ok(())
}

/// Reads the whole canonical state of a database.
pub async fn snapshot(url: &str) -> Result<State> {
    let c = connect(url).await?;
    c.batch_execute("SET TimeZone = 'UTC'").await?;
    let mut state = State::new();
    for (table, refs) in ROW_TABLES {
        let mut strip = vec!["id", "created_at", "updated_at", "ingest_file_id"];
        let mut add = String::new();
        for (col, target) in refs.iter() {
            strip.push(col);
            add.push_str(&format!(
                " || jsonb_build_object('{col}', (SELECT r.source_system || ':' || r.source_id FROM canonical.{target} r WHERE r.id = t.{col}))"
            ));
        }
        let strip = strip
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ");
        collect(
            &c,
            &mut state,
            table,
            &format!(
                "SELECT t.source_system || ':' || t.source_id, ((to_jsonb(t) - ARRAY[{strip}]){add})::text FROM canonical.{table} t"
            ),
        )
        .await?;
    }
    collect(
        &c,
        &mut state,
        "history",
        "SELECT entity || ':' || source_system || ':' || source_id || ':v' || version,
                jsonb_build_object('row', canonical.version_content(row_data), 'version', row_data->'version',
                                   'source_updated_at', source_updated_at)::text
         FROM canonical.entity_history",
    )
    .await?;
    collect(
        &c,
        &mut state,
        "links",
        "SELECT l.method || ':' || least(a.k, b.k) || '~' || greatest(a.k, b.k),
                jsonb_build_object('score', l.score, 'evidence', l.evidence)::text
         FROM canonical.entity_links l
         JOIN LATERAL (SELECT source_system || ':' || source_id AS k FROM canonical.organizations WHERE id = l.left_id) a ON true
         JOIN LATERAL (SELECT source_system || ':' || source_id AS k FROM canonical.organizations WHERE id = l.right_id) b ON true",
    )
    .await?;
    collect(
        &c,
        &mut state,
        "quarantine",
        "SELECT source_system || ':' || object_key || ':' || position || ':' || reason_code,
                jsonb_build_object('record_type', record_type, 'message', message, 'resolved', resolved_at IS NOT NULL,
                                   'mapping_version', mapping_version)::text
         FROM quarry.quarantine",
    )
    .await?;
    collect(
        &c,
        &mut state,
        "warnings",
        "SELECT source_system || ':' || object_key || ':' || position || ':' || entity || ':' || column_name,
                jsonb_build_object('source_id', source_id, 'reason', reason_code, 'message', message)::text
         FROM quarry.ingest_warnings",
    )
    .await?;
    collect(
        &c,
        &mut state,
        "ledger",
        "SELECT source_system || ':' || object_key || ':' || content_sha256 || ':' || mapping_version,
                jsonb_build_object('status', status, 'records_read', records_read, 'quarantined', quarantined,
                                   'skipped', skipped, 'warnings', warnings,
                                   'children_not_delivered', children_not_delivered)::text
         FROM quarry.ingest_files",
    )
    .await?;
    Ok(state)
}

/// The (source system, table) pairs whose mapping declares a version field:
/// only their versions and history are a function of the files alone. Rows
/// without one (SAP and Stripe records, Shopify products seen in line items, any
/// order's lines) take the last delivery, and their counters count deliveries.
pub type Versioned = std::collections::BTreeSet<(String, String)>;

pub fn versioned(mappings: &[quarry_core::ingest::mapping::Mapping]) -> Versioned {
    let mut out = Versioned::new();
    for m in mappings {
        for e in m.entities() {
            if m.version_column(e).is_some() {
                out.insert((m.spec.source.clone(), e.table().to_string()));
            }
        }
    }
    out
}

/// Whether a difference in this row is what its mapping declares (no version
/// field: last delivery wins) rather than a defect. Lost or extra current rows
/// are never excused.
fn unversioned(
    versioned: &Versioned,
    what: &str,
    key: &str,
    whole_row: bool,
    content: &str,
) -> bool {
    // A version without a source timestamp: its place is its delivery.
    if let Ok(v) = serde_json::from_str::<Value>(content) {
        if v.get("source_updated_at") == Some(&Value::Null) {
            return !whole_row || what == "history";
        }
    }
    let (table, rest) = if what == "history" {
        match key.split_once(':') {
            Some((t, r)) => (t, r),
            None => return false,
        }
    } else if ROW_TABLES.iter().any(|(t, _)| *t == what) {
        if whole_row {
            return false;
        }
        (what, key)
    } else {
        return false;
    };
    let source = rest.split(':').next().unwrap_or("");
    !versioned.contains(&(source.to_string(), table.to_string()))
}

/// What a comparison found.
#[derive(Default)]
pub struct Differences {
    pub lost: u64,
    pub duplicated: u64,
    pub differing: u64,
    /// Differences in rows whose mapping declares no version field.
    pub unversioned: u64,
    pub examples: Vec<String>,
}

/// Lost, duplicated and differing rows of `got` against `want`, with examples.
pub fn compare(want: &State, got: &State, versioned: &Versioned) -> Differences {
    let mut d = Differences::default();
    let note = |d: &mut Differences, s: String| {
        if d.examples.len() < 8 {
            d.examples.push(s);
        }
    };
    for (k, (n, content)) in want {
        match got.get(k) {
            None => {
                if unversioned(versioned, &k.0, &k.1, true, content) {
                    d.unversioned += n;
                } else {
                    d.lost += n;
                    note(&mut d, format!("lost {} {}", k.0, k.1));
                }
            }
            Some((m, other)) => {
                if m > n {
                    d.duplicated += m - n;
                    note(&mut d, format!("{} extra copies of {} {}", m - n, k.0, k.1));
                } else if m < n {
                    d.lost += n - m;
                    note(
                        &mut d,
                        format!("{} copies missing of {} {}", n - m, k.0, k.1),
                    );
                }
                if other != content {
                    if unversioned(versioned, &k.0, &k.1, false, content) {
                        d.unversioned += 1;
                    } else {
                        d.differing += 1;
                        note(
                            &mut d,
                            format!(
                                "differs: {} {}\n      clean: {content}\n      got:   {other}",
                                k.0, k.1
                            ),
                        );
                    }
                }
            }
        }
    }
    for (k, (m, content)) in got {
        if !want.contains_key(k) {
            if unversioned(versioned, &k.0, &k.1, true, content) {
                d.unversioned += m;
            } else {
                d.duplicated += m;
                note(&mut d, format!("not in the clean load: {} {}", k.0, k.1));
            }
        }
    }
    d
}

/// Runs the harness on a private cluster.
pub async fn run(opts: &Options) -> Result<Summary> {
    let files = corpus_files(&opts.corpus)?;
    let mappings = quarry_core::files::load_mappings(&opts.repo.join("mappings")).map_err(|d| {
        anyhow::anyhow!(
            "the mappings do not load: {}",
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    let versioned = versioned(&mappings);
    if files.is_empty() {
        bail!("the corpus is empty");
    }
    let cluster = Arc::new(Cluster::start_new()?);
    let admin = connect(&cluster.url("postgres")).await?;
    admin
        .batch_execute("CREATE DATABASE quarry_faults_template")
        .await?;
    let migrate = Command::new(&opts.quarry)
        .arg("migrate")
        .current_dir(&opts.repo)
        .env("DATABASE_URL", cluster.url("quarry_faults_template"))
        .output()?;
    if !migrate.status.success() {
        bail!(
            "quarry migrate failed: {}",
            String::from_utf8_lossy(&migrate.stderr)
        );
    }
    admin
        .batch_execute("CREATE DATABASE quarry_faults_clean TEMPLATE quarry_faults_template")
        .await?;
    let clean = clean_load(opts, &cluster.url("quarry_faults_clean"), &files).await?;
    let failing: std::collections::BTreeSet<String> = clean
        .reports
        .iter()
        .filter(|r| r["status"] == "failed")
        .filter_map(|r| r["key"].as_str().map(str::to_string))
        .collect();
    if clean.reports.len() != files.len() {
        bail!(
            "the clean load reported {} of {} files (exit {:?})",
            clean.reports.len(),
            files.len(),
            clean.code
        );
    }
    let want = snapshot(&cluster.url("quarry_faults_clean")).await?;
    println!(
        "clean load: {} files ({} failing as expected), {} rows compared",
        files.len(),
        failing.len(),
        want.len()
    );
    let mut summary = Summary::default();
    for i in 0..opts.schedules {
        let seed = opts.seed.wrapping_add(i);
        let db = format!("quarry_faults_{i}");
        let admin = connect(&cluster.url("postgres")).await?;
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {db} TEMPLATE quarry_faults_template"
            ))
            .await?;
        let url = cluster.url(&db);
        let outcome = schedule(
            opts,
            &cluster,
            &url,
            &db,
            &files,
            &failing,
            seed,
            &mut summary,
        )
        .await?;
        let got = snapshot(&url).await?;
        let d = compare(&want, &got, &versioned);
        let (lost, dup, diff, mut examples) = (d.lost, d.duplicated, d.differing, d.examples);
        summary.schedules += 1;
        summary.lost += lost;
        summary.duplicated += dup;
        summary.differing += diff;
        summary.unversioned += d.unversioned;
        if !outcome.completed {
            summary.incomplete += 1;
            examples.push("the load could not be completed".to_string());
        }
        summary.false_successes += outcome.false_successes;
        examples.extend(outcome.notes.iter().cloned());
        let bad = lost + dup + diff > 0 || !outcome.completed || outcome.false_successes > 0;
        if bad || opts.verbose {
            println!(
                "schedule {i} (seed {seed}): {} | lost {lost}, duplicated {dup}, differing {diff}",
                outcome.plan
            );
            for e in &examples {
                println!("    {e}");
            }
        }
        if bad {
            summary.failures.push(format!("schedule {i} (seed {seed})"));
        } else {
            let admin = connect(&cluster.url("postgres")).await?;
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .await?;
        }
        if (i + 1) % 50 == 0 {
            println!("... {} schedules: {}", i + 1, summary.line());
        }
    }
    Ok(summary)
}

struct ScheduleOutcome {
    plan: String,
    completed: bool,
    false_successes: u64,
    notes: Vec<String>,
}

/// One worker's deliveries, in order.
type Deliveries = Vec<PathBuf>;

/// A delivery and its faults: SIGKILL after ms, terminate the sessions after ms.
type Delivery = (PathBuf, Option<u64>, Option<u64>);

#[allow(clippy::too_many_arguments)]
async fn schedule(
    opts: &Options,
    cluster: &Arc<Cluster>,
    url: &str,
    db: &str,
    files: &[PathBuf],
    failing: &std::collections::BTreeSet<String>,
    seed: u64,
    summary: &mut Summary,
) -> Result<ScheduleOutcome> {
    let mut rng = StdRng::seed_from_u64(seed);
    let workers = rng.gen_range(1..=3usize);
    let mut lists: Vec<Deliveries> = vec![Vec::new(); workers];
    let mut order = files.to_vec();
    order.shuffle(&mut rng);
    for f in &order {
        let w = rng.gen_range(0..workers);
        lists[w].push(f.clone());
        if workers > 1 && rng.gen_bool(0.15) {
            let other = (w + rng.gen_range(1..workers)) % workers;
            lists[other].push(f.clone());
            summary.concurrent_same_file += 1;
        }
        if rng.gen_bool(0.1) {
            let at = rng.gen_range(0..=lists[w].len());
            lists[w].insert(at, f.clone());
            summary.duplicate_deliveries += 1;
        }
    }
    for l in &mut lists {
        l.shuffle(&mut rng);
    }
    // Faults for each delivery: (kill after ms, terminate sessions after ms).
    let mut plans: Vec<Vec<Delivery>> = Vec::new();
    let (mut kills, mut terms) = (0, 0);
    for l in &lists {
        plans.push(
            l.iter()
                .map(|f| {
                    let kill = rng.gen_bool(0.12).then(|| rng.gen_range(0..250));
                    let term = rng.gen_bool(0.08).then(|| rng.gen_range(0..250));
                    kills += kill.is_some() as u64;
                    terms += term.is_some() as u64;
                    (f.clone(), kill, term)
                })
                .collect(),
        );
    }
    let restart_at = rng.gen_bool(0.2).then(|| rng.gen_range(0..1500u64));
    summary.kills += kills;
    summary.terminations += terms;
    summary.restarts += restart_at.is_some() as u64;
    let plan = format!(
        "{workers} workers, {} deliveries, {kills} kills, {terms} session terminations{}",
        lists.iter().map(Vec::len).sum::<usize>(),
        restart_at
            .map(|ms| format!(", cluster crash at {ms} ms"))
            .unwrap_or_default()
    );

    let restarter = restart_at.map(|ms| {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            tokio::task::spawn_blocking(move || cluster.crash_restart()).await
        })
    });
    let mut handles = Vec::new();
    for plan in plans {
        let opts = opts.clone();
        let url = url.to_string();
        let admin_url = cluster.url("postgres");
        let db = db.to_string();
        let failing = failing.clone();
        handles.push(tokio::spawn(async move {
            let mut false_successes = 0u64;
            let mut notes = Vec::new();
            for (file, kill, term) in plan {
                let child = ingest_cmd(&opts, &url, std::slice::from_ref(&file)).spawn();
                let Ok(mut child) = child else { continue };
                let pid = child.id();
                if let Some(ms) = term {
                    let admin_url = admin_url.clone();
                    let db = db.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        if let Ok(c) = quarry_db::connect(&admin_url).await {
                            let _ = c
                                .execute(
                                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                                     WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                                    &[&db],
                                )
                                .await;
                        }
                    });
                }
                if let Some(ms) = kill {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        let _ = Command::new("kill")
                            .args(["-KILL", &pid.to_string()])
                            .stderr(Stdio::null())
                            .status();
                    });
                }
                let out = tokio::task::spawn_blocking(move || {
                    let mut stdout = Vec::new();
                    if let Some(mut s) = child.stdout.take() {
                        let _ = std::io::Read::read_to_end(&mut s, &mut stdout);
                    }
                    (child.wait(), stdout)
                })
                .await;
                let Ok((Ok(status), stdout)) = out else { continue };
                if status.code() == Some(0) {
                    // Exit 0: every file it was given is loaded, now.
                    for r in parse_reports(&stdout) {
                        let st = r["status"].as_str().unwrap_or("");
                        let key = r["key"].as_str().unwrap_or("").to_string();
                        if !(st == "loaded" || st == "duplicate") || failing.contains(&key) {
                            false_successes += 1;
                            notes.push(format!("exit 0 but {key} is {st}"));
                        }
                    }
                    // And the ledger agrees (unless the cluster is down right now).
                    if let Ok(c) = quarry_db::connect(&url).await {
                        for r in parse_reports(&stdout) {
                            let key = r["key"].as_str().unwrap_or("").to_string();
                            if let Ok(row) = c
                                .query_opt(
                                    "SELECT status FROM quarry.ingest_files WHERE object_key = $1 ORDER BY id DESC LIMIT 1",
                                    &[&key],
                                )
                                .await
                            {
                                let st: Option<String> = row.map(|r| r.get(0));
                                if st.as_deref() != Some("loaded") {
                                    false_successes += 1;
                                    notes.push(format!("exit 0 but the ledger has {key} as {st:?}"));
                                }
                            }
                        }
                    }
                }
            }
            (false_successes, notes)
        }));
    }
    let mut false_successes = 0;
    let mut notes = Vec::new();
    for h in handles {
        let (f, n) = h.await.context("a worker panicked")?;
        false_successes += f;
        notes.extend(n);
    }
    if let Some(r) = restarter {
        r.await
            .context("the restarter panicked")?
            .context("restart")??;
    }
    // Complete the load as an operator would: run everything again until every
    // file is loaded (or fails as it does in a clean load).
    let mut completed = false;
    for _ in 0..5 {
        let opts = opts.clone();
        let url = url.to_string();
        let all = files.to_vec();
        let out = tokio::task::spawn_blocking(move || ingest_cmd(&opts, &url, &all).output())
            .await
            .context("completion")??;
        let reports = parse_reports(&out.stdout);
        let bad: Vec<&Value> = reports
            .iter()
            .filter(|r| {
                let st = r["status"].as_str().unwrap_or("");
                let key = r["key"].as_str().unwrap_or("");
                !(st == "loaded" || st == "duplicate" || (st == "failed" && failing.contains(key)))
            })
            .collect();
        if reports.len() == files.len() && bad.is_empty() {
            completed = true;
            break;
        }
        notes.push(format!(
            "completion run left {} files not loaded",
            bad.len()
        ));
    }
    Ok(ScheduleOutcome {
        plan,
        completed,
        false_successes,
        notes,
    })
}
