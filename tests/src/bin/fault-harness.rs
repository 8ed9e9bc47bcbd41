//! `fault-harness`: seeded fault schedules against a private PostgreSQL, each
//! compared with one clean load of the same files (see `quarry_tests::faults`).
//!
//! ```text
//! cargo build --release -p quarry-cli -p quarry-tests
//! target/release/fault-harness --schedules 1000
//! ```
//! Exits 1 when any schedule lost, duplicated or changed a row, could not be
//! completed, or saw a run exit 0 without loading its file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use quarry_tests::faults::{run, Options};

#[derive(Parser)]
#[command(about = "Seeded fault schedules on ingest, compared with a clean load")]
struct Args {
    /// How many schedules to run.
    #[arg(long, default_value_t = 50)]
    schedules: u64,
    /// Seed of the first schedule (schedule i uses seed + i: a failing schedule is
    /// re-run alone with --seed S --schedules 1).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The quarry binary (default: the one built beside this one).
    #[arg(long)]
    quarry: Option<PathBuf>,
    /// Files or folders to load (default: the test fixtures' exports and the
    /// third parties' real exports).
    #[arg(long)]
    corpus: Vec<PathBuf>,
    /// Print every schedule.
    #[arg(long)]
    verbose: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let quarry = args.quarry.unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("quarry")))
            .unwrap_or_else(|| PathBuf::from("quarry"))
    });
    let corpus = if args.corpus.is_empty() {
        vec![
            repo.join("tests/fixtures/ingest/exports"),
            repo.join("tests/fixtures/real"),
        ]
    } else {
        args.corpus
    };
    let opts = Options {
        schedules: args.schedules,
        seed: args.seed,
        quarry,
        repo,
        corpus,
        verbose: args.verbose,
    };
    // On Ctrl-C the run is dropped, and with it the private cluster (stopped,
    // its folder removed) once the runtime's tasks are gone.
    let outcome = tokio::select! {
        r = run(&opts) => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("fault-harness: interrupted; stopping the private cluster");
            return ExitCode::from(130);
        }
    };
    match outcome {
        Ok(summary) => {
            println!("{}", summary.line());
            if summary.clean() {
                ExitCode::SUCCESS
            } else {
                println!("failing: {}", summary.failures.join(", "));
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("fault-harness: {e:#}");
            ExitCode::from(2)
        }
    }
}
