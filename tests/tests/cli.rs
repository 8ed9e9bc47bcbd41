//! The command line as people use it: help, completions, the catalog as JSON,
//! a closed pipe, colour only on a terminal, documented exit codes.

use std::io::Read;
use std::process::{Command, Stdio};

use quarry_tests::{fixture_db, quarry_bin, repo_root};
use serde_json::Value;

fn quarry(args: &[&str]) -> std::process::Output {
    Command::new(quarry_bin())
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("run quarry")
}

#[test]
fn help_lists_every_command_and_the_exit_codes() {
    let out = quarry(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "migrate",
        "check",
        "ingest",
        "serve",
        "keys",
        "config",
        "watch",
        "map",
        "backfill",
        "test",
        "quarantine",
        "demo-data",
        "query",
        "operations",
        "completions",
        "schema",
        "docs",
        "demo",
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{cmd} "))),
            "`{cmd}` is in the help:\n{text}"
        );
    }
    for code in ["0  success", "1  failure", "2  usage", "3  partial"] {
        assert!(text.contains(code), "exit code `{code}` documented");
    }
    // A usage error is exit code 2.
    assert_eq!(quarry(&["no-such-command"]).status.code(), Some(2));
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let out = quarry(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("quarry") && text.contains("backfill") && text.contains("claim-wait"),
            "{shell} completion names commands and options"
        );
    }
    let bash = quarry(&["completions", "bash"]);
    let check = Command::new("bash")
        .args(["-n", "-c", &String::from_utf8_lossy(&bash.stdout)])
        .status()
        .expect("bash");
    assert!(check.success(), "the bash completion script parses");
    assert_eq!(quarry(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn operations_json_shows_allowed_values_defaults_and_descriptions() {
    let out = quarry(&["operations", "--json"]);
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let ca = doc["operations"]
        .as_array()
        .and_then(|ops| ops.iter().find(|o| o["name"] == "customer_analysis"))
        .cloned()
        .unwrap_or_default();
    let group_by = &ca["parameters"]["properties"]["group_by"];
    assert_eq!(group_by["default"], "industry");
    assert!(group_by["enum"]
        .as_array()
        .is_some_and(|e| e.iter().any(|v| v == "country")));
    assert!(group_by["description"]
        .as_str()
        .is_some_and(|d| d.contains("Segment dimension")));
    assert!(ca["columns"].as_array().is_some_and(|c| !c.is_empty()));
    // The table shows them too.
    let table = String::from_utf8_lossy(&quarry(&["operations"]).stdout).to_string();
    assert!(table
        .contains("group_by: identifier = industry [industry|country|tier|source_system|region]"));
}

#[test]
fn a_closed_pipe_ends_quietly_with_exit_0() {
    let mut child = Command::new(quarry_bin())
        .args(["operations", "--json"])
        .current_dir(repo_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // The reader goes away before the first byte, as `| head -0` would.
    drop(child.stdout.take());
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).expect("stderr");
    }
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test]
async fn logs_in_a_file_have_no_colour() {
    let db = fixture_db().await;
    let out = Command::new(quarry_bin())
        .args(["query", "simple_demo"])
        .current_dir(repo_root())
        .env("DATABASE_URL", &db.url)
        .env("QUARRY_LOG", "debug")
        .env_remove("NO_COLOR")
        .output()
        .expect("run quarry");
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.lines().count() > 3, "debug logs were written:\n{log}");
    assert!(!log.contains('\u{1b}'), "no escape codes:\n{log}");
}

/// An answer over the byte limit names the limit and the ways out; the
/// limit can be raised for the call.
#[tokio::test]
async fn an_answer_over_the_byte_limit_says_how_to_get_it() {
    let db = fixture_db().await;
    let run = |extra: &[&str]| {
        let mut args = vec!["query", "simple_demo", "-f", "json"];
        args.extend_from_slice(extra);
        Command::new(quarry_bin())
            .args(&args)
            .current_dir(repo_root())
            .env("DATABASE_URL", &db.url)
            .output()
            .expect("run quarry")
    };
    let out = run(&["--max-answer-bytes", "10"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("limit of 10 bytes"), "{err}");
    assert!(err.contains("--max-answer-bytes"), "{err}");
    let out = run(&["--max-answer-bytes", "100000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("json answer");
    assert!(
        answer["row_count"].as_u64().is_some_and(|n| n > 0),
        "{answer}"
    );
}
