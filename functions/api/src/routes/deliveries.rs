//! The partner's history: `GET /partners/{pid}/deliveries` (JSON pages or the
//! whole filter as CSV), `GET /events/{id}/deliveries` for support, and
//! `POST /deliveries/{id}/retry`.

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};
use std::sync::Arc;

use shared::ids::{DeliveryId, EndpointId, EventId};
use shared::lifecycle::{Delivery, DeliveryStatus};
use shared::store::{DeliveryQuery, HistoryCursor};
use shared::{outbox, App, Error};

use crate::auth::{Auth, PartnerScope};
use crate::body::query_pairs;
use crate::error::ApiResult;
use crate::path::Param;

/// Rows per JSON page unless `limit` says otherwise, and the most it may say.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;
/// Rows per DynamoDB page while streaming CSV.
const CSV_PAGE: usize = 500;

/// A delivery as a history row: what the partner's table shows, plus attempts.
pub fn row(d: &Delivery) -> Value {
    let last = d.attempts.last();
    json!({
        "delivery_id": d.id, "time": d.created_at, "event_time": d.event.occurred_at, "event_id": d.event_id, "endpoint_id": d.endpoint_id,
        "offer_id": d.event.offer_id, "advertiser": d.event.advertiser, "event": d.event.event,
        "event_status": d.event.status, "transaction_id": d.event.transaction_id, "click_id": d.event.click_id,
        "payout": d.event.payout.to_string(), "currency": d.event.currency, "deleted_at": d.event.deleted_at,
        "status": d.status, "last_http_code": last.and_then(|a| a.code), "last_error": last.and_then(|a| a.error),
        "attempts": d.attempts, "next_attempt_at": d.next_attempt_at, "updated_at": d.updated_at,
        "parked": d.parked, "reason": d.reason, "recovery_id": d.recovery_id,
    })
}

const CSV_COLUMNS: [&str; 19] = [
    "time",
    "delivery_id",
    "event_id",
    "endpoint_id",
    "offer_id",
    "advertiser",
    "event",
    "event_status",
    "transaction_id",
    "click_id",
    "payout",
    "currency",
    "status",
    "attempts",
    "last_http_code",
    "last_error",
    "next_attempt_at",
    "reason",
    "event_time",
];

/// One CSV field (RFC 4180): quoted when it holds a comma, quote or line
/// break, quotes doubled. A cell a spreadsheet could run as a formula (one
/// that starts with `=`, `+`, `-`, `@`, a tab or a carriage return) is
/// prefixed with `'` (OWASP's advice), except a plain negative decimal such as
/// `-120.00`, which a spreadsheet reads as the number it is.
pub fn csv_field(value: &str) -> String {
    let plain_negative = value.strip_prefix('-').is_some_and(|rest| {
        let mut parts = rest.splitn(2, '.');
        let whole = parts.next().unwrap_or("");
        let frac = parts.next();
        !whole.is_empty()
            && whole.bytes().all(|b| b.is_ascii_digit())
            && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
    });
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']) && !plain_negative;
    let value = if formula {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

fn csv_line(d: &Delivery) -> String {
    let last = d.attempts.last();
    fn text<T: AsRef<str>>(v: Option<&T>) -> String {
        v.map(|v| v.as_ref().to_string()).unwrap_or_default()
    }
    let fields = [
        d.created_at.to_rfc3339(),
        d.id.to_string(),
        d.event_id.to_string(),
        d.endpoint_id.to_string(),
        text(d.event.offer_id.as_ref()),
        text(d.event.advertiser.as_ref()),
        d.event.event.clone(),
        d.event.status.as_str().to_string(),
        text(d.event.transaction_id.as_ref()),
        text(d.event.click_id.as_ref()),
        d.event.payout.to_string(),
        d.event.currency.clone(),
        d.status.as_str().to_string(),
        d.attempts.len().to_string(),
        last.and_then(|a| a.code)
            .map(|c| c.to_string())
            .unwrap_or_default(),
        last.and_then(|a| a.error)
            .map(|e| e.as_str().to_string())
            .unwrap_or_default(),
        d.next_attempt_at
            .map(|t| t.to_rfc3339())
            .unwrap_or_default(),
        text(d.reason.as_ref()),
        d.event.occurred_at.to_rfc3339(),
    ];
    let mut line = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// `GET /partners/{pid}/deliveries?from=&to=&status=&endpoint_id=&limit=&cursor=&format=`.
pub async fn history(
    State(app): State<Arc<App>>,
    PartnerScope {
        partner_id: pid, ..
    }: PartnerScope,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let mut q = DeliveryQuery {
        partner_id: pid.clone(),
        by_event_time: false,
        from: None,
        to: None,
        status: None,
        endpoint_id: None,
        limit: DEFAULT_LIMIT,
        start: None,
    };
    let mut limit_given = None;
    let mut csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/csv"));
    for (k, v) in query_pairs(query.as_deref())? {
        match k.as_str() {
            "from" => q.from = Some(shared::fields::time_field("from", &v, false)?),
            "to" => q.to = Some(shared::fields::time_field("to", &v, true)?),
            "status" => {
                q.status = Some(DeliveryStatus::parse(&v).ok_or_else(|| {
                    Error::invalid(
                        "status",
                        "`status` must be pending, delivered, failed or cancelled",
                    )
                })?);
            }
            "endpoint_id" => q.endpoint_id = Some(EndpointId::parse(&v)?),
            "time" => match v.as_str() {
                "delivery" => q.by_event_time = false,
                "event" => q.by_event_time = true,
                _ => return Err(Error::invalid("time", "`time` must be delivery or event").into()),
            },
            "limit" => {
                q.limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| {
                        Error::invalid("limit", format!("`limit` must be 1 to {MAX_LIMIT}"))
                    })?;
                limit_given = Some(q.limit);
            }
            "cursor" => {
                q.start = Some(HistoryCursor::decode(&v, &pid).ok_or_else(|| {
                    Error::invalid("cursor", "`cursor` is not a cursor this history returned")
                })?)
            }
            "format" => match v.as_str() {
                "csv" => csv = true,
                "json" => csv = false,
                _ => return Err(Error::invalid("format", "`format` must be json or csv").into()),
            },
            other => {
                return Err(Error::invalid(
                    other,
                    format!("`{other}` is not a parameter of the history"),
                )
                .into())
            }
        }
    }
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from > to {
            return Err(Error::rule("from", "`from` is after `to`").into());
        }
    }
    if csv {
        return csv_response(app, q, &pid, limit_given).await;
    }
    let page = app.store.query_deliveries(&q).await?;
    let items: Vec<Value> = page.items.iter().map(row).collect();
    Ok(Json(json!({
        "items": items,
        "next_cursor": page.next.as_ref().map(HistoryCursor::encode),
        // How far back the history goes: deliveries expire this many days
        // after they were created (null: kept).
        "retention_days": app.store.retention_days(),
    }))
    .into_response())
}

/// Streams every page of the filter as CSV, a header row first. `limit`, if
/// given, is the size of the pages read (not a cap on the rows). The first
/// page is read before answering, so that a refused filter or an outage is
/// an error answer rather than a cut stream.
async fn csv_response(
    app: Arc<App>,
    mut q: DeliveryQuery,
    pid: &str,
    page_size: Option<usize>,
) -> ApiResult<Response> {
    q.limit = page_size.unwrap_or(CSV_PAGE);
    let first = app.store.query_deliveries(&q).await?;
    let mut head = format!("{}\r\n", CSV_COLUMNS.join(","));
    head.extend(first.items.iter().map(csv_line));
    let header_row = Bytes::from(head);
    let rest = first.next.map(|n| {
        q.start = Some(n);
        q
    });
    let pages = futures::stream::unfold(rest, move |state| {
        let app = app.clone();
        async move {
            let mut q = state?;
            match app.store.query_deliveries(&q).await {
                Ok(page) => {
                    let chunk: String = page.items.iter().map(csv_line).collect();
                    let next = page.next.map(|n| {
                        q.start = Some(n);
                        q
                    });
                    Some((Ok::<Bytes, std::io::Error>(Bytes::from(chunk)), next))
                }
                Err(e) => {
                    // Headers are sent: the only way left to signal failure is to cut the stream.
                    tracing::error!(error = %e.detail(), aws_code = e.aws_code().unwrap_or_default(), "CSV export stopped");
                    Some((Err(std::io::Error::other("history unavailable")), None))
                }
            }
        }
    });
    let body =
        futures::StreamExt::chain(futures::stream::once(async move { Ok(header_row) }), pages);
    let filename = format!("attachment; filename=\"deliveries-{pid}.csv\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// `GET /events/{id}/deliveries` (admin): the event and every delivery of it, with attempts.
pub async fn of_event(
    State(app): State<Arc<App>>,
    auth: Auth,
    Param(id): Param<EventId>,
) -> ApiResult<Json<Value>> {
    auth.admin_only()?;
    let event = app
        .store
        .get_event(&id)
        .await?
        .ok_or_else(|| Error::not_found("event", &id))?;
    let mut deliveries = app.store.deliveries_of_event(&event).await?;
    deliveries.sort_by(|a, b| a.endpoint_id.cmp(&b.endpoint_id));
    let items: Vec<Value> = deliveries.iter().map(row).collect();
    // The event as stored, with its attributes as the JSON they are.
    let mut shown = serde_json::to_value(&event).map_err(|e| Error::Internal(e.into()))?;
    shown["attributes"] = serde_json::to_value(&event.attributes).unwrap_or_default();
    // What it owes is shown as its deliveries (`items`).
    if let Some(o) = shown.as_object_mut() {
        o.remove("owed");
    }
    Ok(Json(json!({"event": shown, "items": items})))
}

/// A manual retry must not put the partner back on an older state: refused
/// when a later change of the same transaction went (or goes) to the same
/// endpoint.
async fn refuse_going_back(app: &App, d: &Delivery) -> ApiResult<()> {
    match shared::recovery::later_change(app, d).await? {
        Some(later) => Err(Error::Conflict(format!(
            "a later change of transaction `{}` (delivery `{}`) went to this endpoint after this one; retrying this one would put the partner back on an older state",
            d.event.transaction_id.as_deref().unwrap_or(""),
            later.id
        ))
        .into()),
        None => Ok(()),
    }
}

/// `POST /deliveries/{id}/retry`: a new round of attempts on a delivered or
/// failed delivery, on the endpoint's schedule; its first attempt is logged as manual.
pub async fn retry(
    State(app): State<Arc<App>>,
    auth: Auth,
    Param(id): Param<DeliveryId>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let mut d = app
        .store
        .get_delivery(&id)
        .await?
        .ok_or_else(|| Error::not_found("delivery", &id))?;
    if !auth.0.can_see(&d.partner_id) {
        return Err(Error::not_found("delivery", &id).into());
    }
    refuse_going_back(&app, &d).await?;
    let now = Utc::now();
    d.restart(now).map_err(|e| Error::Conflict(e.to_string()))?;
    app.store.restart_delivery(&d).await?;
    // Stored as pending and due now: if the queue refuses, the reconciler sends it.
    match outbox::enqueue(&app, std::slice::from_ref(&d)).await {
        Ok(()) => tracing::info!(delivery_id = %d.id, "manual retry queued"),
        Err(e) => {
            tracing::warn!(delivery_id = %d.id, error = %e.detail(), aws_code = e.aws_code().unwrap_or_default(), "manual retry stored, not queued; the reconciler will send it")
        }
    }
    Ok((StatusCode::ACCEPTED, Json(row(&d))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_so_columns_cannot_shift() {
        assert_eq!(csv_field("Acme"), "Acme");
        assert_eq!(csv_field("Acme, Inc."), "\"Acme, Inc.\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn csv_fields_cannot_start_a_formula_but_negative_payouts_stay_numbers() {
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("@cmd"), "'@cmd");
        assert_eq!(csv_field("-120.00"), "-120.00");
        assert_eq!(csv_field("-x"), "'-x");
        // A leading minus followed by a digit is not enough to be a number.
        assert_eq!(
            csv_field("-1+1+cmd|' /C calc'!A0"),
            "'-1+1+cmd|' /C calc'!A0"
        );
        assert_eq!(csv_field("-1."), "'-1.");
        assert_eq!(csv_field("\tx"), "'\tx");
    }
}
