//! Who is calling, and how fast they may. API keys (`qk_<id>_<secret>`, sent as
//! `Authorization: Bearer …` or `X-Api-Key`) are checked against the sha256 of
//! their secret; each key (or, with open access, each client address) has its own
//! GCRA rate limiter from `governor`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
pub use quarry_db::store::Scope;
use quarry_db::store::{hash_secret, split_key, ApiKey};

use crate::{ApiError, AppState};

/// The caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key's id; `None` for open (keyless, loopback) access.
    pub key_id: Option<String>,
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl Principal {
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }

    /// `Forbidden` naming the missing scope unless the caller has it.
    pub fn require(&self, scope: Scope, what: &str) -> Result<(), ApiError> {
        if self.has(scope) {
            return Ok(());
        }
        Err(ApiError::Forbidden(match &self.key_id {
            Some(id) => format!(
                "{what} needs the `{}` scope, which key {id} does not have; create a key with it (quarry keys create --scope {})",
                scope.as_str(),
                scope.as_str()
            ),
            None => format!(
                "{what} needs the `{}` scope, which open access never has; create an API key with it (quarry keys create --scope {}) and send it as `Authorization: Bearer <key>`",
                scope.as_str(),
                scope.as_str()
            ),
        }))
    }
}

/// How callers are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Keys from the key table; with none configured and a loopback address,
    /// read and jobs access is open.
    Keys { loopback: bool },
    /// No key table to read (a runtime holding only the reader role, as the API
    /// function on AWS): each presented key is checked with
    /// `quarry_auth.check_key` and remembered for [`CHECKED_KEY_TTL`]. Never open.
    Checked,
}

/// How long a key checked in the database is trusted before it is checked again
/// (so a revocation takes effect within this time).
pub const CHECKED_KEY_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Failed authentications (a missing, unknown or wrong key) one client address
/// may make in a burst; after that one per second, and the address is answered
/// 429 until then, before any key is looked up in the database.
pub const AUTH_FAILURE_BURST: u32 = 10;
/// Addresses tracked for failed authentications; past this the oldest record is
/// forgotten wholesale (a flood of addresses cannot grow memory without bound).
const AUTH_FAILURE_ADDRESSES: usize = 100_000;

/// The active keys and the rate limiters.
pub struct Auth {
    mode: AuthMode,
    keys: RwLock<HashMap<String, ApiKey>>,
    /// With [`AuthMode::Checked`]: when each remembered key was checked.
    checked_at: RwLock<HashMap<String, std::time::Instant>>,
    limiters: RwLock<HashMap<String, Arc<DefaultDirectRateLimiter>>>,
    default_rate: NonZeroU32,
    burst: NonZeroU32,
    /// Failed authentications per client address, and addresses refused until when.
    failures: RwLock<HashMap<IpAddr, Arc<DefaultDirectRateLimiter>>>,
    blocked: RwLock<HashMap<IpAddr, std::time::Instant>>,
}

impl Auth {
    pub fn new(mode: AuthMode, rate_per_second: u32, burst: u32) -> Self {
        let default_rate = NonZeroU32::new(rate_per_second).unwrap_or(NonZeroU32::MIN);
        Auth {
            mode,
            keys: RwLock::new(HashMap::new()),
            checked_at: RwLock::new(HashMap::new()),
            limiters: RwLock::new(HashMap::new()),
            default_rate,
            burst: NonZeroU32::new(burst.max(rate_per_second)).unwrap_or(default_rate),
            failures: RwLock::new(HashMap::new()),
            blocked: RwLock::new(HashMap::new()),
        }
    }

    /// 429 while `addr` is over its budget of failed authentications.
    fn refused(&self, addr: Option<IpAddr>) -> Option<ApiError> {
        let addr = addr?;
        let until = *self.blocked.read().ok()?.get(&addr)?;
        let now = std::time::Instant::now();
        (now < until).then(|| ApiError::RateLimited {
            retry_after_secs: (until - now).as_secs_f64().ceil().max(1.0) as u64,
        })
    }

    /// Counts a failed authentication of `addr`; 429 once it is over budget.
    fn failed(&self, addr: Option<IpAddr>) -> Option<ApiError> {
        let addr = addr?;
        let limiter = {
            let existing = self.failures.read().ok()?.get(&addr).cloned();
            match existing {
                Some(l) => l,
                None => {
                    let mut m = self.failures.write().ok()?;
                    if m.len() >= AUTH_FAILURE_ADDRESSES {
                        m.clear();
                    }
                    m.entry(addr)
                        .or_insert_with(|| {
                            Arc::new(RateLimiter::direct(
                                Quota::per_second(NonZeroU32::MIN).allow_burst(
                                    NonZeroU32::new(AUTH_FAILURE_BURST).unwrap_or(NonZeroU32::MIN),
                                ),
                            ))
                        })
                        .clone()
                }
            }
        };
        let not_until = limiter.check().err()?;
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        if let Ok(mut b) = self.blocked.write() {
            if b.len() >= AUTH_FAILURE_ADDRESSES {
                b.clear();
            }
            b.insert(addr, std::time::Instant::now() + wait);
        }
        Some(ApiError::RateLimited {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        })
    }

    /// Replaces the key set (at start and on every refresh).
    pub fn set_keys(&self, keys: Vec<ApiKey>) {
        let map: HashMap<String, ApiKey> = keys.into_iter().map(|k| (k.id.clone(), k)).collect();
        if let Ok(mut l) = self.limiters.write() {
            // Drop limiters of revoked keys (and of anonymous callers once keys exist).
            l.retain(|k, _| map.contains_key(k) || (map.is_empty() && k.starts_with("addr:")));
        }
        if let Ok(mut k) = self.keys.write() {
            *k = map;
        }
    }

    pub fn key_count(&self) -> usize {
        self.keys.read().map(|k| k.len()).unwrap_or(0)
    }

    /// True when keyless callers get read and jobs access.
    pub fn is_open(&self) -> bool {
        match self.mode {
            AuthMode::Keys { loopback } => loopback && self.key_count() == 0,
            AuthMode::Checked => false,
        }
    }

    /// With [`AuthMode::Checked`]: whether `presented` must be checked in the
    /// database before [`Auth::authenticate`] can decide (unknown, stale, or a
    /// different secret than the one remembered).
    fn needs_check(&self, presented: &str) -> bool {
        if self.mode != AuthMode::Checked {
            return false;
        }
        let Some((id, secret)) = split_key(presented) else {
            return false;
        };
        let fresh = self
            .checked_at
            .read()
            .ok()
            .and_then(|m| m.get(id).map(|t| t.elapsed() < CHECKED_KEY_TTL))
            .unwrap_or(false);
        let same = self
            .keys
            .read()
            .ok()
            .and_then(|k| k.get(id).map(|k| k.secret_sha256 == hash_secret(secret)))
            .unwrap_or(false);
        !(fresh && same)
    }

    /// Records the outcome of a database check of key `id`.
    fn remember(&self, id: &str, key: Option<ApiKey>) {
        if let (Ok(mut keys), Ok(mut at)) = (self.keys.write(), self.checked_at.write()) {
            match key {
                Some(k) => {
                    keys.insert(id.to_string(), k);
                    at.insert(id.to_string(), std::time::Instant::now());
                }
                None => {
                    keys.remove(id);
                    at.remove(id);
                }
            }
        }
    }

    fn authenticate(&self, presented: Option<&str>) -> Result<Principal, ApiError> {
        let Some(presented) = presented else {
            if self.is_open() {
                return Ok(Principal {
                    key_id: None,
                    name: "anonymous".into(),
                    scopes: vec![Scope::Read, Scope::Jobs],
                });
            }
            return Err(ApiError::Unauthorized(
                "this endpoint needs an API key: send `Authorization: Bearer <key>` (keys are made with `quarry keys create`)".into(),
            ));
        };
        let invalid = || {
            ApiError::Unauthorized(
                "the API key is not valid (unknown, revoked or mistyped); check it or ask for a new one".into(),
            )
        };
        let (id, secret) = split_key(presented).ok_or_else(invalid)?;
        let keys = self.keys.read().map_err(|_| invalid())?;
        let key = keys.get(id).ok_or_else(invalid)?;
        // Both sides are sha256 digests of high-entropy secrets, so comparing them
        // leaks nothing useful about the secret through timing.
        if hash_secret(secret) != key.secret_sha256 {
            return Err(invalid());
        }
        Ok(Principal {
            key_id: Some(key.id.clone()),
            name: key.name.clone(),
            scopes: key.scopes.clone(),
        })
    }

    fn limiter(&self, bucket: &str, rate: Option<u32>) -> Arc<DefaultDirectRateLimiter> {
        if let Some(l) = self
            .limiters
            .read()
            .ok()
            .and_then(|m| m.get(bucket).cloned())
        {
            return l;
        }
        let per_second = rate.and_then(NonZeroU32::new).unwrap_or(self.default_rate);
        let burst = if rate.is_some() {
            per_second.saturating_mul(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN))
        } else {
            self.burst
        };
        let l = Arc::new(RateLimiter::direct(
            Quota::per_second(per_second).allow_burst(burst),
        ));
        if let Ok(mut m) = self.limiters.write() {
            return m.entry(bucket.to_string()).or_insert(l).clone();
        }
        l
    }

    /// Rate-limits `principal` (by key, or by client address with open access).
    fn admit(&self, principal: &Principal, addr: Option<IpAddr>) -> Result<(), ApiError> {
        let (bucket, rate) = match &principal.key_id {
            Some(id) => (
                id.clone(),
                self.keys
                    .read()
                    .ok()
                    .and_then(|k| k.get(id).and_then(|k| k.rate_per_second)),
            ),
            None => (
                format!("addr:{}", addr.map(|a| a.to_string()).unwrap_or_default()),
                None,
            ),
        };
        match self.limiter(&bucket, rate).check() {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(ApiError::RateLimited {
                    retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                })
            }
        }
    }
}

fn presented_key(req: &Request) -> Option<&str> {
    let h = req.headers();
    if let Some(v) = h
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        return Some(v.strip_prefix("Bearer ").unwrap_or(v).trim());
    }
    h.get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Paths anyone may call: liveness, the API description and signed links (the
/// signature is the credential).
fn is_public(path: &str) -> bool {
    path == "/health"
        || path == "/openapi.json"
        || path.starts_with("/results/")
        || crate::ui::is_ui_path(path)
}

/// Middleware: authenticates, rate-limits and stores the [`Principal`] in the
/// request's extensions.
pub async fn layer(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    if is_public(req.uri().path()) || req.method() == axum::http::Method::OPTIONS {
        return next.run(req).await;
    }
    let addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(presented) = presented_key(&req).filter(|p| st.auth.needs_check(p)) {
        // An address guessing keys waits before its next guess reaches the database.
        if let Some(e) = st.auth.refused(addr) {
            metrics::counter!("quarry_rate_limited_total").increment(1);
            return e.into_response();
        }
        let checked = match st.reader.get().await {
            Ok(c) => quarry_db::store::check_key(&c, presented).await,
            Err(e) => Err(anyhow::anyhow!("{e}")),
        };
        match checked {
            Ok(key) => {
                if let Some((id, _)) = split_key(presented) {
                    st.auth.remember(id, key);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not check an API key in the database");
                return ApiError::DatabaseUnavailable.into_response();
            }
        }
    }
    let principal = match st.auth.authenticate(presented_key(&req)) {
        Ok(p) => p,
        Err(e) => {
            metrics::counter!("quarry_auth_failures_total").increment(1);
            if let Some(limited) = st.auth.refused(addr).or_else(|| st.auth.failed(addr)) {
                metrics::counter!("quarry_rate_limited_total").increment(1);
                return limited.into_response();
            }
            return e.into_response();
        }
    };
    if let Err(e) = st.auth.admit(&principal, addr) {
        metrics::counter!("quarry_rate_limited_total").increment(1);
        return e.into_response();
    }
    tracing::debug!(
        key = principal.key_id.as_deref().unwrap_or("open"),
        "authenticated"
    );
    req.extensions_mut().insert(principal);
    next.run(req).await
}
