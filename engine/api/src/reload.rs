//! Pack reload without restart: on SIGHUP, and when files in the queries folder
//! change (watched with `notify`, debounced). A new set passes the same checks
//! as `quarry check` with a database before it serves: offline, then every
//! branch of each changed pack prepared and EXPLAINed as the reader role. A
//! rejected set leaves the previous one serving and shows in `/health`
//! (`reload`) and in the metrics (`quarry_pack_reloads_total{outcome}`,
//! `quarry_pack_reload_rejected`); requests in flight finish with the set they
//! started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use quarry_core::{Diagnostic, Pack, PackSet};
use serde::Serialize;

use crate::AppState;

/// Reads and validates every pack under `dir`.
pub fn load(dir: &Path) -> Result<PackSet, Vec<Diagnostic>> {
    let sources = quarry_core::files::read_pack_sources(&[dir.to_path_buf()])?;
    quarry_core::packs::loader::build_pack_set(&sources)
}

/// The outcome of the last reload, for `/health`.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct ReloadStatus {
    /// `none` (no reload since start), `applied` or `rejected`.
    #[schemars(extend("enum" = ["none", "applied", "rejected"]))]
    pub status: &'static str,
    /// When the last reload was tried (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Problems that rejected it (0 when applied).
    pub problems: usize,
    /// Where the first problem is (`file:line:column`); run `quarry check` for all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_problem: Option<String>,
}

impl ReloadStatus {
    pub fn initial() -> Self {
        ReloadStatus {
            status: "none",
            ..Default::default()
        }
    }
}

/// Reloads the packs into `st`; returns the number of operations, or the problems.
pub async fn reload(st: &AppState) -> Result<usize, Vec<Diagnostic>> {
    let outcome = match load(&st.config.queries_dir) {
        Ok(set) => {
            let before = st.packs();
            let changed: Vec<&Arc<Pack>> = set
                .packs
                .iter()
                .filter(|(name, p)| {
                    before
                        .get(name)
                        .is_none_or(|old| old.content_digest != p.content_digest)
                })
                .map(|(_, p)| p)
                .collect();
            let problems = if changed.is_empty() {
                Vec::new()
            } else {
                check_against_database(st, &changed).await
            };
            if problems.is_empty() {
                let names: Vec<&str> = changed.iter().map(|p| p.spec.name.as_str()).collect();
                let n = set.len();
                tracing::info!(operations = n, changed = ?names, "query packs reloaded");
                st.packs.store(Arc::new(set));
                Ok(n)
            } else {
                Err(problems)
            }
        }
        Err(diags) => Err(diags),
    };
    let status = match &outcome {
        Ok(_) => ReloadStatus {
            status: "applied",
            at: Some(chrono::Utc::now().to_rfc3339()),
            problems: 0,
            first_problem: None,
        },
        Err(diags) => {
            for d in diags {
                tracing::error!(problem = %d, "query pack reload rejected; the previous packs keep serving");
            }
            ReloadStatus {
                status: "rejected",
                at: Some(chrono::Utc::now().to_rfc3339()),
                problems: diags.len(),
                first_problem: diags
                    .first()
                    .map(|d| format!("{}:{}:{}", d.file, d.line, d.column)),
            }
        }
    };
    let outcome_label = status.status;
    metrics::counter!("quarry_pack_reloads_total", "outcome" => outcome_label).increment(1);
    metrics::gauge!("quarry_pack_reload_rejected").set(if outcome.is_err() { 1.0 } else { 0.0 });
    if let Ok(mut s) = st.reload_status.lock() {
        *s = status;
    }
    outcome
}

/// The database half of `quarry check` on the packs that changed.
async fn check_against_database(st: &AppState, packs: &[&Arc<Pack>]) -> Vec<Diagnostic> {
    match st.reader.get().await {
        Ok(mut conn) => {
            let client: &mut tokio_postgres::Client = &mut conn;
            let refs: Vec<&Pack> = packs.iter().map(|p| p.as_ref()).collect();
            quarry_db::packcheck::check_packs(client, &refs, None)
                .await
                .diagnostics
        }
        Err(e) => vec![Diagnostic::new(
            &st.config.queries_dir.display().to_string(),
            (1, 1),
            format!("the changed packs could not be checked against the database ({e}); the previous packs keep serving"),
        )
        .help("reload again (SIGHUP) once the database is reachable")],
    }
}

/// Spawns the SIGHUP handler and, if enabled, the folder watcher.
pub fn spawn(st: Arc<AppState>) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    #[cfg(unix)]
    {
        let tx = tx.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                if tx.send("SIGHUP").is_err() {
                    return;
                }
            }
        });
    }
    let mut watcher_guard = None;
    if st.config.reload.watch {
        let tx = tx.clone();
        let dir: PathBuf = st.config.queries_dir.clone();
        let mut w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if let Ok(ev) = ev {
                let relevant = ev.paths.iter().any(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "sql")
                    )
                });
                if relevant && !ev.kind.is_access() {
                    let _ = tx.send("file change");
                }
            }
        })?;
        w.watch(&dir, RecursiveMode::Recursive)?;
        watcher_guard = Some(w);
    }
    let debounce = Duration::from_millis(st.config.reload.debounce_ms);
    tokio::spawn(async move {
        let _keep = watcher_guard;
        while let Some(why) = rx.recv().await {
            // Wait until changes settle (editors write several files, or in steps).
            loop {
                match tokio::time::timeout(debounce, rx.recv()).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            tracing::info!(trigger = why, "reloading query packs");
            let _ = reload(&st).await;
        }
    });
    Ok(())
}
