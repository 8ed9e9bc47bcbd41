//! Pack reload without restart: on SIGHUP, and when files in the queries folder
//! change (watched with `notify`, debounced). An invalid set is rejected with the
//! same diagnostics as `quarry check` and the previous set keeps serving;
//! requests in flight finish with the set they started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use quarry_core::{Diagnostic, PackSet};

use crate::AppState;

/// Reads and validates every pack under `dir`.
pub fn load(dir: &Path) -> Result<PackSet, Vec<Diagnostic>> {
    let sources = quarry_core::files::read_pack_sources(&[dir.to_path_buf()])?;
    quarry_core::loader::build_pack_set(&sources)
}

/// Reloads the packs into `st`; returns the number of operations, or the problems.
pub fn reload(st: &AppState) -> Result<usize, Vec<Diagnostic>> {
    match load(&st.config.queries_dir) {
        Ok(set) => {
            let n = set.len();
            let before = st.packs();
            let changed: Vec<String> = set
                .packs
                .iter()
                .filter(|(name, p)| {
                    before
                        .get(name)
                        .is_none_or(|old| old.content_digest != p.content_digest)
                })
                .map(|(name, _)| name.clone())
                .collect();
            st.packs.store(Arc::new(set));
            tracing::info!(operations = n, changed = ?changed, "query packs reloaded");
            Ok(n)
        }
        Err(diags) => {
            for d in &diags {
                tracing::error!(problem = %d, "query pack reload rejected; the previous packs keep serving");
            }
            Err(diags)
        }
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
            let _ = reload(&st);
        }
    });
    Ok(())
}
