//! The local notifier: every event to the log, and to each configured webhook
//! as a JSON POST, retried with exponential backoff (backon) in the background
//! so a slow receiver never holds up a job.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use hmac::{Hmac, Mac};
use quarry_core::jobs::{Event, EventType};
use quarry_core::ports::{Notifier, PortError, PortResult};
use sha2::Sha256;

use crate::config::NotifySettings;

/// Logs events and posts them to webhooks.
pub struct LocalNotifier {
    client: reqwest::Client,
    settings: Arc<NotifySettings>,
}

impl LocalNotifier {
    pub fn new(settings: NotifySettings) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.webhook_timeout_ms.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("quarry/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(LocalNotifier {
            client,
            settings: Arc::new(settings),
        })
    }
}

/// `sha256=<hex hmac>` of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    }
}

#[async_trait]
impl Notifier for LocalNotifier {
    async fn publish(&self, event: &Event) -> PortResult<()> {
        let body = serde_json::to_vec(event)
            .map_err(|e| PortError::Invalid(format!("event not serializable: {e}")))?;
        match event.kind {
            EventType::SystemError => {
                tracing::error!(event = %String::from_utf8_lossy(&body), "quarry event")
            }
            _ => tracing::info!(event = %String::from_utf8_lossy(&body), "quarry event"),
        }
        for url in &self.settings.webhooks {
            let client = self.client.clone();
            let url = url.clone();
            let body = body.clone();
            let settings = self.settings.clone();
            let event_id = event.id.clone();
            tokio::spawn(async move {
                let send = || async {
                    let mut req = client
                        .post(&url)
                        .header("content-type", "application/cloudevents+json")
                        .header("x-quarry-event-id", &event_id)
                        .body(body.clone());
                    if let Some(secret) = &settings.webhook_secret {
                        req = req.header("x-quarry-signature", signature(secret, &body));
                    }
                    let resp = req.send().await?;
                    resp.error_for_status().map(|_| ())
                };
                let attempts = settings.webhook_attempts.max(1) as usize;
                let outcome = send
                    .retry(
                        ExponentialBuilder::default()
                            .with_min_delay(Duration::from_millis(200))
                            .with_max_delay(Duration::from_secs(10))
                            .with_max_times(attempts - 1)
                            .with_jitter(),
                    )
                    .notify(|e, wait| {
                        tracing::warn!(webhook = %url, error = %e, retry_in_ms = wait.as_millis() as u64, "webhook delivery failed; retrying")
                    })
                    .await;
                match outcome {
                    Ok(()) => {
                        tracing::debug!(webhook = %url, event = %event_id, "webhook delivered")
                    }
                    Err(e) => {
                        tracing::error!(webhook = %url, event = %event_id, error = %e, attempts, "webhook delivery gave up")
                    }
                }
            });
        }
        Ok(())
    }
}
