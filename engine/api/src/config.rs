//! Configuration of `quarry serve` (and of the Lambda functions): embedded
//! defaults, then an optional TOML file, then `QUARRY_*` environment variables
//! (`QUARRY_JOBS__CONCURRENCY=4` sets `[jobs] concurrency`). Every setting is
//! documented in `docs/configuration.md`, generated from these types.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address `quarry serve` listens on. A non-loopback address requires at least one API key.
    pub listen: String,
    /// Directory of query packs (`*.yaml` + `*.sql`).
    pub queries_dir: PathBuf,
    /// Directory of source mappings (`*.yaml`).
    pub mappings_dir: PathBuf,
    /// Folder watched for new export files; unset disables the watcher.
    pub inbox: Option<PathBuf>,
    /// Folder for local state: stored results, the link-signing key, raw copies of ingested files.
    pub data_dir: PathBuf,
    /// Keep a copy of every ingested file under `<data_dir>/raw/<source>/<sha256>`, so that
    /// `quarry backfill` can apply a fixed mapping to files already delivered.
    pub keep_raw_files: bool,
    /// Run operations marked `raw_sql` (custom_complex_query); they also need the admin scope.
    pub allow_custom_sql: bool,
    pub api: ApiSettings,
    pub jobs: JobSettings,
    pub storage: StorageSettings,
    pub notify: NotifySettings,
    pub auth: AuthSettings,
    pub reload: ReloadSettings,
}

/// `[api]`: the HTTP surface.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest query string accepted, in bytes.
    pub max_query_bytes: usize,
    /// Hard limit in seconds for a synchronous answer; the pack's own timeout applies if lower.
    pub sync_timeout_seconds: u32,
    /// Database connections per pool (reader and writer each).
    pub pool_size: usize,
    /// Origins allowed by CORS (`*` for any); empty disables CORS headers.
    pub cors_allowed_origins: Vec<String>,
    /// Requests per second allowed per API key (or per client address with open access).
    pub rate_limit_per_second: u32,
    /// Requests a key may make in a burst above the steady rate.
    pub rate_limit_burst: u32,
    /// Cached answers larger than this many bytes are kept in object storage; the cache holds a pointer.
    pub cache_inline_max_bytes: usize,
    /// Seconds a client has to send a request's headers, from the connection's
    /// start or the end of its previous request; slower connections are closed.
    pub header_read_timeout_seconds: u64,
    /// Most client connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Seconds the server waits for the next part of a request body; slower
    /// bodies get 408.
    pub body_read_timeout_seconds: u64,
    /// A synchronous answer larger than this many bytes is stored and answered
    /// with a 303 redirect to a signed link (API Gateway and Lambda cannot
    /// return more than 6 MB).
    pub sync_answer_bytes: usize,
    /// Hard cap on any answer, synchronous or job, in bytes of JSON: past it the
    /// query stops and the caller gets a problem naming the cap. Memory per
    /// answer is bounded by it.
    pub max_answer_bytes: u64,
    /// Stream answers asked for as NDJSON or CSV (`Accept`) row batch by row
    /// batch from the database, with flat memory and no byte cap (the row cap
    /// still applies). Off where responses cannot stream (the Lambda runtime
    /// turns it off: its answers go through the buffered path and its 303 link).
    pub stream_answers: bool,
    /// Compress responses with gzip, br or zstd as `Accept-Encoding` asks. Off on
    /// Lambda, where API Gateway compresses (its `minimumCompressionSize`): a
    /// compressed body would leave Lambda base64-encoded.
    pub compress_answers: bool,
    /// Run light operations without a transaction of their own, setting the
    /// reader connection's statement timeout on its session only when a call
    /// needs another one (one round trip per call). Off, every call runs in its
    /// own read-only transaction with `SET LOCAL`: for poolers that pin a
    /// connection to its client on a session `SET`, as RDS Proxy does (the
    /// stack turns it off when it puts the proxy in front of the database).
    pub session_settings: bool,
    /// Largest `page_size` a caller may ask for.
    pub max_page_size: u64,
    /// Seconds the snapshot behind a paged answer (and so its cursors) lives.
    pub page_ttl_seconds: u64,
}

/// `[jobs]`: the asynchronous job runner.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct JobSettings {
    /// Jobs run at the same time by this process.
    pub concurrency: usize,
    /// Attempts per job before a transient failure becomes final.
    pub max_attempts: u32,
    /// First retry delay in milliseconds; doubles per attempt, with full jitter.
    pub backoff_base_ms: u64,
    /// Longest retry delay in milliseconds.
    pub backoff_max_ms: u64,
    /// Seconds a running job's lease lasts; the runner renews it every third of that. A job whose
    /// lease passed (its server died) is resumed, or failed once attempts are exhausted.
    pub lease_seconds: u64,
    /// How often the runner looks for due and interrupted jobs, in milliseconds.
    pub poll_interval_ms: u64,
    /// Results with more rows than this go to object storage behind a signed link.
    pub inline_max_rows: u64,
    /// Results whose JSON is larger than this many bytes go to object storage
    /// too, whatever their row count (a DynamoDB job item stops at 400 KB).
    pub inline_max_bytes: usize,
    /// Lifetime of a signed result link, in seconds.
    pub link_ttl_seconds: u64,
    /// Finished jobs (and their stored results) are deleted after this many hours.
    pub retention_hours: u64,
}

/// `[storage]`: object storage for large results (a local folder).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// Folder for stored results; default `<data_dir>/results`.
    pub results_dir: Option<PathBuf>,
    /// Secret that signs result links (hex or any string of 32+ characters). Unset: a random key is
    /// generated once and kept in `<data_dir>/signing.key` (mode 0600).
    pub signing_key: Option<String>,
}

/// `[notify]`: where job and system events go besides the log.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NotifySettings {
    /// Webhook URLs that receive every event as a JSON POST.
    pub webhooks: Vec<String>,
    /// When set, each webhook request carries `X-Quarry-Signature: sha256=<hmac of the body>`.
    pub webhook_secret: Option<String>,
    /// Delivery attempts per webhook and event (exponential backoff between them).
    pub webhook_attempts: u32,
    /// Timeout of one webhook request, in milliseconds.
    pub webhook_timeout_ms: u64,
}

/// `[auth]`: API keys (created with `quarry keys create`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// How often the server re-reads the key table, in seconds: a revoked key stops working within this.
    pub refresh_seconds: u64,
}

/// `[reload]`: pack reload without restart.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ReloadSettings {
    /// Watch the queries folder and reload packs when files change (SIGHUP always reloads).
    pub watch: bool,
    /// Wait this many milliseconds after the last change before reloading.
    pub debounce_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            queries_dir: "queries".into(),
            mappings_dir: "mappings".into(),
            inbox: None,
            data_dir: ".quarry".into(),
            keep_raw_files: true,
            allow_custom_sql: false,
            api: ApiSettings::default(),
            jobs: JobSettings::default(),
            storage: StorageSettings::default(),
            notify: NotifySettings::default(),
            auth: AuthSettings::default(),
            reload: ReloadSettings::default(),
        }
    }
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            max_body_bytes: 64 * 1024,
            max_query_bytes: 8 * 1024,
            sync_timeout_seconds: 30,
            pool_size: 16,
            cors_allowed_origins: Vec::new(),
            rate_limit_per_second: 50,
            rate_limit_burst: 100,
            cache_inline_max_bytes: 256 * 1024,
            header_read_timeout_seconds: 10,
            max_connections: 1024,
            body_read_timeout_seconds: 30,
            sync_answer_bytes: 4 * 1024 * 1024,
            max_answer_bytes: 64 * 1024 * 1024,
            stream_answers: true,
            compress_answers: true,
            session_settings: true,
            max_page_size: 10_000,
            page_ttl_seconds: 3600,
        }
    }
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            concurrency: 2,
            max_attempts: 3,
            backoff_base_ms: 500,
            backoff_max_ms: 30_000,
            lease_seconds: 30,
            poll_interval_ms: 1000,
            inline_max_rows: 1000,
            inline_max_bytes: 256 * 1024,
            link_ttl_seconds: 900,
            retention_hours: 168,
        }
    }
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            webhooks: Vec::new(),
            webhook_secret: None,
            webhook_attempts: 4,
            webhook_timeout_ms: 5000,
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            refresh_seconds: 30,
        }
    }
}

impl Default for ReloadSettings {
    fn default() -> Self {
        ReloadSettings {
            watch: true,
            debounce_ms: 500,
        }
    }
}

/// Top-level keys the environment may set (`QUARRY_<KEY>`, nested with `__`).
/// Other `QUARRY_*` variables (QUARRY_LOG, QUARRY_READER_URL, ...) belong to
/// other parts of the program and are not configuration-file settings.
const ENV_KEYS: &[&str] = &[
    "listen",
    "queries_dir",
    "mappings_dir",
    "inbox",
    "data_dir",
    "keep_raw_files",
    "allow_custom_sql",
    "api",
    "jobs",
    "storage",
    "notify",
    "auth",
    "reload",
];

impl Config {
    /// Defaults, then `file` (if given, it must exist), then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.is_file() {
                anyhow::bail!(
                    "configuration file {} does not exist; create it or drop --config",
                    f.display()
                );
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(Env::prefixed("QUARRY_").split("__").filter(|k| {
            // The filter may see the key before or after `__` becomes `.`.
            let first = k.as_str().split("__").next().unwrap_or("");
            let first = first.split('.').next().unwrap_or("");
            ENV_KEYS.iter().any(|e| e.eq_ignore_ascii_case(first))
        }));
        let cfg: Config = fig.extract().map_err(|e| {
            let msgs: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
            anyhow::anyhow!(
                "invalid configuration: {}; see docs/configuration.md",
                msgs.join("; ")
            )
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values serde cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if self.jobs.concurrency == 0 {
            problems.push("jobs.concurrency must be at least 1");
        }
        if self.api.header_read_timeout_seconds == 0 {
            problems.push("api.header_read_timeout_seconds must be at least 1");
        }
        if self.api.max_connections == 0 {
            problems.push("api.max_connections must be at least 1");
        }
        if self.api.body_read_timeout_seconds == 0 {
            problems.push("api.body_read_timeout_seconds must be at least 1");
        }
        if self.api.max_answer_bytes < 1024 {
            problems.push("api.max_answer_bytes must be at least 1024");
        }
        if self.api.sync_answer_bytes as u64 > self.api.max_answer_bytes {
            problems.push("api.sync_answer_bytes must not exceed api.max_answer_bytes");
        }
        if self.api.max_page_size == 0 {
            problems.push("api.max_page_size must be at least 1");
        }
        if self.api.page_ttl_seconds == 0 {
            problems.push("api.page_ttl_seconds must be at least 1");
        }
        if self.jobs.max_attempts == 0 {
            problems.push("jobs.max_attempts must be at least 1");
        }
        if self.jobs.lease_seconds < 2 {
            problems.push("jobs.lease_seconds must be at least 2");
        }
        if self.api.rate_limit_per_second == 0 {
            problems.push("api.rate_limit_per_second must be at least 1");
        }
        if self.api.pool_size == 0 {
            problems.push("api.pool_size must be at least 1");
        }
        if self.api.sync_timeout_seconds == 0 {
            problems.push("api.sync_timeout_seconds must be at least 1");
        }
        for w in &self.notify.webhooks {
            match url::Url::parse(w) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                _ => problems.push("notify.webhooks holds a URL that is not http(s)"),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("invalid configuration: {}", problems.join("; "))
        }
    }

    pub fn results_dir(&self) -> PathBuf {
        self.storage
            .results_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("results"))
    }
}

/// `docs/configuration.md`: every setting, its environment variable, default and meaning.
pub fn reference_markdown() -> String {
    let schema = schemars::schema_for!(Config);
    let root = schema.as_value();
    let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated by `quarry config docs` from the types in `engine/api/src/config.rs`; do not edit.\n\n\
         `quarry serve` reads, in order (later wins): the defaults below, the TOML file given with\n\
         `--config FILE` (or `QUARRY_CONFIG`), and environment variables. A setting `[jobs] concurrency`\n\
         is the variable `QUARRY_JOBS__CONCURRENCY`; lists are written as `[\"a\",\"b\"]`.\n\
         Unknown keys are errors. `quarry config show` prints the effective configuration.\n\n\
         The database URL is not a file setting: it is `--database-url` / `DATABASE_URL` (owner role),\n\
         with `QUARRY_READER_URL` / `QUARRY_WRITER_URL` (or `QUARRY_READER_PASSWORD` /\n\
         `QUARRY_WRITER_PASSWORD`) for the other roles; logs are set by `QUARRY_LOG` and `QUARRY_LOG_FORMAT`.\n\n",
    );
    let mut top = Vec::new();
    let mut sections = Vec::new();
    if let Some(props) = root.get("properties").and_then(|p| p.as_object()) {
        for (name, prop) in props {
            if let Some(def) = section_ref(prop).and_then(|r| resolve(root, r)) {
                sections.push((name.clone(), def));
            } else {
                top.push((name.clone(), prop.clone()));
            }
        }
    }
    out.push_str(
        "## Top level\n\n| Setting | Environment | Default | Meaning |\n|---|---|---|---|\n",
    );
    for (name, prop) in &top {
        row(&mut out, "", name, prop, defaults.get(name));
    }
    for (section, def) in &sections {
        let title = def
            .get("description")
            .and_then(|d| d.as_str())
            .unwrap_or("");
        out.push_str(&format!(
            "\n## [{section}]\n\n{title}\n\n| Setting | Environment | Default | Meaning |\n|---|---|---|---|\n"
        ));
        if let Some(props) = def.get("properties").and_then(|p| p.as_object()) {
            for (name, prop) in props {
                let d = defaults.get(section).and_then(|s| s.get(name));
                row(&mut out, section, name, prop, d);
            }
        }
    }
    out
}

fn section_ref(prop: &serde_json::Value) -> Option<&str> {
    prop.get("$ref").and_then(|r| r.as_str())
}

fn resolve<'a>(root: &'a serde_json::Value, r: &str) -> Option<&'a serde_json::Value> {
    let name = r.rsplit('/').next()?;
    root.get("$defs")?.get(name)
}

fn row(
    out: &mut String,
    section: &str,
    name: &str,
    prop: &serde_json::Value,
    default: Option<&serde_json::Value>,
) {
    let env = if section.is_empty() {
        format!("QUARRY_{}", name.to_uppercase())
    } else {
        format!("QUARRY_{}__{}", section.to_uppercase(), name.to_uppercase())
    };
    let desc = prop
        .get("description")
        .and_then(|d| d.as_str())
        .unwrap_or("")
        .replace('\n', " ")
        .replace('|', "\\|");
    let default = match default {
        None | Some(serde_json::Value::Null) => "unset".to_string(),
        Some(v) => format!("`{v}`"),
    };
    let key = if section.is_empty() {
        name.to_string()
    } else {
        format!("{section}.{name}")
    };
    out.push_str(&format!("| `{key}` | `{env}` | {default} | {desc} |\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn file_and_environment_override_defaults_and_typos_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "q.toml",
                "listen = \"127.0.0.1:9000\"\n[jobs]\nconcurrency = 5\n",
            )?;
            jail.set_env("QUARRY_JOBS__MAX_ATTEMPTS", "7");
            jail.set_env("QUARRY_LOG", "debug");
            let c = Config::load(Some(Path::new("q.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.listen, "127.0.0.1:9000");
            assert_eq!(c.jobs.concurrency, 5);
            assert_eq!(c.jobs.max_attempts, 7);
            assert_eq!(c.jobs.lease_seconds, 30);
            jail.create_file("bad.toml", "[jobs]\nconcurency = 5\n")?;
            let e = Config::load(Some(Path::new("bad.toml")))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("concurency"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn the_reference_lists_every_setting() {
        let md = reference_markdown();
        for s in [
            "`listen`",
            "`jobs.concurrency`",
            "QUARRY_API__RATE_LIMIT_PER_SECOND",
            "`notify.webhooks`",
        ] {
            assert!(md.contains(s), "{s} missing");
        }
    }
}
