//! Delivery: each due delivery is one attempt in a task of its own, with a timeout, and its
//! outcome (delivered, retry at, gave up) is recorded whatever happens.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use panda_core::{Clock, NotifierKind};
use panda_store::{
    AlertStore, DeliveryOutcome, DueDelivery, HistoryStore, JobStore, LogStore, MonitorStore,
    ServiceStore, SlotStore, StoreResult,
};
use sha2::Sha256;

use super::payload::SlackBody;
use super::{Alerter, AlerterConfig};

/// The header carrying a generic webhook's signature: `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Panda-Signature";

impl<S> Alerter<S>
where
    S: AlertStore
        + HistoryStore
        + JobStore
        + LogStore
        + ServiceStore
        + SlotStore
        + MonitorStore
        + ?Sized
        + 'static,
{
    /// Starts an attempt for each due delivery (up to the in-flight limit) and returns how
    /// many it started; they finish in the background.
    pub async fn deliver(&self) -> StoreResult<usize> {
        let free = self.in_flight.available_permits();
        if free == 0 {
            return Ok(0);
        }
        // Held long enough for the request to time out and be recorded.
        let hold = self.config.request_timeout * 2 + Duration::from_secs(5);
        let due = self
            .store
            .alert_deliveries_due(
                self.clock.now(),
                u32::try_from(free).unwrap_or(u32::MAX),
                hold,
            )
            .await?;
        let started = due.len();
        for item in due {
            let Ok(permit) = Arc::clone(&self.in_flight).acquire_owned().await else {
                break;
            };
            let store = Arc::clone(&self.store);
            let clock = Arc::clone(&self.clock);
            let config = Arc::clone(&self.config);
            let http = self.http.clone();
            self.deliveries.spawn(async move {
                let _permit = permit;
                attempt_delivery(&*store, &*clock, &config, &http, item).await;
            });
        }
        Ok(started)
    }

    /// Waits until every delivery attempt under way has ended; each records its outcome (or
    /// logs that it could not) before it ends.
    pub async fn wait_for_deliveries(&self) {
        self.deliveries.close();
        self.deliveries.wait().await;
        self.deliveries.reopen();
    }
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// One attempt of one delivery, recorded whatever happens.
async fn attempt_delivery(
    store: &(impl AlertStore + ?Sized),
    clock: &dyn Clock,
    config: &AlerterConfig,
    http: &reqwest::Client,
    due: DueDelivery,
) {
    let DueDelivery { delivery, alert } = due;
    let bytes = match delivery.notifier {
        NotifierKind::Webhook => serde_json::to_vec(&alert.body),
        NotifierKind::Slack => serde_json::to_vec(&SlackBody::of(&alert)),
    }
    .unwrap_or_default();
    let mut request = http
        .post(&delivery.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Panda-Event", alert.kind.as_str())
        .header("X-Panda-Delivery", delivery.id.to_string());
    if delivery.notifier == NotifierKind::Webhook
        && let Some(secret) = &config.signing_secret
    {
        request = request.header(SIGNATURE_HEADER, signature(secret, &bytes));
    }
    let error = match request.body(bytes).send().await {
        Ok(response) if response.status().is_success() => None,
        Ok(response) => Some(format!("HTTP {}", response.status())),
        Err(err) if err.is_timeout() => Some(format!(
            "no answer within {}",
            panda_core::human::exact(config.request_timeout)
        )),
        // Recorded and shown: without the URL, whose path may be the endpoint's credential.
        Err(err) => Some(error_chain(&err.without_url())),
    };
    let now = clock.now();
    let outcome = match error {
        None => DeliveryOutcome::Delivered,
        Some(error) => {
            let wait = config
                .retry
                .retry_after(delivery.attempts, &mut rand::rng())
                .and_then(|wait| chrono::Duration::from_std(wait).ok());
            match wait {
                Some(wait) => DeliveryOutcome::Retry {
                    error,
                    at: now + wait,
                },
                None => DeliveryOutcome::GaveUp { error },
            }
        }
    };
    match &outcome {
        DeliveryOutcome::Delivered => crate::metrics::alert_delivery(alert.kind.as_str(), true),
        DeliveryOutcome::GaveUp { .. } => {
            crate::metrics::alert_delivery(alert.kind.as_str(), false)
        }
        DeliveryOutcome::Retry { .. } => {}
    }
    match &outcome {
        DeliveryOutcome::Delivered => tracing::info!(
            alert = %alert.id, url = %delivery.url, attempt = delivery.attempts, "alert delivered"
        ),
        DeliveryOutcome::Retry { error, at } => tracing::warn!(
            alert = %alert.id, url = %delivery.url, attempt = delivery.attempts, %error,
            retry_at = %at, "alert delivery failed; will retry"
        ),
        DeliveryOutcome::GaveUp { error } => tracing::error!(
            alert = %alert.id, url = %delivery.url, attempt = delivery.attempts, %error,
            "alert delivery failed for the last time"
        ),
    }
    if let Err(err) = store
        .alert_delivery_record(delivery.id, &outcome, now)
        .await
    {
        // Not recorded: the hold runs out and the delivery is attempted again.
        tracing::warn!(delivery = %delivery.id, error = %err, "could not record an alert delivery");
    }
}

/// An error with its causes: reqwest's own message rarely says what went wrong.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_in_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
