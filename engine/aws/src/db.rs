//! Database connections on AWS. Credentials come from Secrets Manager (one
//! secret per role, the standard RDS JSON), are cached for the life of the
//! container and re-read when PostgreSQL refuses them (SQLSTATE 28P01, as after
//! a rotation). TLS is verified against the RDS certificate bundle shipped in the
//! function's zip.
//!
//! Outside AWS (tests, a bootstrap binary run by hand) a role can be given as a
//! URL instead: `QUARRY_<ROLE>_URL`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use deadpool_postgres::{Connect, Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use tokio::sync::RwLock;
use tokio_postgres::error::SqlState;

/// A login: what one role's secret holds.
#[derive(Clone, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default, deserialize_with = "port_number")]
    pub port: Option<u16>,
    #[serde(default)]
    pub dbname: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .finish()
    }
}

/// RDS secrets hold the port as a number; hand-made ones often as a string.
fn port_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match v {
        Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    })
}

/// One role's secret in Secrets Manager, read once and re-read on demand.
pub struct SecretCredentials {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    cached: RwLock<Option<Credentials>>,
}

impl SecretCredentials {
    pub fn new(sdk: &aws_config::SdkConfig, secret_id: impl Into<String>) -> Self {
        SecretCredentials {
            client: aws_sdk_secretsmanager::Client::new(sdk),
            secret_id: secret_id.into(),
            cached: RwLock::new(None),
        }
    }

    /// The cached credentials, reading the secret the first time.
    pub async fn get(&self) -> anyhow::Result<Credentials> {
        if let Some(c) = self.cached.read().await.clone() {
            return Ok(c);
        }
        self.refresh().await
    }

    /// Reads the secret's current version again (after a rotation).
    pub async fn refresh(&self) -> anyhow::Result<Credentials> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "reading the database secret {}: {}",
                    self.secret_id,
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                )
            })?;
        let text = out.secret_string().with_context(|| {
            format!(
                "the secret {} has no SecretString; store the RDS JSON (username, password, host, port, dbname)",
                self.secret_id
            )
        })?;
        let creds: Credentials = serde_json::from_str(text).with_context(|| {
            format!(
                "the secret {} is not the RDS JSON (username, password, host, port, dbname)",
                self.secret_id
            )
        })?;
        *self.cached.write().await = Some(creds.clone());
        tracing::info!(secret = %self.secret_id, user = %creds.username, "database credentials read");
        Ok(creds)
    }
}

/// Where logins come from.
#[derive(Clone)]
pub enum Login {
    /// A Secrets Manager secret, re-read after an authentication failure.
    Secret(Arc<SecretCredentials>),
    /// A fixed connection string (tests, local runs).
    Url(String),
}

/// How the connection is protected.
#[derive(Clone)]
pub enum Tls {
    /// Verify the server against these roots and its host name (RDS).
    Verified(tokio_postgres_rustls::MakeRustlsConnect),
    /// Plain TCP: only for a database on the same host (tests).
    Disabled,
}

impl Tls {
    /// `QUARRY_DB_TLS`: `verify-full` (the default) or `disable`. The roots are
    /// `QUARRY_DB_CA_FILE`, by default `rds-ca.pem` beside the bootstrap
    /// (`$LAMBDA_TASK_ROOT`), which the build puts in every zip.
    pub fn from_env() -> anyhow::Result<Tls> {
        match std::env::var("QUARRY_DB_TLS").as_deref() {
            Ok("disable") => Ok(Tls::Disabled),
            Ok("verify-full") | Err(_) => {
                let file = std::env::var_os("QUARRY_DB_CA_FILE")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        PathBuf::from(
                            std::env::var_os("LAMBDA_TASK_ROOT").unwrap_or_else(|| ".".into()),
                        )
                        .join("rds-ca.pem")
                    });
                Tls::verified(&file)
            }
            Ok(other) => bail!("QUARRY_DB_TLS must be `verify-full` or `disable`, not `{other}`"),
        }
    }

    /// TLS trusting only the certificates in the PEM file `ca`.
    pub fn verified(ca: &std::path::Path) -> anyhow::Result<Tls> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::CertificateDer;
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca).with_context(|| {
            format!(
                "reading the database CA bundle {} (set QUARRY_DB_CA_FILE, or QUARRY_DB_TLS=disable for a local database)",
                ca.display()
            )
        })?;
        for cert in certs {
            let cert = cert.with_context(|| format!("parsing {}", ca.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("a certificate in {} is not usable", ca.display()))?;
        }
        if roots.is_empty() {
            bail!("{} holds no certificates", ca.display());
        }
        // RDS Proxy (`dbProxy`) presents an ACM certificate, which chains to
        // Amazon Trust Services' roots rather than to the RDS bundle.
        roots.extend(amazon_trust_roots());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tls::Verified(
            tokio_postgres_rustls::MakeRustlsConnect::new(config),
        ))
    }
}

/// Amazon Root CA 1 to 4 from Mozilla's root set (`webpki-roots`): the roots of
/// the ACM certificates RDS Proxy endpoints present. Only these four are taken,
/// so a database connection trusts AWS's CAs and nobody else's.
pub fn amazon_trust_roots() -> Vec<rustls_pki_types::TrustAnchor<'static>> {
    webpki_roots::TLS_SERVER_ROOTS
        .iter()
        .filter(|a| a.subject.windows(14).any(|w| w == b"Amazon Root CA"))
        .cloned()
        .collect()
}

/// Host, port and database name (`QUARRY_DB_HOST`, `QUARRY_DB_PORT`,
/// `QUARRY_DB_NAME`), each falling back to the secret's own field.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub dbname: Option<String>,
}

impl Target {
    pub fn from_env() -> Target {
        Target {
            host: std::env::var("QUARRY_DB_HOST").ok(),
            port: std::env::var("QUARRY_DB_PORT")
                .ok()
                .and_then(|p| p.parse().ok()),
            dbname: std::env::var("QUARRY_DB_NAME").ok(),
        }
    }

    fn config(&self, c: &Credentials) -> anyhow::Result<tokio_postgres::Config> {
        let host = self
            .host
            .clone()
            .or_else(|| c.host.clone())
            .context("no database host: set QUARRY_DB_HOST or put `host` in the secret")?;
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&host)
            .port(self.port.or(c.port).unwrap_or(5432))
            .dbname(
                self.dbname
                    .as_deref()
                    .or(c.dbname.as_deref())
                    .unwrap_or("quarry"),
            )
            .user(&c.username)
            .password(&c.password)
            .application_name("quarry-lambda")
            .connect_timeout(Duration::from_secs(5))
            .keepalives(true);
        Ok(cfg)
    }
}

/// Connects through whichever [`Login`] and [`Tls`] the function has.
pub struct Connector {
    pub login: Login,
    pub target: Target,
    pub tls: Tls,
}

type Connection = (tokio_postgres::Client, tokio::task::JoinHandle<()>);

impl Connector {
    async fn open(
        &self,
        cfg: &tokio_postgres::Config,
    ) -> Result<Connection, tokio_postgres::Error> {
        fn drive<S, T>(conn: tokio_postgres::Connection<S, T>) -> tokio::task::JoinHandle<()>
        where
            S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
            T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        {
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::warn!(error = %e, "database connection closed with an error");
                }
            })
        }
        match &self.tls {
            Tls::Verified(tls) => {
                let mut cfg = cfg.clone();
                cfg.ssl_mode(tokio_postgres::config::SslMode::Require);
                let (client, conn) = cfg.connect(tls.clone()).await?;
                Ok((client, drive(conn)))
            }
            Tls::Disabled => {
                let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
                Ok((client, drive(conn)))
            }
        }
    }

    /// A connection config for the current login. An unreadable secret is an
    /// error of the function's setup, reported by [`Connector::check`] at start.
    async fn current(&self, refresh: bool) -> Option<tokio_postgres::Config> {
        match &self.login {
            Login::Url(u) => u.parse().ok(),
            Login::Secret(s) => {
                let creds = if refresh {
                    s.refresh().await
                } else {
                    s.get().await
                };
                match creds.and_then(|c| self.target.config(&c)) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "no database login");
                        None
                    }
                }
            }
        }
    }

    /// Reads the login and opens one connection, naming what is wrong if it
    /// cannot (run at cold start, so a broken setup fails the init).
    pub async fn check(&self) -> anyhow::Result<()> {
        drop(self.client().await?);
        Ok(())
    }

    /// One connection outside any pool (migrations, admin commands); it closes
    /// when the client is dropped.
    pub async fn client(&self) -> anyhow::Result<tokio_postgres::Client> {
        let cfg = match &self.login {
            Login::Url(u) => u
                .parse::<tokio_postgres::Config>()
                .context("the database URL is not valid")?,
            Login::Secret(s) => self.target.config(&s.get().await?)?,
        };
        let user = cfg.get_user().unwrap_or("?").to_string();
        let (client, _driver) = self
            .connect_with(cfg)
            .await
            .with_context(|| format!("connecting to PostgreSQL as {user}"))?;
        Ok(client)
    }

    /// [`Connector::client`], tried again with growing pauses (1 s doubling to
    /// 20 s) for up to `budget`: at deploy time the database, its security-group
    /// rules and the endpoints may still be settling. Gives up with the last error.
    pub async fn patient_client(&self, budget: Duration) -> anyhow::Result<tokio_postgres::Client> {
        use backon::Retryable;
        let backoff = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(Duration::from_secs(20))
            .with_max_times(usize::MAX)
            .with_total_delay(Some(budget));
        (|| self.client())
            .retry(backoff)
            .notify(|e, pause| {
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = pause.as_millis() as u64,
                    "the database is not reachable yet; trying again")
            })
            .await
            .with_context(|| format!("gave up after trying for {} s", budget.as_secs()))
    }

    async fn connect_with(
        &self,
        cfg: tokio_postgres::Config,
    ) -> Result<Connection, tokio_postgres::Error> {
        match self.open(&cfg).await {
            Err(e) if e.code() == Some(&SqlState::INVALID_PASSWORD) => {
                // Rotated under us: read the secret again and retry once.
                tracing::warn!("the database refused the cached password; re-reading the secret");
                match self.current(true).await {
                    Some(fresh) => self.open(&fresh).await,
                    None => Err(e),
                }
            }
            other => other,
        }
    }
}

impl Connect for Connector {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> BoxFuture<'_, Result<Connection, tokio_postgres::Error>> {
        let fallback = pg_config.clone();
        Box::pin(async move {
            let cfg = self.current(false).await.unwrap_or(fallback);
            self.connect_with(cfg).await
        })
    }
}

/// A pool of `size` connections made by `connector`.
pub fn pool(connector: Connector, size: usize) -> anyhow::Result<Pool> {
    // The manager's own config is only a fallback: the connector builds each
    // connection's config from the current login.
    let placeholder = tokio_postgres::Config::new();
    let mgr = Manager::from_connect(
        placeholder,
        connector,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(mgr)
        .max_size(size)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(10)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?)
}

/// A role's connector from the environment: `QUARRY_DB_SECRET_<ROLE>_ARN` (as the
/// CDK stack sets) or else `QUARRY_<ROLE>_URL`.
pub fn connector_from_env(sdk: &aws_config::SdkConfig, role: &str) -> anyhow::Result<Connector> {
    let role = role.to_ascii_uppercase();
    let tls = Tls::from_env()?;
    if let Ok(arn) = std::env::var(format!("QUARRY_DB_SECRET_{role}_ARN")) {
        return Ok(Connector {
            login: Login::Secret(Arc::new(SecretCredentials::new(sdk, arn))),
            target: Target::from_env(),
            tls,
        });
    }
    if let Ok(url) = std::env::var(format!("QUARRY_{role}_URL")) {
        return Ok(Connector {
            login: Login::Url(url),
            target: Target::default(),
            tls,
        });
    }
    bail!("no database login for the {role} role: set QUARRY_DB_SECRET_{role}_ARN (the CDK stack does) or QUARRY_{role}_URL")
}

#[cfg(test)]
mod tests {
    use super::amazon_trust_roots;

    #[test]
    fn the_proxy_roots_are_amazon_root_ca_1_to_4_and_nothing_else() {
        let roots = amazon_trust_roots();
        let mut names: Vec<String> = roots
            .iter()
            .map(|a| {
                let s = String::from_utf8_lossy(&a.subject);
                let at = s.find("Amazon Root CA").expect("an Amazon root");
                s[at..at + 16].to_string()
            })
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "Amazon Root CA 1",
                "Amazon Root CA 2",
                "Amazon Root CA 3",
                "Amazon Root CA 4"
            ]
        );
    }
}
