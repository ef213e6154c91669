//! Recover: resend, in one action, everything an endpoint missed while its
//! server was down (`POST /partners/{pid}/endpoints/{eid}/recover`).
//!
//! The request only counts what matches (a bounded count), stores the
//! recovery with the endpoint's lock (one recovery runs per endpoint), and
//! queues its first **step**; it answers at once. The work runs in steps on
//! the delivery queue, each its own short job, so thousands of deliveries
//! never hold a request or a Lambda past its timeout:
//!
//! 1. claim the step (a lease on the recovery item: one worker at a time);
//! 2. read the next page of the partner's history, **oldest first**
//!    (GSI1, from the saved cursor), matching the endpoint and statuses;
//! 3. for each delivery: skip it if a later change of its transaction went
//!    (or goes) to the endpoint and is not itself being recovered (the
//!    partner is never put back on an older state); else start its new
//!    round with one conditional write (only if it still stands as read:
//!    a delivery retried, delivered or recovered meanwhile is left alone),
//!    its first attempt due at the recovery's next **send slot**;
//! 4. queue the round's messages, delayed to their slots;
//! 5. save the cursor, counts and next slot (conditional on the step), and
//!    queue the next step.
//!
//! **Rate.** Slots are `1 / rate` apart and a worker's claim never sends
//! before a delivery is due, so the recovered first attempts of an endpoint
//! go at most `rate` a second however the steps and messages run (retries
//! of those that fail again follow the endpoint's schedule).
//!
//! **Order.** Each delivery keeps its id, so its idempotency key. Deliveries
//! are restarted oldest first, and a later change's delivery waits for the
//! earlier change's delivery to end (`Delivery::after`, the worker's
//! ordering rule), so a recovered old change never lands after a newer one.
//!
//! **Faults.** A step that dies after its writes re-reads the same page:
//! what it restarted already carries the recovery's id and is counted, not
//! sent again. A step message that is lost is resumed by the reconciler,
//! which reads the recovering index (GSI2). A second recovery of the same
//! endpoint while one runs is refused (409) with the running one's id.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::fields::time_field;
use crate::ids::{DeliveryId, EndpointId, PartnerId, RecoveryId};
use crate::lifecycle::{Delivery, DeliveryStatus};
use crate::queue::Outcome;
use crate::store::RecoveryRead;
use crate::App;

/// Recovered first attempts per second per endpoint, unless the call says.
pub const DEFAULT_RATE: u32 = 20;
/// The most a call may ask for.
pub const MAX_RATE: u32 = 200;
/// Deliveries restarted by one step, at most.
const MAX_STEP: u32 = 200;
/// One step covers about this many seconds of send slots.
const STEP_SECONDS: u32 = 10;
/// Index pages one step reads at most (sparse matches: the next step goes on).
const STEP_PAGES: usize = 10;
/// Index pages the request counts at most before answering.
const COUNT_PAGES: usize = 20;
/// How long a worker holds a step.
const STEP_LEASE: Duration = Duration::seconds(120);
/// After a step's time, how long before the reconciler resumes a recovery
/// whose next step never came.
const RESUME_GRACE: Duration = Duration::seconds(60);
/// The first slot is this far after the step starts, so the step's own
/// writes are done before any of its deliveries is due.
const SLOT_LEAD: Duration = Duration::seconds(2);

/// Where a recovery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecoveryState {
    /// Reading the history and starting rounds, step by step.
    Queuing,
    /// Every matching delivery is queued; their attempts go on.
    Queued,
}

impl RecoveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryState::Queuing => "queuing",
            RecoveryState::Queued => "queued",
        }
    }
}

/// One recovery of an endpoint's missed deliveries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Recovery {
    pub id: RecoveryId,
    pub partner_id: PartnerId,
    pub endpoint_id: EndpointId,
    /// Deliveries made in `since..=until` (their history time).
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub statuses: Vec<DeliveryStatus>,
    pub rate_per_second: u32,
    pub state: RecoveryState,
    /// What matched when it was asked (`to_resend_complete`: the whole
    /// range was counted before answering).
    pub to_resend: u64,
    pub to_resend_complete: bool,
    /// Steps done.
    #[serde(default)]
    pub step: u32,
    /// Where the next step reads on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// When the next restarted delivery may be attempted (epoch ms).
    pub next_slot_ms: i64,
    /// Deliveries whose new round this recovery started.
    #[serde(default)]
    pub queued: u64,
    /// Left alone: a later change of the transaction went to the endpoint.
    #[serde(default)]
    pub skipped_later_change: u64,
    /// Left alone: changed since it was read (retried, delivered, recovered).
    #[serde(default)]
    pub skipped_changed: u64,
    /// Counted by the workers: recovered deliveries attempted, then ended.
    #[serde(default)]
    pub sent: u64,
    #[serde(default)]
    pub delivered: u64,
    #[serde(default)]
    pub failed: u64,
    /// Ended unsent: superseded by a later change (`latest_only`), or the
    /// endpoint was deleted.
    #[serde(default)]
    pub cancelled: u64,
    /// `admin` or `partner`.
    pub requested_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the last step queued the last delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<DateTime<Utc>>,
}

impl Recovery {
    /// `queuing` (steps still reading), `sending` (all queued, attempts
    /// going on), `finished` (every queued delivery ended).
    pub fn phase(&self) -> &'static str {
        match self.state {
            RecoveryState::Queuing => "queuing",
            RecoveryState::Queued
                if self.delivered + self.failed + self.cancelled >= self.queued =>
            {
                "finished"
            }
            RecoveryState::Queued => "sending",
        }
    }

    /// The API's view.
    pub fn view(&self) -> Value {
        json!({
            "recovery_id": self.id, "partner_id": self.partner_id, "endpoint_id": self.endpoint_id,
            "since": self.since, "until": self.until, "statuses": self.statuses,
            "rate_per_second": self.rate_per_second, "state": self.phase(),
            "to_resend": self.to_resend, "to_resend_complete": self.to_resend_complete,
            "queued": self.queued,
            "skipped": {"later_change": self.skipped_later_change, "changed": self.skipped_changed},
            "sent": self.sent, "delivered": self.delivered, "failed": self.failed, "cancelled": self.cancelled,
            "requested_by": self.requested_by,
            "created_at": self.created_at, "updated_at": self.updated_at, "queued_at": self.queued_at,
        })
    }

    /// A recovery of what `input` asks, about to start at `now` (nothing
    /// counted or queued yet).
    pub fn new(
        partner_id: &PartnerId,
        endpoint_id: &EndpointId,
        input: &RecoverInput,
        requested_by: &str,
        now: DateTime<Utc>,
    ) -> Self {
        Recovery {
            id: RecoveryId::random(),
            partner_id: partner_id.clone(),
            endpoint_id: endpoint_id.clone(),
            since: input.since,
            until: input.until,
            statuses: input.statuses.clone(),
            rate_per_second: input.rate_per_second,
            state: RecoveryState::Queuing,
            to_resend: 0,
            to_resend_complete: false,
            step: 0,
            cursor: None,
            next_slot_ms: now.timestamp_millis(),
            queued: 0,
            skipped_later_change: 0,
            skipped_changed: 0,
            sent: 0,
            delivered: 0,
            failed: 0,
            cancelled: 0,
            requested_by: requested_by.to_string(),
            created_at: now,
            updated_at: now,
            queued_at: None,
        }
    }

    fn step_size(&self) -> usize {
        (self.rate_per_second * STEP_SECONDS).clamp(1, MAX_STEP) as usize
    }

    /// Microseconds between two send slots.
    fn spacing_us(&self) -> i64 {
        1_000_000 / i64::from(self.rate_per_second.max(1))
    }

    fn read(&self, with_own: bool) -> RecoveryRead<'_> {
        RecoveryRead {
            partner_id: &self.partner_id,
            endpoint_id: &self.endpoint_id,
            since: self.since,
            until: self.until,
            statuses: &self.statuses,
            recovery_id: with_own.then_some(&self.id),
        }
    }
}

/// What `POST …/recover` asks.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoverInput {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub statuses: Vec<DeliveryStatus>,
    pub rate_per_second: u32,
    /// Count only: nothing is started.
    pub dry_run: bool,
}

impl RecoverInput {
    /// Parses the body; `now` is the default `until`.
    pub fn parse(body: &Map<String, Value>, now: DateTime<Utc>) -> Result<Self> {
        const FIELDS: [&str; 5] = ["since", "until", "statuses", "rate_per_second", "dry_run"];
        if let Some(other) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(Error::invalid(
                other.as_str(),
                format!("`{other}` is not a field of a recovery"),
            ));
        }
        let time = |field: &str, end_of_day: bool| -> Result<Option<DateTime<Utc>>> {
            match body.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => time_field(field, s, end_of_day).map(Some),
                Some(_) => Err(Error::invalid(
                    field,
                    format!("`{field}` must be a date (2026-11-23) or an RFC 3339 time"),
                )),
            }
        };
        let since = time("since", false)?.ok_or_else(|| Error::missing("since"))?;
        let until = time("until", true)?.unwrap_or(now);
        if since > until {
            return Err(Error::rule("since", "`since` is after `until`"));
        }
        let statuses = match body.get("statuses") {
            None | Some(Value::Null) => vec![DeliveryStatus::Failed],
            Some(Value::Array(items)) if !items.is_empty() && items.len() <= 2 => {
                let mut out = Vec::new();
                for v in items {
                    let s = v
                        .as_str()
                        .and_then(DeliveryStatus::parse)
                        .filter(|s| matches!(s, DeliveryStatus::Failed | DeliveryStatus::Delivered))
                        .ok_or_else(|| {
                            Error::invalid(
                                "statuses",
                                "`statuses` holds `failed` and/or `delivered`",
                            )
                        })?;
                    if !out.contains(&s) {
                        out.push(s);
                    }
                }
                out
            }
            Some(_) => {
                return Err(Error::invalid(
                    "statuses",
                    "`statuses` must be a list of `failed` and/or `delivered`",
                ))
            }
        };
        let rate_per_second = match body.get("rate_per_second") {
            None | Some(Value::Null) => DEFAULT_RATE,
            Some(v) => crate::fields::whole_number(v)
                .filter(|n| (1..=i64::from(MAX_RATE)).contains(n))
                .map(|n| n as u32)
                .ok_or_else(|| {
                    Error::invalid(
                        "rate_per_second",
                        format!("`rate_per_second` must be a whole number from 1 to {MAX_RATE}"),
                    )
                })?,
        };
        let dry_run = match body.get("dry_run") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(Error::invalid("dry_run", "`dry_run` must be true or false")),
        };
        Ok(RecoverInput {
            since,
            until,
            statuses,
            rate_per_second,
            dry_run,
        })
    }
}

/// What `start` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Started {
    /// A dry run: what would be resent.
    Counted { to_resend: u64, complete: bool },
    /// The recovery runs.
    Running(Box<Recovery>),
}

/// The message of one recovery step on the delivery queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMessage {
    pub recovery_id: RecoveryId,
    pub partner_id: PartnerId,
    pub endpoint_id: EndpointId,
    pub step: u32,
}

impl StepMessage {
    fn of(r: &Recovery) -> Self {
        StepMessage {
            recovery_id: r.id.clone(),
            partner_id: r.partner_id.clone(),
            endpoint_id: r.endpoint_id.clone(),
            step: r.step,
        }
    }

    fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Counts what matches and, unless a dry run, starts the recovery: stored
/// with the endpoint's lock, its first step queued. `Conflict` (409) when a
/// recovery of the endpoint is running, naming it.
pub async fn start(
    app: &App,
    partner_id: &PartnerId,
    endpoint_id: &EndpointId,
    input: &RecoverInput,
    requested_by: &str,
    now: DateTime<Utc>,
) -> Result<Started> {
    let mut recovery = Recovery::new(partner_id, endpoint_id, input, requested_by, now);
    let (to_resend, complete) = app
        .store
        .count_recoverable(&recovery.read(false), COUNT_PAGES)
        .await?;
    if input.dry_run {
        return Ok(Started::Counted {
            to_resend,
            complete,
        });
    }
    recovery.to_resend = to_resend;
    recovery.to_resend_complete = complete;
    // The lock of a finished recovery may be left (its last step died
    // before releasing it): taken over, conditionally.
    let mut replacing = None;
    for _ in 0..2 {
        if app
            .store
            .create_recovery(&recovery, replacing.as_ref(), now + RESUME_GRACE)
            .await?
        {
            enqueue_step(app, &recovery, 0).await;
            tracing::info!(recovery_id = %recovery.id, endpoint_id = %endpoint_id, to_resend, "recovery started");
            return Ok(Started::Running(Box::new(recovery)));
        }
        let Some(holder) = app.store.recovery_lock(partner_id, endpoint_id).await? else {
            continue;
        };
        match app.store.get_recovery(partner_id, &holder).await? {
            Some(r) if r.state == RecoveryState::Queuing => {
                return Err(Error::Conflict(format!(
                    "recovery `{holder}` of this endpoint is still queuing: follow it at GET /partners/{partner_id}/endpoints/{endpoint_id}/recover/{holder}; a recovery asked while it runs would find the same deliveries"
                )));
            }
            _ => replacing = Some(holder),
        }
    }
    Err(Error::Conflict(
        "another recovery of this endpoint started at the same moment".into(),
    ))
}

/// Queues a step's message; a failure is left to the reconciler.
async fn enqueue_step(app: &App, r: &Recovery, delay_seconds: i32) {
    let body = StepMessage::of(r).body();
    if let Err(e) = app
        .queue
        .send(&app.config.delivery_queue_url, &body, delay_seconds)
        .await
    {
        tracing::warn!(recovery_id = %r.id, error = %e.detail(), aws_code = e.aws_code().unwrap_or_default(), "recovery step not queued; the reconciler resumes it");
    }
}

/// The later change of `d`'s transaction that went (or goes) to the same
/// endpoint, if any: a delivery of a change with a higher sequence, not
/// cancelled. Resending `d` would put the partner back on an older state.
pub async fn later_change(app: &App, d: &Delivery) -> Result<Option<Delivery>> {
    let Some(tx) = &d.event.transaction_id else {
        return Ok(None);
    };
    let scope = match d.event.source {
        crate::domain::Source::Postback => d.event.offer_id.as_ref(),
        crate::domain::Source::Internal => None,
    };
    let key = crate::domain::Transaction::key_of(scope, tx);
    let Some(t) = app.store.get_transaction(&key).await? else {
        return Ok(None);
    };
    let Some(latest) = t.last_delivery.get(&d.endpoint_id).filter(|l| **l != d.id) else {
        return Ok(None);
    };
    let later = match app.store.get_delivery(latest).await? {
        Some(l) => Some(l),
        // Not stored yet: owed by its event, which the transaction remembers.
        None => match t
            .seen
            .iter()
            .rev()
            .find(|s| crate::fanout::delivery_id(&s.event_id, &d.endpoint_id) == *latest)
        {
            Some(s) => app.store.get_event(&s.event_id).await?.and_then(|e| {
                let owed = e.owed.get(latest)?.clone();
                Some(Delivery::from_owed(latest.clone(), &owed, e))
            }),
            None => None,
        },
    };
    Ok(later
        .filter(|l| l.status != DeliveryStatus::Cancelled && l.event.sequence > d.event.sequence))
}

/// Handles one step message: see the module's steps.
pub async fn run_step(app: &App, m: &StepMessage) -> Outcome {
    let now = Utc::now();
    let claimed = app
        .store
        .claim_recovery_step(&m.partner_id, &m.recovery_id, m.step, now, STEP_LEASE)
        .await;
    let mut r = match claimed {
        Ok(Some(r)) => r,
        Ok(None) => {
            tracing::info!(recovery_id = %m.recovery_id, step = m.step, "recovery step already done, running or finished; acknowledged");
            return Outcome::Ack;
        }
        Err(e) => {
            tracing::error!(recovery_id = %m.recovery_id, error = %e.detail(), aws_code = e.aws_code().unwrap_or_default(), "could not claim the recovery step");
            return Outcome::RetryAfterOutage;
        }
    };
    match step(app, &mut r, now).await {
        Ok(()) => Outcome::Ack,
        Err(e) => {
            // What it restarted carries the recovery's id: the step's next
            // run counts it and sends nothing twice.
            tracing::error!(recovery_id = %m.recovery_id, error = %e.detail(), aws_code = e.aws_code().unwrap_or_default(), "recovery step failed; it runs again");
            if let Err(e) = app
                .store
                .release_recovery_step(&m.partner_id, &m.recovery_id, m.step)
                .await
            {
                // The lease runs out; the reconciler resumes the step then.
                tracing::warn!(error = %e.detail(), "could not release the recovery step");
            }
            Outcome::RetryAfterOutage
        }
    }
}

async fn step(app: &App, r: &mut Recovery, now: DateTime<Utc>) -> Result<()> {
    let page = app
        .store
        .recoverable(
            &r.read(true),
            r.cursor.as_deref(),
            r.step_size(),
            STEP_PAGES,
        )
        .await?;
    let in_scope: HashMap<&DeliveryId, &Delivery> = page.items.iter().map(|d| (&d.id, d)).collect();
    let mut slot_us = r
        .next_slot_ms
        .max((now + SLOT_LEAD).timestamp_millis())
        .saturating_mul(1000);
    let mut messages = Vec::new();
    for d in &page.items {
        if d.recovery_id.as_ref() == Some(&r.id) {
            // Restarted by this step's earlier run, which died before saving.
            r.queued += 1;
            continue;
        }
        if !r.statuses.contains(&d.status) {
            // The index lags the table: it changed since the index said so.
            r.skipped_changed += 1;
            continue;
        }
        if let Some(later) = later_change(app, d).await? {
            // The later change is resent too (it is in this recovery and
            // comes after this one, which it waits for): both go, in order.
            let resent_too = in_scope.contains_key(&later.id)
                || (later.created_at > d.created_at
                    && later.created_at <= r.until
                    && r.statuses.contains(&later.status));
            if !resent_too {
                r.skipped_later_change += 1;
                continue;
            }
        }
        let due = DateTime::from_timestamp_micros(slot_us).unwrap_or(now);
        let mut round = d.clone();
        if round.recover(&r.id, due, now).is_err() {
            r.skipped_changed += 1;
            continue;
        }
        if app
            .store
            .recover_delivery(&round, d.status, &d.updated_at)
            .await?
        {
            slot_us += r.spacing_us();
            r.queued += 1;
            let delay = ((due - now).num_milliseconds() + 999) / 1000;
            messages.push((crate::fanout::message(&round), delay.clamp(0, 900) as i32));
        } else {
            r.skipped_changed += 1;
        }
    }
    // Stored pending with a due time: if the queue refuses, the reconciler sends them.
    if let Err(e) = app
        .queue
        .send_all_delayed(&app.config.delivery_queue_url, &messages)
        .await
    {
        tracing::warn!(recovery_id = %r.id, error = %e.detail(), "recovered deliveries stored, not queued; the reconciler will send them");
    }
    r.next_slot_ms = slot_us / 1000;
    r.cursor = page.next;
    r.step += 1;
    r.updated_at = Utc::now();
    let done = r.cursor.is_none();
    let next_at = DateTime::from_timestamp_millis(r.next_slot_ms).unwrap_or(now) - SLOT_LEAD;
    if done {
        r.state = RecoveryState::Queued;
        r.queued_at = Some(r.updated_at);
    }
    let check = (!done).then(|| next_at.max(r.updated_at) + RESUME_GRACE);
    if !app.store.save_recovery_step(r, check).await? {
        tracing::warn!(recovery_id = %r.id, "recovery step moved meanwhile; its progress is left to the other run");
        return Ok(());
    }
    tracing::info!(recovery_id = %r.id, step = r.step, queued = r.queued, done, "recovery step done");
    if done {
        app.store
            .release_recovery_lock(&r.partner_id, &r.endpoint_id, &r.id)
            .await?;
    } else {
        let delay = (next_at - Utc::now()).num_seconds().clamp(0, 900) as i32;
        enqueue_step(app, r, delay).await;
    }
    Ok(())
}

/// The reconciler's part: queue again the step of every recovery whose
/// step is overdue (its message lost, or its worker gone). Returns how many.
pub async fn resume_overdue(app: &App, now: DateTime<Utc>) -> Result<usize> {
    let mut resumed = 0;
    for (partner_id, id, check) in app.store.overdue_recoveries(now, 100).await? {
        let Some(r) = app.store.get_recovery(&partner_id, &id).await? else {
            continue;
        };
        if r.state != RecoveryState::Queuing {
            continue;
        }
        if app
            .store
            .touch_recovery(&partner_id, &id, &check, now + RESUME_GRACE)
            .await?
        {
            enqueue_step(app, &r, 0).await;
            resumed += 1;
        }
    }
    Ok(resumed)
}

/// The workers' part: once a recovered delivery is stored after an attempt
/// (`attempted`) or its end, count it on its recovery: `sent` on its round's
/// first attempt, `delivered`, `failed` or `cancelled` (superseded by a later
/// change, or its endpoint deleted) when it ends.
pub async fn count_progress(app: &App, d: &Delivery, attempted: bool) {
    let Some(id) = &d.recovery_id else { return };
    let mut counters = Vec::new();
    if attempted && d.made_in_round() == 1 {
        counters.push("sent");
    }
    match d.status {
        DeliveryStatus::Delivered => counters.push("delivered"),
        DeliveryStatus::Failed => counters.push("failed"),
        DeliveryStatus::Cancelled => counters.push("cancelled"),
        DeliveryStatus::Pending => {}
    }
    if let Err(e) = app
        .store
        .count_recovered(&d.partner_id, id, &counters)
        .await
    {
        tracing::warn!(recovery_id = %id, error = %e.detail(), "could not count a recovered delivery's progress");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-26T12:00:00Z".parse().unwrap()
    }

    fn parse(v: Value) -> Result<RecoverInput> {
        RecoverInput::parse(v.as_object().unwrap(), now())
    }

    #[test]
    fn a_recovery_defaults_to_failed_deliveries_until_now_at_the_default_rate() {
        let input = parse(json!({"since": "2026-11-26T10:00:00Z"})).unwrap();
        assert_eq!(input.statuses, vec![DeliveryStatus::Failed]);
        assert_eq!(input.until, now());
        assert_eq!(input.rate_per_second, DEFAULT_RATE);
        assert!(!input.dry_run);
        let dated = parse(json!({"since": "2026-11-25", "until": "2026-11-25"})).unwrap();
        assert_eq!(dated.since.to_rfc3339(), "2026-11-25T00:00:00+00:00");
        assert!(dated.until.to_rfc3339().starts_with("2026-11-25T23:59:59"));
    }

    #[test]
    fn a_recovery_request_names_the_field_it_refuses() {
        let field = |v: Value| match parse(v) {
            Err(Error::Invalid { field, .. }) | Err(Error::Rule { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(json!({})), "since");
        assert_eq!(field(json!({"since": "yesterday"})), "since");
        assert_eq!(field(json!({"since": 5})), "since");
        assert_eq!(
            field(json!({"since": "2026-11-26T11:00:00Z", "until": "2026-11-26T10:00:00Z"})),
            "since"
        );
        assert_eq!(
            field(json!({"since": "2026-11-26", "statuses": ["pending"]})),
            "statuses"
        );
        assert_eq!(
            field(json!({"since": "2026-11-26", "statuses": []})),
            "statuses"
        );
        assert_eq!(
            field(json!({"since": "2026-11-26", "rate_per_second": 0})),
            "rate_per_second"
        );
        assert_eq!(
            field(json!({"since": "2026-11-26", "rate_per_second": 2.5})),
            "rate_per_second"
        );
        assert_eq!(
            field(json!({"since": "2026-11-26", "rate_per_second": 201})),
            "rate_per_second"
        );
        assert_eq!(
            field(json!({"since": "2026-11-26", "dry_run": "yes"})),
            "dry_run"
        );
        assert_eq!(field(json!({"since": "2026-11-26", "sinse": "x"})), "sinse");
    }

    #[test]
    fn steps_cover_ten_seconds_of_slots_and_at_most_two_hundred_deliveries() {
        let mut r = Recovery::new(
            &crate::ids::PartnerId::parse("p").unwrap(),
            &crate::ids::EndpointId::parse("e").unwrap(),
            &parse(json!({"since": "2026-11-26T10:00:00Z"})).unwrap(),
            "admin",
            now(),
        );
        assert_eq!(r.step_size(), 200);
        assert_eq!(r.spacing_us(), 50_000);
        r.rate_per_second = 1;
        assert_eq!(r.step_size(), 10);
        assert_eq!(r.spacing_us(), 1_000_000);
        r.rate_per_second = 200;
        assert_eq!(r.step_size(), 200);
        r.state = RecoveryState::Queued;
        r.queued = 3;
        r.delivered = 2;
        assert_eq!(r.phase(), "sending");
        r.failed = 1;
        assert_eq!(r.phase(), "finished");
        r.queued = 4;
        assert_eq!(r.phase(), "sending");
        r.cancelled = 1;
        assert_eq!(r.phase(), "finished", "a superseded delivery ends too");
    }
}
