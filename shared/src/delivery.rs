//! The delivery use-case: what the worker does with one delivery-queue
//! message. Read the endpoint as stored (never a cached copy), claim the
//! delivery, decide (cancel, park, hold, send), send, record; the answer is
//! an [`Outcome`] that the Lambda crate turns into SQS actions (delete, hide,
//! dead-letter). Nothing here knows about SQS batches.
//!
//! Order of one message:
//!
//! 1. the endpoint, read consistently from the table: a DELETE or a pause
//!    that has answered is seen by every worker at once, whatever the
//!    configuration caches of the API instances still hold;
//! 2. the claim (one conditional write): only one worker sends a due attempt;
//! 3. deleted → `cancelled`; paused → parked; breaker open → held;
//! 4. the endpoint's secrets are opened, for this endpoint only: a secret
//!    that does not open fails this endpoint's deliveries, nobody else's;
//! 5. send, record the attempt, decide what comes next.

use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use crate::backoff::{with_backoff, BRIEF_BACKOFF_MS};
use crate::breaker::{Breakers, Gate, Health, TRIP_AFTER};
use crate::domain::Endpoint;
use crate::fanout::DeliveryMessage;
use crate::lifecycle::{outage_backoff_seconds, visibility_until, AttemptError, Sent, Step};
use crate::lifecycle::{Delivery, RetrySchedule};
use crate::queue::Outcome;
use crate::render::prepare;
use crate::store::Claim;
use crate::{App, Error};

/// Extra lease beyond the endpoint's timeout, to record the attempt.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// The delivery worker of one process: the app's clients and this process's
/// circuit breakers.
pub struct Deliverer {
    pub app: Arc<App>,
    pub breakers: Breakers,
}

impl Deliverer {
    /// A worker over the app's clients.
    pub fn new(app: Arc<App>) -> Self {
        Deliverer {
            app,
            breakers: Breakers::default(),
        }
    }

    /// Handles one delivery-queue message body.
    pub async fn handle(&self, body: &str) -> Outcome {
        let message: DeliveryMessage = match serde_json::from_str(body) {
            Ok(m) => m,
            Err(e) => {
                return Outcome::DeadLetter(format!("unparseable delivery message: {e}"));
            }
        };
        let span = tracing::info_span!(
            "delivery",
            delivery_id = %message.delivery_id,
            endpoint_id = %message.endpoint_id,
            partner_id = %message.partner_id
        );
        self.deliver(&message).instrument(span).await
    }

    async fn deliver(&self, m: &DeliveryMessage) -> Outcome {
        let app = &self.app;
        // The endpoint as stored now, secrets still sealed: checked against
        // the table at claim time, never against a cache.
        let stored = match app
            .store
            .get_endpoint_sealed(&m.partner_id, &m.endpoint_id)
            .await
        {
            Ok(e) => e,
            Err(e) => {
                log_aws(&e, "could not read the endpoint");
                return Outcome::RetryAfterOutage;
            }
        };
        let timeout = Duration::from_millis(u64::from(
            stored
                .as_ref()
                .map(|e| e.timeout_ms)
                .unwrap_or(crate::domain::DEFAULT_TIMEOUT_MS),
        ));
        let now = Utc::now();
        let mut delivery = match app
            .store
            .claim_delivery(&m.delivery_id, now, timeout + LEASE_MARGIN)
            .await
        {
            Ok(Claim::Claimed(d)) => d,
            Ok(Claim::Finished(d)) => {
                tracing::info!(status = ?d.status, "already finished; acknowledged without sending");
                return Outcome::Ack;
            }
            Ok(Claim::Parked) => {
                tracing::info!("parked on a paused endpoint; re-activation queues it again");
                return Outcome::Ack;
            }
            Ok(Claim::Missing) => {
                tracing::warn!("no such delivery; acknowledged");
                return Outcome::Ack;
            }
            Ok(Claim::NotDue(at)) | Ok(Claim::Leased(at)) => {
                return Outcome::RetryIn(visibility_until(at, now));
            }
            Err(e) => {
                log_aws(&e, "could not claim the delivery");
                return Outcome::RetryAfterOutage;
            }
        };
        let Some(endpoint) = stored else {
            delivery.cancel("endpoint deleted", now);
            return self.finish(delivery, Step::Finished).await;
        };
        if !endpoint.active {
            return self.park(delivery, &endpoint, now).await;
        }
        if let Gate::Open(until) = self.breakers.gate(&endpoint.id, now) {
            // Held without an attempt, so a hung partner cannot hold the pool.
            delivery.hold(
                format!(
                    "held: the endpoint timed out {TRIP_AFTER} times in a row; next try after {}",
                    until.to_rfc3339()
                ),
                until,
                now,
            );
            let wait = visibility_until(until, now) as u32;
            return self.finish(delivery, Step::RetryIn(wait)).await;
        }
        let schedule = endpoint.retry_schedule.clone();
        let endpoint = match app.store.open_endpoint(endpoint).await {
            Ok(e) => e,
            Err(e) => return self.unopenable(delivery, &e, &schedule, now).await,
        };
        let step = self.attempt(&endpoint, &mut delivery, now).await;
        self.finish(delivery, step).await
    }

    /// The endpoint is paused: hold the delivery, without attempts, until it
    /// is re-activated.
    async fn park(
        &self,
        mut delivery: Delivery,
        endpoint: &Endpoint,
        now: DateTime<Utc>,
    ) -> Outcome {
        let open = delivery.clone();
        let reason = endpoint
            .paused_reason
            .clone()
            .unwrap_or_else(|| "endpoint paused".into());
        delivery.park(reason, now);
        match self.app.store.park_delivery(&delivery, endpoint).await {
            Ok(true) => {
                tracing::info!("endpoint paused; delivery parked until it is re-activated");
                crate::telemetry::delivery("parked");
                Outcome::Ack
            }
            Ok(false) => {
                // The endpoint changed under us (re-activated, deleted): release and look again.
                tracing::info!("endpoint changed while parking; trying again");
                self.finish(open, Step::RetryIn(1)).await
            }
            Err(e) => {
                log_aws(&e, "could not park the delivery");
                Outcome::RetryAfterOutage
            }
        }
    }

    /// The endpoint's secrets could not be opened. KMS unreachable: the
    /// delivery waits (no attempt spent) and says why. A value that does not
    /// open (tampered, copied, malformed) will not open later either: the
    /// attempt is recorded as unsendable with the reason, so the schedule
    /// runs and the partner sees it in the history; only this endpoint's
    /// deliveries are touched.
    async fn unopenable(
        &self,
        mut delivery: Delivery,
        error: &Error,
        schedule: &RetrySchedule,
        now: DateTime<Utc>,
    ) -> Outcome {
        tracing::warn!(error = %error.detail(), aws_code = error.aws_code().unwrap_or_default(), "the endpoint's secrets could not be opened");
        if matches!(error, Error::Unavailable(_)) {
            let received = delivery.attempts.len() as u32 + 1;
            let wait = outage_backoff_seconds(received).max(10);
            let until = now + chrono::Duration::seconds(i64::from(wait));
            delivery.hold(
                format!(
                    "waiting: the endpoint's secrets could not be opened (key service unavailable); next try after {}",
                    until.to_rfc3339()
                ),
                until,
                now,
            );
            return self.finish(delivery, Step::RetryIn(wait as u32)).await;
        }
        let mut sent = Sent::unsendable(
            "the endpoint's secret could not be opened; set it again (PATCH the endpoint)".into(),
        );
        // Unlike other unsendable attempts this one is retried by the
        // schedule: the partner may set the secret again meanwhile.
        sent.error = Some(AttemptError::Secret);
        sent.response = sent.detail.clone();
        let step = delivery.record(&sent, schedule, now);
        delivery.reason = sent.detail.clone();
        self.finish(delivery, step).await
    }

    /// Makes one attempt and records it on the delivery; what comes next.
    pub async fn attempt(&self, endpoint: &Endpoint, d: &mut Delivery, now: DateTime<Utc>) -> Step {
        let sent = match prepare(endpoint, &d.event, &d.id, now.timestamp()) {
            Ok(request) => {
                self.app
                    .sender
                    .send(
                        &request,
                        Duration::from_millis(u64::from(endpoint.timeout_ms)),
                    )
                    .await
            }
            Err(reason) => Sent::unsendable(reason),
        };
        let step = d.record(&sent, &endpoint.retry_schedule, now);
        if sent.status.is_some() {
            crate::telemetry::attempt_latency(sent.duration);
        }
        let health = if sent.error == Some(AttemptError::Timeout) {
            Health::TimedOut
        } else {
            Health::Answered
        };
        self.breakers.record(&endpoint.id, health, Utc::now());
        if !sent.is_success() {
            tracing::info!(attempt = d.attempts.len(), error = ?sent.error, detail = ?sent.detail, status = ?sent.status, next = ?step, "attempt failed");
        }
        if sent.status == Some(410) {
            self.pause_gone(endpoint, now).await;
        }
        step
    }

    /// A 410 Gone means the partner removed this endpoint: pause it so nothing
    /// more is sent. The write is conditional on the version the worker read,
    /// so a change the partner made meanwhile (new URL, deletion) is never
    /// reverted; it touches only the pause fields (no secret is re-sealed).
    async fn pause_gone(&self, endpoint: &Endpoint, now: DateTime<Utc>) {
        let reason = format!("answered 410 Gone at {}", now.to_rfc3339());
        match self.app.pause_endpoint(endpoint, &reason, now).await {
            Ok(true) => {
                tracing::warn!(endpoint_id = %endpoint.id, "endpoint answered 410 Gone and was paused")
            }
            Ok(false) => {
                tracing::info!(endpoint_id = %endpoint.id, "endpoint answered 410 but was changed meanwhile; left as it is")
            }
            Err(e) => log_aws(&e, "could not pause the endpoint"),
        }
    }

    /// Stores the delivery (releasing the lease); with a delay, the message
    /// is hidden until the next attempt is due and kept, else acknowledged.
    async fn finish(&self, d: Delivery, step: Step) -> Outcome {
        let app = &self.app;
        // After a send, failing to record it risks a second send once the
        // lease ends: keep trying for a while (the SDK also retries each call).
        let stored = with_backoff(&BRIEF_BACKOFF_MS, || app.store.put_delivery(&d)).await;
        if let Err(e) = stored {
            log_aws(
                &e,
                "could not record the attempt; the message will come back",
            );
            return Outcome::Keep;
        }
        tracing::info!(status = ?d.status, attempts = d.attempts.len(), reason = ?d.reason, "delivery updated");
        crate::telemetry::delivery(match &step {
            Step::RetryIn(_) => "retrying",
            Step::Finished => d.status.as_str(),
        });
        match step {
            Step::RetryIn(secs) => Outcome::RetryIn(secs as i32),
            Step::Finished => Outcome::Ack,
        }
    }
}

fn log_aws(e: &Error, what: &str) {
    tracing::error!(error = %e.detail(), aws_code = e.aws_code().unwrap_or_default(), "{what}");
}
