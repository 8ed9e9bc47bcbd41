//! `quarry`: the command line of the Quarry data platform.

mod check;
mod demo;
mod ingest;
mod links;
mod maptest;
mod output;
mod packtest;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use quarry_core::packs::params::InputStyle;

/// Quarry turns JSON exports from business systems into one canonical PostgreSQL
/// model and serves declarative analytics operations ("query packs") over it.
#[derive(Parser, Debug)]
#[command(
    name = "quarry",
    version,
    about = "Quarry: business systems' JSON exports in one canonical PostgreSQL model, and declarative analytics over it",
    long_about = None,
    propagate_version = true,
    after_help = AFTER_HELP
)]
struct Cli {
    /// PostgreSQL URL of the owner role (runs migrations). The analytics role's URL is
    /// derived from it (user quarry_reader) unless QUARRY_READER_URL is set.
    #[arg(long, env = "DATABASE_URL", global = true, default_value = quarry_db::DEFAULT_DATABASE_URL, hide_env_values = true)]
    database_url: String,

    /// Folder holding the query packs (NAME.yaml + NAME.sql).
    #[arg(
        long,
        env = "QUARRY_QUERIES_DIR",
        global = true,
        default_value = "queries"
    )]
    queries: PathBuf,

    /// Folder holding the ingest mappings (SOURCE.yaml).
    #[arg(
        long,
        env = "QUARRY_MAPPINGS_DIR",
        global = true,
        default_value = "mappings"
    )]
    mappings: PathBuf,

    /// Log format on stderr.
    #[arg(long, env = "QUARRY_LOG_FORMAT", global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

/// Exit code of an ingest or backfill that ran but left some files not loaded
/// (documented in `quarry --help`; 1 stays "the command failed").
pub const EXIT_PARTIAL: u8 = 3;

/// Printed after the command list of `quarry --help`.
const AFTER_HELP: &str = "\
Start here: `quarry demo` (demo exports loaded into DATABASE_URL), then `quarry serve`
(the API on http://127.0.0.1:8080, described at /openapi.json), or `quarry operations`
and `quarry query NAME -p KEY=VALUE`.

Exit codes:
  0  success
  1  failure: the command could not do its work, or check/test found problems
  2  usage: unknown command, option or value
  3  partial: ingest or backfill ran, but some files were not loaded (see the report)

Environment: DATABASE_URL (owner role), QUARRY_READER_PASSWORD / QUARRY_READER_URL
(analytics role), QUARRY_WRITER_PASSWORD / QUARRY_WRITER_URL (ingest role), QUARRY_LOG
(log filter, e.g. info), NO_COLOR. Settings: docs/configuration.md.";

#[derive(Subcommand, Debug)]
enum KeysAction {
    /// Create a key and print it (only now; it is stored as a sha256 hash).
    Create {
        /// Who or what the key is for.
        #[arg(long)]
        name: String,
        /// A scope the key has: read (light operations, catalog, metrics), jobs (submit
        /// and read jobs), admin (custom SQL, every job). Repeat for several.
        #[arg(long = "scope", value_parser = ["read", "jobs", "admin"], required = true)]
        scopes: Vec<String>,
        /// Requests per second for this key (default: api.rate_limit_per_second).
        #[arg(long)]
        rate: Option<u32>,
    },
    /// List keys (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id; servers stop accepting it within auth.refresh_seconds.
    Revoke { id: String },
}

#[derive(Subcommand, Debug)]
enum ConfigAction {
    /// Print the effective configuration (defaults, file, environment) as TOML-like JSON.
    Show {
        #[arg(long, env = "QUARRY_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Write the configuration reference (every setting with its default).
    Docs {
        #[arg(long, default_value = "docs/configuration.md")]
        out: PathBuf,
        /// Fail if the file is not up to date instead of writing it.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the roles and apply pending schema migrations. Safe to run repeatedly.
    Migrate,
    /// Validate query packs and mappings; every problem as file:line:column.
    ///
    /// Query packs: schema, template syntax, parameters, identifiers, defaults.
    /// With a database (DATABASE_URL set or --database-url given) each operation is
    /// also rendered with its defaults, prepared and EXPLAINed as the reader role.
    /// Every problem is printed as file:line:column. Exit code 1 on any problem.
    Check {
        /// Files or folders to check (default: the queries folder).
        paths: Vec<PathBuf>,
        /// Never connect to a database, even when DATABASE_URL is set.
        #[arg(long)]
        offline: bool,
        /// Also report every change that breaks callers compared with a base: a
        /// git revision (`origin/main`) or a folder of packs. An operation whose
        /// major version was raised is not compared.
        #[arg(long, value_name = "REV_OR_DIR")]
        against: Option<String>,
        /// With a database: the highest planner cost estimate a `light` operation
        /// may have (its most expensive branch); above it, check says it should be
        /// `heavy`. Estimates follow the data of the database checked against.
        #[arg(long, env = "QUARRY_CHECK_COST_BUDGET", default_value_t = 200_000.0)]
        cost_budget: f64,
        /// With a database: a sequential scan or sort of more estimated rows than
        /// this in a `light` operation's plan is reported.
        #[arg(
            long,
            env = "QUARRY_CHECK_LARGE_TABLE_ROWS",
            default_value_t = 500_000.0
        )]
        large_table_rows: f64,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
    /// Load export files into the canonical model (one transaction per file).
    ///
    /// Folders laid out like the bucket (crm-data/..., erp-data/...,
    /// shop-data/...) or single files. Each file is matched to a source by its key,
    /// validated, mapped and upserted in one transaction; bad records are
    /// quarantined; a file already loaded is a duplicate. Exit code 3 if any file was not loaded.
    Ingest {
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Use this source's mapping for every file instead of matching keys.
        #[arg(long)]
        source: Option<String>,
        /// Print the per-file reports as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Seconds to wait for another run's claim on the same file (a concurrent
        /// load, or a killed run whose database session has not ended yet) before
        /// giving up on that file (exit code 3).
        #[arg(long, default_value_t = 300, value_name = "SECONDS")]
        claim_wait: u64,
        /// How many sources load at a time (each source's files one by one, in
        /// key order); default: one per core. Companies are resolved once at the end.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: Option<u16>,
    },
    /// Serve the REST API (the same router the Lambda runs).
    ///
    /// Health, operations catalog, analytics by name, jobs; migrations are
    /// applied first. Without API keys only a loopback address is allowed.
    Serve {
        /// Address to listen on (port 0 picks a free port; the address is printed).
        /// Default: `listen` of the configuration (127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
        /// Also watch this inbox folder and ingest what lands there.
        #[arg(long)]
        inbox: Option<PathBuf>,
        /// Allow operations that run caller-supplied SQL (custom_complex_query; they
        /// also need an admin key). Same as `allow_custom_sql = true`.
        #[arg(long)]
        allow_custom_sql: bool,
        /// Configuration file (TOML); see docs/configuration.md.
        #[arg(long, env = "QUARRY_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Manage API keys (stored hashed; the key is shown once, at creation).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Show the effective configuration, or write its reference documentation.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Watch an inbox folder and ingest each file that lands there.
    ///
    /// The inbox is laid out like the bucket; each file is ingested once; processed files move to --done or --failed.
    Watch {
        /// The inbox folder.
        inbox: PathBuf,
        /// Where loaded and duplicate files go (default: INBOX/../done).
        #[arg(long)]
        done: Option<PathBuf>,
        /// Where failed files go, each with NAME.error.txt (default: INBOX/../failed).
        #[arg(long)]
        failed: Option<PathBuf>,
        /// Seconds between scans.
        #[arg(long, default_value_t = 2)]
        interval: u64,
        /// Scan once and exit.
        #[arg(long)]
        once: bool,
    },
    /// Work on a mapping without a database (preview a file).
    ///
    /// `quarry map preview FILE` shows the
    /// canonical rows, warnings, quarantine and skip reasons a file would produce,
    /// and whether the file as a whole would fail. Nothing is written.
    Map {
        #[command(subcommand)]
        action: MapAction,
    },
    /// Apply a new mapping version to the files already delivered.
    ///
    /// After a mapping fix (a new mapping version), apply the mapping again to the
    /// files of the source already delivered, from the raw copies kept at ingest
    /// (<data_dir>/raw). Each changed row gets one new version with its history;
    /// files already applied with this version are skipped, so it can be run again
    /// and resumes after an interruption. Exit code 3 if a file has no raw copy or fails.
    Backfill {
        /// The source system whose files to apply the mapping to.
        #[arg(long)]
        source: String,
        /// Only files first delivered on or after this date (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the tests written as data (pack tests and mapping tests).
    ///
    /// Every pack test (queries/**/NAME.test.yaml:
    /// rows given, parameters, expected rows or error; run against a scratch
    /// database made and dropped on the DATABASE_URL server) and every mapping
    /// test (an input file with NAME.expected.json beside it, in mappings/tests
    /// and tests/fixtures/real). Exit code 1 on any difference.
    Test {
        /// Files or folders holding test cases.
        paths: Vec<PathBuf>,
        /// Write the current output as the expected files and as the expected
        /// rows of failing pack test cases (review the diff).
        #[arg(long)]
        update: bool,
    },
    /// Review the links between organizations of different systems and decide:
    /// list, confirm, reject, split.
    Links {
        #[command(subcommand)]
        action: links::LinksAction,
    },
    /// Companies across systems: show one with its members and links, or
    /// recompute every link and company with mappings/companies.yaml.
    Companies {
        #[command(subcommand)]
        action: links::CompaniesAction,
    },
    /// Inspect quarantined records and replay them after a mapping fix.
    Quarantine {
        #[command(subcommand)]
        action: QuarantineAction,
    },
    /// Write demo export files of the three sources (with realistic defects).
    ///
    /// Deterministic export files of all three sources, with the same kinds of
    /// defects as real exports, and expected.json describing a correct load.
    DemoData {
        /// Destination folder (bucket layout).
        out: PathBuf,
        /// About how many records in all.
        #[arg(long, default_value_t = 10_000)]
        scale: u64,
        /// Random seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Run one operation and print its rows.
    Query {
        /// Operation name (see `quarry operations`).
        operation: String,
        /// A parameter as NAME=VALUE; repeat for several. Lists are comma separated.
        #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value_t = output::Format::Table)]
        format: output::Format,
        /// Return at most this many rows (never more than the operation's own cap).
        #[arg(long)]
        max_rows: Option<u64>,
        /// Refuse an answer larger than this many bytes of JSON (the server's
        /// `api.max_answer_bytes` default).
        #[arg(long, default_value_t = quarry_db::exec::DEFAULT_MAX_ANSWER_BYTES)]
        max_answer_bytes: u64,
        /// Print the rendered SQL and its bind values instead of running it.
        #[arg(long)]
        show_sql: bool,
        /// Allow operations that run caller-supplied SQL (custom_complex_query).
        #[arg(long, env = "QUARRY_ALLOW_CUSTOM_SQL")]
        allow_custom_sql: bool,
    },
    /// List the operations and their parameters.
    ///
    /// Version, cost class, cache TTL, and each parameter's type, default,
    /// allowed values and bounds.
    Operations {
        /// Print the catalog as JSON (the documents of GET /operations: parameters
        /// as JSON Schema with descriptions, columns, deprecation).
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, ...).
    ///
    /// `quarry completions bash > /etc/bash_completion.d/quarry`,
    /// `quarry completions zsh > "${fpath[1]}/_quarry"`, `quarry completions fish > ~/.config/fish/completions/quarry.fish`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the JSON Schemas of the definition files (query packs) into a folder.
    Schema {
        /// Destination folder.
        #[arg(long, default_value = "schemas")]
        out: PathBuf,
        /// Do not write; fail if the files on disk differ from the generated ones.
        #[arg(long)]
        check: bool,
    },
    /// Write docs/schema.md, the canonical data contract.
    ///
    /// From the database's own
    /// table and column comments (needs a migrated database).
    Docs {
        /// Destination file.
        #[arg(long, default_value = "docs/schema.md")]
        out: PathBuf,
        /// Do not write; fail if the file differs from the generated one.
        #[arg(long)]
        check: bool,
    },
    /// The demo: demo exports generated, ingested and queried.
    ///
    /// Migrates, generates exports of the three sources (with defects),
    /// ingest them, and run a few operations.
    Demo {
        /// Demo size: 10,000 records per unit (about 3,000 customers and 4,000 orders).
        #[arg(long, default_value_t = 1)]
        scale: u32,
        /// Load the data but do not print the operations.
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Subcommand, Debug)]
enum MapAction {
    /// Map one file and print what would load, be quarantined or skipped.
    Preview {
        /// The export file.
        file: PathBuf,
        /// Use this source's mapping (default: the mapping claiming the file's key).
        #[arg(long)]
        source: Option<String>,
        /// Records shown in detail (all are counted).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON (the format of the expected files of `quarry test`).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum QuarantineAction {
    /// Open quarantined records, newest first.
    List {
        /// Only this source system.
        #[arg(long)]
        source: Option<String>,
        /// Only this reason code (missing_key, blank, invalid_number, ...).
        #[arg(long)]
        reason: Option<String>,
        /// Include records that a replay has resolved.
        #[arg(long)]
        all: bool,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Values that loaded without their column (an unknown country, a malformed
    /// e-mail, ...): the column is empty and the source value is in the row's
    /// attributes. Newest first.
    Warnings {
        /// Only this source system.
        #[arg(long)]
        source: Option<String>,
        /// Only this column (country_code, email, ...).
        #[arg(long)]
        column: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One record with its raw content.
    Show {
        /// The quarantine id (from `quarry quarantine list`).
        id: i64,
    },
    /// Re-process the open records of a source with its current mapping; the ones
    /// that now load are marked resolved.
    Replay {
        /// The source system whose records to replay.
        #[arg(long)]
        source: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum CheckFormat {
    Text,
    Json,
}

/// True when the error (or one of its causes) is a closed output pipe.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    }) || format!("{e:#}").contains("Broken pipe")
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // `quarry query ... | head`: when the reader of our output goes away, stop
    // quietly with exit 0, as command-line tools do, instead of a panic (println!).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if payload.contains("failed printing to stdout") && payload.contains("Broken pipe") {
            std::process::exit(0);
        }
        default_hook(info);
    }));
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("QUARRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colour only for a person at a terminal: never in a file or a pipe, and
    // never when NO_COLOR is set (https://no-color.org).
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Migrate => {
            let mut client = quarry_db::connect(&cli.database_url).await?;
            let report = quarry_db::migrate(&mut client).await?;
            if report.applied.is_empty() {
                println!(
                    "database is up to date ({} migrations applied earlier)",
                    report.already
                );
            } else {
                for m in &report.applied {
                    println!("applied {m}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            paths,
            offline,
            against,
            cost_budget,
            large_table_rows,
            format,
        } => {
            let paths = if paths.is_empty() {
                vec![cli.queries.clone(), cli.mappings.clone()]
            } else {
                paths
            };
            let db = if offline || !database_configured() {
                None
            } else {
                Some(cli.database_url.as_str())
            };
            let budget = quarry_core::packs::cost::CostBudget {
                max_cost: cost_budget,
                large_rows: large_table_rows,
            };
            check::run(
                &paths,
                db,
                against.as_deref(),
                &budget,
                format == CheckFormat::Json,
            )
            .await
        }
        Command::Query {
            operation,
            params,
            format,
            max_rows,
            max_answer_bytes,
            show_sql,
            allow_custom_sql,
        } => {
            let set = load_one_or_all(&cli.queries, &operation)?;
            let Some(pack) = set.get(&operation) else {
                bail!(
                    "unknown operation `{operation}`; available: {} (see `quarry operations`)",
                    set.names().join(", ")
                );
            };
            let mut input = serde_json::Map::new();
            for p in &params {
                let Some((k, v)) = p.split_once('=') else {
                    bail!("--param {p:?} is not NAME=VALUE");
                };
                input.insert(
                    k.trim().to_string(),
                    serde_json::Value::String(v.to_string()),
                );
            }
            if show_sql {
                let resolved = pack.resolve(&input, InputStyle::Text).map_err(|errs| {
                    anyhow::anyhow!(
                        "{}",
                        errs.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("\n")
                    )
                })?;
                let q = pack.render(&resolved).map_err(anyhow::Error::msg)?;
                println!("{}", q.sql);
                for (i, b) in q.binds.iter().enumerate() {
                    println!("-- ${} {} = {:?}", i + 1, b.pg_type.sql_name(), b.value);
                }
                return Ok(ExitCode::SUCCESS);
            }
            let mut reader = quarry_db::connect_reader(&cli.database_url).await?;
            let opts = quarry_db::CallOptions {
                max_rows,
                max_bytes: Some(max_answer_bytes),
                timeout: None,
                allow_raw_sql: allow_custom_sql,
                ..Default::default()
            };
            match quarry_db::execute_pack(&mut reader, pack, &input, InputStyle::Text, opts).await {
                Ok((resolved, out)) => {
                    output::print(format, pack, &resolved, &out)?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    if let quarry_db::RunError::Query(quarry_db::QueryError::Sql {
                        hint: Some(h),
                        ..
                    }) = &e
                    {
                        eprintln!("  hint: {h}");
                    }
                    if let quarry_db::RunError::Query(quarry_db::QueryError::TooLarge { .. }) = &e {
                        eprintln!(
                            "  hint: ask for fewer rows with --max-rows or narrower parameters, \
                             or allow a larger answer with --max-answer-bytes"
                        );
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Ingest {
            paths,
            source,
            json,
            claim_wait,
            jobs,
        } => {
            ingest::run(
                &cli.database_url,
                &cli.mappings,
                &paths,
                source.as_deref(),
                json,
                std::time::Duration::from_secs(claim_wait),
                jobs.map_or_else(ingest::default_jobs, usize::from),
            )
            .await
        }
        Command::Map {
            action:
                MapAction::Preview {
                    file,
                    source,
                    limit,
                    json,
                },
        } => maptest::preview_command(&cli.mappings, &file, source.as_deref(), limit, json),
        Command::Backfill {
            source,
            since,
            json,
        } => {
            ingest::backfill(
                &cli.database_url,
                &cli.mappings,
                &source,
                since.as_deref(),
                json,
            )
            .await
        }
        Command::Test { paths, update } => {
            let paths = if paths.is_empty() {
                [
                    cli.queries.clone(),
                    PathBuf::from("mappings/tests"),
                    PathBuf::from("tests/fixtures/real"),
                ]
                .into_iter()
                .filter(|p| p.exists())
                .collect()
            } else {
                paths
            };
            maptest::test_command(
                &cli.database_url,
                &cli.queries,
                &cli.mappings,
                &paths,
                update,
            )
            .await
        }
        Command::DemoData { out, scale, seed } => {
            let expected = quarry_demo::generate(&out, &quarry_demo::GenOptions { scale, seed })?;
            let total: u64 = expected.files.iter().map(|f| f.records_read).sum();
            println!(
                "wrote {total} records in {} files under {} (expected outcome in expected.json)",
                expected.files.len(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            listen,
            inbox,
            allow_custom_sql,
            config,
        } => {
            let mut cfg = quarry_api::Config::load(config.as_deref())?;
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if inbox.is_some() {
                cfg.inbox = inbox;
            }
            if allow_custom_sql {
                cfg.allow_custom_sql = true;
            }
            // The global flags (or their QUARRY_*_DIR variables) win over the file
            // unless they are at their defaults.
            if cli.queries != std::path::Path::new("queries") {
                cfg.queries_dir = cli.queries.clone();
            }
            if cli.mappings != std::path::Path::new("mappings") {
                cfg.mappings_dir = cli.mappings.clone();
            }
            serve(&cli.database_url, cfg).await
        }
        Command::Keys { action } => keys(&cli.database_url, action).await,
        Command::Config { action } => match action {
            ConfigAction::Show { config } => {
                let cfg = quarry_api::Config::load(config.as_deref())?;
                println!("{}", serde_json::to_string_pretty(&cfg)?);
                Ok(ExitCode::SUCCESS)
            }
            ConfigAction::Docs { out, check } => write_or_check(
                &out,
                &quarry_api::config::reference_markdown(),
                check,
                "quarry config docs",
            ),
        },
        Command::Watch {
            inbox,
            done,
            failed,
            interval,
            once,
        } => {
            let parent = inbox
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default();
            let done = done.unwrap_or_else(|| parent.join("done"));
            let failed = failed.unwrap_or_else(|| parent.join("failed"));
            let w = ingest::Watch {
                inbox,
                done,
                failed,
                interval: std::time::Duration::from_secs(interval.max(1)),
                once,
                notifier: None,
                print: true,
                raw_dir: ingest::raw_dir()?,
            };
            ingest::watch(&cli.database_url, &cli.mappings, &w).await
        }
        Command::Quarantine { action } => {
            quarantine(&cli.database_url, &cli.mappings, action).await
        }
        Command::Links { action } => links::links(&cli.database_url, action).await,
        Command::Companies { action } => {
            links::companies(&cli.database_url, &cli.mappings, action).await
        }
        Command::Operations { json } => {
            let set = load_packs(&cli.queries)?;
            if json {
                output::print_operations_json(&set)?;
            } else {
                output::print_operations(&set);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "quarry", &mut out);
            use std::io::Write;
            std::io::stdout()
                .write_all(&out)
                .context("writing the completion script")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema { out, check } => schema(&out, check),
        Command::Docs { out, check } => {
            let client = quarry_db::connect(&cli.database_url).await?;
            let text = quarry_db::docs::schema_markdown(&client).await?;
            write_or_check(&out, &text, check, "quarry docs")
        }
        Command::Demo { scale, quiet } => {
            demo::run(&cli.database_url, &cli.queries, &cli.mappings, scale, quiet).await
        }
    }
}

async fn quarantine(
    database_url: &str,
    mappings: &std::path::Path,
    action: QuarantineAction,
) -> Result<ExitCode> {
    use quarry_db::quarantine as q;
    let mut client = quarry_db::connect(&quarry_db::writer_url(database_url)?).await?;
    match action {
        QuarantineAction::List {
            source,
            reason,
            all,
            limit,
            json,
        } => {
            let entries =
                q::list(&client, source.as_deref(), reason.as_deref(), all, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                let mut t = comfy_table::Table::new();
                t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
                t.set_header([
                    "id", "source", "file", "position", "type", "reason", "message", "resolved",
                ]);
                for e in &entries {
                    t.add_row([
                        e.id.to_string(),
                        e.source_system.clone(),
                        e.object_key.clone(),
                        e.position.to_string(),
                        e.record_type.clone().unwrap_or_default(),
                        e.reason_code.clone(),
                        e.message.clone(),
                        e.resolved_at.clone().unwrap_or_default(),
                    ]);
                }
                println!("{t}\n{} record(s); `quarry quarantine show ID` prints one with its raw content", entries.len());
            }
        }
        QuarantineAction::Warnings {
            source,
            column,
            limit,
            json,
        } => {
            let list = q::warnings(&client, source.as_deref(), column.as_deref(), limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let mut t = comfy_table::Table::new();
                t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
                t.set_header([
                    "source", "file", "position", "row", "column", "reason", "message",
                ]);
                for w in &list {
                    t.add_row([
                        w.source_system.clone(),
                        w.object_key.clone(),
                        w.position.to_string(),
                        format!("{} {}", w.entity, w.source_id),
                        w.column_name.clone(),
                        w.reason_code.clone(),
                        w.message.clone(),
                    ]);
                }
                println!(
                    "{t}\n{} warning(s); each value is kept in its row's attributes under the source field's name",
                    list.len()
                );
            }
        }
        QuarantineAction::Show { id } => match q::show(&client, id).await? {
            Some(e) => println!("{}", serde_json::to_string_pretty(&e)?),
            None => bail!("no quarantined record {id}; see `quarry quarantine list`"),
        },
        QuarantineAction::Replay { source } => {
            let all = ingest::load_mappings(mappings)?;
            let Some(mapping) = all.into_iter().find(|m| m.spec.source == source) else {
                bail!("no mapping for source `{source}` in {}", mappings.display());
            };
            let r = q::replay(&mut client, mapping).await?;
            println!(
                "replayed {} record(s) of {}: {} resolved, {} still quarantined",
                r.replayed, r.source, r.resolved, r.still_quarantined
            );
            if let Some(err) = r.load.as_ref().and_then(|l| l.error.clone()) {
                println!("error: {err}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(database_url: &str, cfg: quarry_api::Config) -> Result<ExitCode> {
    let addr: std::net::SocketAddr = cfg.listen.parse().with_context(|| {
        format!(
            "listen address {:?} is not an address such as 127.0.0.1:8080",
            cfg.listen
        )
    })?;
    let mut client = quarry_db::connect(database_url).await?;
    quarry_db::migrate(&mut client).await?;
    let key_count = quarry_db::store::list_keys(&client)
        .await?
        .iter()
        .filter(|k| k.revoked_at.is_none())
        .count();
    drop(client);
    let loopback = addr.ip().is_loopback();
    if !loopback && key_count == 0 {
        bail!("refusing to listen on {addr}: no API keys exist, so the API would be open to the network. Create one with `quarry keys create --name NAME --scope read`, or listen on 127.0.0.1");
    }
    let packs = load_packs(&cfg.queries_dir)?;
    let inbox = cfg.inbox.clone();
    let mappings = cfg.mappings_dir.clone();
    let raw_dir = cfg.keep_raw_files.then(|| cfg.data_dir.join("raw"));
    let mut local = quarry_api::local::Local::build(cfg, database_url, packs, loopback).await?;
    local.start_background()?;
    if let Some(inbox) = inbox {
        let parent = inbox
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let url = database_url.to_string();
        let notifier = local.state.ports.notifier.clone();
        tokio::spawn(async move {
            let w = ingest::Watch {
                inbox,
                done: parent.join("done"),
                failed: parent.join("failed"),
                interval: std::time::Duration::from_secs(2),
                once: false,
                notifier: Some(notifier.clone()),
                print: false,
                raw_dir: raw_dir.clone(),
            };
            // The watcher restarts after any failure (database down, folder gone),
            // with a growing pause, and reports each failure as a system event.
            let mut pause = std::time::Duration::from_secs(1);
            loop {
                if let Err(e) = ingest::watch(&url, &mappings, &w).await {
                    let msg = format!("{e:#}");
                    tracing::error!(error = %msg, retry_in_s = pause.as_secs(), "the inbox watcher failed; restarting");
                    let ev = quarry_core::jobs::Event::system_error(
                        uuid::Uuid::new_v4().to_string(),
                        "inbox-watcher",
                        "the inbox watcher failed and is restarting; see the server log",
                        chrono::Utc::now(),
                    );
                    let _ = notifier.publish(&ev).await;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(60));
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let bound = listener.local_addr()?;
    println!("quarry listening on http://{bound}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    if local.state.auth.is_open() {
        tracing::warn!("no API keys exist: read and jobs access is open to this loopback address (admin stays closed); create keys with `quarry keys create` to require them");
    }
    let limits = quarry_api::ServeLimits::from_config(&local.state.config.api);
    axum_serve(listener, quarry_api::router(local.state.clone()), limits).await?;
    Ok(ExitCode::SUCCESS)
}

async fn keys(database_url: &str, action: KeysAction) -> Result<ExitCode> {
    use quarry_db::store::{self, Scope};
    let mut client = quarry_db::connect(database_url).await?;
    quarry_db::migrate(&mut client).await?;
    match action {
        KeysAction::Create { name, scopes, rate } => {
            let scopes: Vec<Scope> = scopes.iter().filter_map(|s| Scope::parse(s)).collect();
            let (id, key) = store::create_random_key(&client, &name, &scopes, rate).await?;
            eprintln!("created key {id} ({name}); store it now, it is not shown again:");
            println!("{key}");
        }
        KeysAction::List { json } => {
            let keys = store::list_keys(&client).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                let mut t = comfy_table::Table::new();
                t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
                t.set_header(["id", "name", "scopes", "rate/s", "created", "revoked"]);
                for k in keys {
                    t.add_row([
                        k.id,
                        k.name,
                        k.scopes.join(","),
                        k.rate_per_second.map(|r| r.to_string()).unwrap_or_default(),
                        k.created_at.format("%Y-%m-%d %H:%M").to_string(),
                        k.revoked_at
                            .map(|r| r.format("%Y-%m-%d %H:%M").to_string())
                            .unwrap_or_default(),
                    ]);
                }
                println!("{t}");
            }
        }
        KeysAction::Revoke { id } => {
            if !store::revoke_key(&client, &id).await? {
                bail!("no active key has id {id}; `quarry keys list` shows them");
            }
            eprintln!("revoked key {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn axum_serve(
    listener: tokio::net::TcpListener,
    router: quarry_api::Router,
    limits: quarry_api::ServeLimits,
) -> Result<()> {
    quarry_api::serve(listener, router, limits).await
}

/// True when the user pointed at a database explicitly.
fn database_configured() -> bool {
    std::env::var_os("DATABASE_URL").is_some()
        || std::env::args().any(|a| a.starts_with("--database-url"))
}

/// Loads and checks every pack; any problem is an error listing all of them.
pub fn load_packs(dir: &std::path::Path) -> Result<quarry_core::PackSet> {
    let sources = quarry_core::files::read_pack_sources(&[dir.to_path_buf()])
        .map_err(|d| anyhow::anyhow!("{}", join_diags(&d)))?;
    quarry_core::packs::loader::build_pack_set(&sources).map_err(|d| {
        anyhow::anyhow!(
            "the query packs have problems (run `quarry check`):\n{}",
            join_diags(&d)
        )
    })
}

/// Loads just `queries/OP.yaml` when it exists (one broken pack does not block
/// running another), else the whole folder (for the list of known names).
fn load_one_or_all(dir: &std::path::Path, op: &str) -> Result<quarry_core::PackSet> {
    let file = dir.join(format!("{op}.yaml"));
    if quarry_core::packs::render::is_plain_identifier(op) && file.is_file() {
        let sources = quarry_core::files::read_pack_sources(&[file])
            .map_err(|d| anyhow::anyhow!("{}", join_diags(&d)))?;
        return quarry_core::packs::loader::build_pack_set(&sources).map_err(|d| {
            anyhow::anyhow!(
                "operation `{op}` has problems (run `quarry check`):\n{}",
                join_diags(&d)
            )
        });
    }
    load_packs(dir)
}

fn join_diags(d: &[quarry_core::Diagnostic]) -> String {
    d.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn schema(out: &std::path::Path, check: bool) -> Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for (file, schema) in [
        (
            "query-pack.schema.json",
            quarry_core::packs::pack::pack_json_schema(),
        ),
        (
            "mapping.schema.json",
            quarry_core::ingest::mapping::mapping_json_schema(),
        ),
        (
            quarry_core::companies::SCHEMA,
            quarry_core::companies::json_schema(),
        ),
        (
            quarry_core::packs::packtest::SCHEMA,
            quarry_core::packs::packtest::json_schema(),
        ),
    ] {
        let text = serde_json::to_string_pretty(&schema)? + "\n";
        if write_or_check(&out.join(file), &text, check, "quarry schema")? != ExitCode::SUCCESS {
            code = ExitCode::FAILURE;
        }
    }
    Ok(code)
}

fn write_or_check(path: &std::path::Path, text: &str, check: bool, cmd: &str) -> Result<ExitCode> {
    if check {
        let current = std::fs::read_to_string(path).unwrap_or_default();
        if current != text {
            eprintln!(
                "{} is out of date; run `{cmd}` and commit the result",
                path.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        println!("{} is up to date", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}
