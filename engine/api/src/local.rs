//! The local runtime: the ports as a folder, Postgres tables, the in-process
//! runner, the log and webhooks; and the background tasks `quarry serve` runs.

use std::sync::Arc;
use std::time::Duration;

use quarry_core::PackSet;
use quarry_db::store::{PgCache, PgJobStore};

use crate::auth::{Auth, AuthMode};
use crate::jobs::{self, Sweeper};
use crate::notify::LocalNotifier;
use crate::storage::{signing_key, FolderStore};
use crate::{pool, AppState, Config, Ports};

/// The running local runtime.
pub struct Local {
    pub state: Arc<AppState>,
    /// The writer pool: cache, jobs and the key refresh.
    writer: deadpool_postgres::Pool,
    runner_rx: Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
}

struct LocalSweeper {
    cache: Arc<PgCache>,
    jobs: Arc<PgJobStore>,
    store: Arc<FolderStore>,
}

#[async_trait::async_trait]
impl Sweeper for LocalSweeper {
    async fn sweep(&self, st: &AppState) {
        match self.cache.sweep().await {
            Ok(n) if n > 0 => tracing::info!(entries = n, "swept expired cache entries"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cache sweep failed"),
        }
        let age = Duration::from_secs(st.config.jobs.retention_hours * 3600);
        match self.jobs.sweep(age).await {
            Ok(keys) => {
                for k in &keys {
                    let _ = self.store.delete(k).await;
                }
                if !keys.is_empty() {
                    tracing::info!(results = keys.len(), "deleted old job results");
                }
            }
            Err(e) => tracing::warn!(error = %e, "job sweep failed"),
        }
        // Page snapshots outlive their cursors by nothing; stored answers by
        // their signed links (S3 expires both by a lifecycle rule on AWS).
        let store = self.store.clone();
        let pages = Duration::from_secs(st.config.api.page_ttl_seconds);
        let answers = Duration::from_secs(st.config.jobs.link_ttl_seconds.saturating_mul(2));
        let swept = tokio::task::spawn_blocking(move || {
            store.sweep_prefix("pages", pages) + store.sweep_prefix("answers", answers)
        })
        .await
        .unwrap_or(0);
        if swept > 0 {
            tracing::info!(
                objects = swept,
                "deleted expired page snapshots and stored answers"
            );
        }
    }
}

impl Local {
    /// Builds the state: pools as reader and writer of `database_url` (owner URL),
    /// the local ports, and the key set. `loopback` says whether the listen
    /// address is loopback (open access is possible only then).
    pub async fn build(
        config: Config,
        database_url: &str,
        packs: PackSet,
        loopback: bool,
    ) -> anyhow::Result<Local> {
        let reader_url = quarry_db::reader_url(database_url)?;
        let reader = pool(&reader_url, config.api.pool_size)?;
        let writer = pool(
            &quarry_db::writer_url(database_url)?,
            config.api.pool_size.min(8),
        )?;
        let store = Arc::new(FolderStore::new(
            config.results_dir(),
            signing_key(config.storage.signing_key.as_deref(), &config.data_dir)?,
        )?);
        let cache = Arc::new(PgCache::new(writer.clone()));
        let job_store = Arc::new(PgJobStore::new(writer.clone()));
        let (starter, rx) = jobs::local_starter();
        let auth = Auth::new(
            AuthMode::Keys { loopback },
            config.api.rate_limit_per_second,
            config.api.rate_limit_burst,
        );
        {
            // Both logins are tried now, so that a refused login (a missing
            // password) is named at start rather than by the first request's
            // 503. An unreachable reader is not fatal: the server starts
            // degraded and /health says so.
            match login(&reader, &reader_url, "analytics (reader)").await {
                Ok(_) => {}
                Err(LoginError::Refused(e)) => return Err(e),
                Err(LoginError::Other(e)) => {
                    tracing::warn!(error = %format!("{e:#}"), "the analytics role cannot connect yet; serving degraded")
                }
            }
            let writer_url = quarry_db::writer_url(database_url)?;
            let c = login(&writer, &writer_url, "writer").await?;
            auth.set_keys(quarry_db::store::active_keys(&c).await?);
        }
        let data_version = quarry_db::version::follow(reader_url);
        let ports = Ports {
            cache: cache.clone(),
            jobs: job_store.clone(),
            objects: store.clone(),
            notifier: Arc::new(LocalNotifier::new(config.notify.clone())?),
            starter: Arc::new(starter),
            sweeper: Some(Arc::new(LocalSweeper {
                cache,
                jobs: job_store,
                store,
            })),
        };
        let mut state = AppState::new(packs, reader, ports, auth, config, data_version);
        state.writer = Some(writer.clone());
        let state = Arc::new(state);
        Ok(Local {
            state,
            writer,
            runner_rx: Some(rx),
        })
    }

    /// Starts the job runner, key refresh and pack reload in the background.
    pub fn start_background(&mut self) -> anyhow::Result<()> {
        if let Some(rx) = self.runner_rx.take() {
            tokio::spawn(jobs::runner(self.state.clone(), rx));
        }
        let st = self.state.clone();
        let writer = self.writer.clone();
        tokio::spawn(async move {
            let every = Duration::from_secs(st.config.auth.refresh_seconds.max(1));
            loop {
                tokio::time::sleep(every).await;
                match writer.get().await {
                    Ok(c) => match quarry_db::store::active_keys(&c).await {
                        Ok(keys) => st.auth.set_keys(keys),
                        Err(e) => tracing::warn!(error = %e, "could not refresh API keys"),
                    },
                    Err(e) => tracing::warn!(error = %e, "could not refresh API keys"),
                }
            }
        });
        crate::reload::spawn(self.state.clone())
    }
}

/// Why a role could not get a connection.
enum LoginError {
    /// The database refused the login: a setting is wrong (the message names it).
    Refused(anyhow::Error),
    /// Anything else (unreachable, timed out).
    Other(anyhow::Error),
}

impl From<LoginError> for anyhow::Error {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::Refused(e) | LoginError::Other(e) => e,
        }
    }
}

/// One connection from `pool`, or an error that says which role could not log
/// in and which setting gives its password.
async fn login(
    pool: &deadpool_postgres::Pool,
    url: &str,
    role: &str,
) -> Result<deadpool_postgres::Object, LoginError> {
    pool.get().await.map_err(|e| {
        let hint = match &e {
            deadpool_postgres::PoolError::Backend(pg) => quarry_db::login_hint(url, pg),
            _ => None,
        };
        let what = format!("cannot connect to the database as the {role} role: {e}");
        match hint {
            Some(h) => LoginError::Refused(anyhow::anyhow!("{h}\n  ({what})")),
            None => LoginError::Other(anyhow::anyhow!(what)),
        }
    })
}
