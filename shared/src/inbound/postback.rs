//! The advertiser's S2S postback: `GET|POST /postback`.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeMap;

use super::{record, Outcome, DEFAULT_EVENT};
use crate::auth::constant_time_eq;
use crate::domain::{Event, Source, Status, INVALIDATION};
use crate::error::{Error, Result};
use crate::fields::{id_field, name_field, status_field, string_attributes};
use crate::ids;
use crate::money::{parse_currency, parse_payout};
use crate::App;

/// Parameters of `/postback` that are not stored as attributes.
const POSTBACK_FIELDS: [&str; 9] = [
    "click_id",
    "event",
    "payout",
    "currency",
    "transaction_id",
    "measurement",
    "status",
    "security_token",
    "goal",
];

/// A parsed advertiser postback.
#[derive(Debug, Clone, PartialEq)]
pub struct Postback {
    pub click_id: String,
    pub event: String,
    pub payout: Option<Decimal>,
    pub currency: Option<String>,
    pub transaction_id: Option<String>,
    pub status: Status,
    pub goal: Option<String>,
    pub security_token: Option<String>,
    /// Every other parameter, stored as an attribute of the event.
    pub extra: BTreeMap<String, String>,
}

/// Parses postback parameters (query, form or JSON, already flattened to
/// pairs). The first value of a repeated parameter wins.
pub fn parse_postback(pairs: Vec<(String, String)>) -> Result<Postback> {
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in pairs {
        fields.entry(k).or_insert(v);
    }
    let mut take = |k: &str| fields.remove(k).filter(|v| !v.trim().is_empty());
    let click_id = id_field(
        "click_id",
        &take("click_id").ok_or_else(|| Error::missing("click_id"))?,
    )?;
    let measurement = match take("measurement").as_deref().map(str::trim) {
        None | Some("0") => false,
        Some("1") => true,
        Some(_) => {
            return Err(Error::invalid(
                "measurement",
                "`measurement` must be 0 or 1",
            ))
        }
    };
    let event = take("event");
    let payout = take("payout");
    if measurement && (event.is_none() || payout.is_none()) {
        let field = if event.is_none() { "event" } else { "payout" };
        return Err(Error::Invalid {
            field: field.into(),
            code: "missing_field",
            message: "`event` and `payout` are required together when `measurement=1`".into(),
        });
    }
    let event = event
        .map(|e| name_field("event", &e))
        .transpose()?
        .unwrap_or_else(|| DEFAULT_EVENT.to_string());
    if event == INVALIDATION {
        return Err(Error::invalid(
            "event",
            "`event=invalidation` is reserved for our pipelines (POST /events)",
        ));
    }
    let payout = payout
        .map(|p| parse_payout("payout", &p, false))
        .transpose()?;
    let currency = take("currency")
        .map(|c| parse_currency("currency", &c))
        .transpose()?;
    let transaction_id = take("transaction_id")
        .map(|t| id_field("transaction_id", &t))
        .transpose()?;
    let status = take("status")
        .map(|s| status_field("status", &s))
        .transpose()?
        .unwrap_or(Status::Approved);
    let goal = take("goal").map(|g| name_field("goal", &g)).transpose()?;
    let security_token = take("security_token");
    fields.retain(|k, _| !POSTBACK_FIELDS.contains(&k.as_str()));
    let extra = string_attributes("parameters", fields)?;
    Ok(Postback {
        click_id,
        event,
        payout,
        currency,
        transaction_id,
        status,
        goal,
        security_token,
        extra,
    })
}

/// The idempotency key of a postback: click, event, transaction and status.
pub fn postback_event_id(p: &Postback) -> String {
    ids::derived_id(
        "evt",
        &[
            "postback",
            &p.click_id,
            &p.event,
            p.transaction_id.as_deref().unwrap_or(""),
            p.status.as_str(),
        ],
    )
}

/// Records an advertiser postback: one consistent read of the click, the
/// offer and the partner's endpoints from the process cache, one transaction,
/// one batched send.
pub async fn record_postback(app: &App, p: Postback, now: DateTime<Utc>) -> Result<Outcome> {
    let click = app
        .store
        .get_click(&p.click_id)
        .await?
        .ok_or_else(|| Error::not_found("click", &p.click_id))?;
    let offer = app.offer(&click.offer_id).await?;
    let offer = offer
        .as_ref()
        .as_ref()
        .ok_or_else(|| Error::not_found("offer", &click.offer_id))?;
    if let Some(expected) = &offer.security_token_sha256 {
        let given = p.security_token.as_deref().ok_or_else(|| {
            Error::Unauthorized("`security_token` is required for this offer".into())
        })?;
        if !constant_time_eq(&ids::sha256_hex(given), expected) {
            return Err(Error::Forbidden(
                "`security_token` is not valid for this offer".into(),
            ));
        }
    }
    if now >= click.expires_at {
        return Err(Error::Gone(format!(
            "click `{}` is past its attribution window (it ended {})",
            click.click_id,
            click.expires_at.to_rfc3339()
        )));
    }
    let mut attributes: BTreeMap<String, Value> = click
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    attributes.extend(
        p.extra
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone()))),
    );
    let event = Event {
        id: postback_event_id(&p),
        source: Source::Postback,
        event: p.event,
        status: p.status,
        transaction_id: p.transaction_id,
        partner_id: click.partner_id.clone(),
        click_id: Some(click.click_id.clone()),
        lead_id: None,
        offer_id: Some(offer.id.clone()),
        advertiser: Some(offer.advertiser.clone()),
        goal: p.goal,
        payout: p.payout.or(offer.default_payout).unwrap_or(Decimal::ZERO),
        currency: p.currency.unwrap_or_else(|| offer.currency.clone()),
        occurred_at: now,
        recorded_at: now,
        deleted_at: None,
        attributes,
        delivery_ids: Vec::new(),
    };
    record(app, event, None, now).await
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbound::MAX_ATTRIBUTES;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err(list: &[(&str, &str)]) -> Error {
        parse_postback(pairs(list)).expect_err("should be refused")
    }

    fn field_of(e: &Error) -> &str {
        match e {
            Error::Invalid { field, .. } => field,
            _ => panic!("not a field error: {e:?}"),
        }
    }

    #[test]
    fn a_full_postback_parses_and_keeps_extra_parameters() {
        let p = parse_postback(pairs(&[
            ("click_id", "abc123"),
            ("event", "purchase"),
            ("payout", "49.99"),
            ("measurement", "1"),
            ("currency", "eur"),
            ("transaction_id", "T-1"),
            ("order", "o#1"),
            ("security_token", "s3cret"),
        ]))
        .unwrap();
        assert_eq!(p.click_id, "abc123");
        assert_eq!(p.payout.unwrap().to_string(), "49.99");
        assert_eq!(p.currency.as_deref(), Some("EUR"));
        assert_eq!(p.status, Status::Approved);
        assert_eq!(p.extra.get("order").map(String::as_str), Some("o#1"));
        assert!(
            !p.extra.contains_key("security_token"),
            "the token must never become an attribute"
        );
    }

    #[test]
    fn a_bare_postback_defaults_its_event() {
        let p = parse_postback(pairs(&[("click_id", "abc")])).unwrap();
        assert_eq!(p.event, DEFAULT_EVENT);
        assert_eq!(p.payout, None);
    }

    #[test]
    fn click_id_is_required() {
        assert_eq!(field_of(&err(&[("event", "x")])), "click_id");
        assert_eq!(field_of(&err(&[("click_id", " ")])), "click_id");
    }

    #[test]
    fn measurement_requires_event_and_payout_together() {
        assert_eq!(
            field_of(&err(&[
                ("click_id", "a"),
                ("measurement", "1"),
                ("payout", "1")
            ])),
            "event"
        );
        assert_eq!(
            field_of(&err(&[
                ("click_id", "a"),
                ("measurement", "1"),
                ("event", "x")
            ])),
            "payout"
        );
        assert_eq!(
            field_of(&err(&[("click_id", "a"), ("measurement", "yes")])),
            "measurement"
        );
    }

    #[test]
    fn bad_payouts_are_refused_naming_the_field() {
        for bad in ["abc", "1e3", "1.23456", "-5"] {
            assert_eq!(
                field_of(&err(&[("click_id", "a"), ("payout", bad)])),
                "payout",
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_status_currency_event_and_ids_are_refused() {
        assert_eq!(
            field_of(&err(&[("click_id", "a"), ("status", "maybe")])),
            "status"
        );
        assert_eq!(
            field_of(&err(&[("click_id", "a"), ("currency", "dollars")])),
            "currency"
        );
        assert_eq!(
            field_of(&err(&[("click_id", "a"), ("event", "has space")])),
            "event"
        );
        assert_eq!(
            field_of(&err(&[("click_id", "a"), ("event", "invalidation")])),
            "event"
        );
        assert_eq!(
            field_of(&err(&[("click_id", &"x".repeat(129))])),
            "click_id"
        );
        assert_eq!(field_of(&err(&[("click_id", "a\u{0}b")])), "click_id");
    }

    #[test]
    fn too_many_extra_parameters_are_refused() {
        let mut list = pairs(&[("click_id", "a")]);
        for i in 0..=MAX_ATTRIBUTES {
            list.push((format!("p{i}"), "v".into()));
        }
        assert_eq!(field_of(&parse_postback(list).unwrap_err()), "parameters");
    }

    #[test]
    fn the_first_of_repeated_parameters_wins() {
        let p = parse_postback(pairs(&[("click_id", "a"), ("click_id", "b")])).unwrap();
        assert_eq!(p.click_id, "a");
    }

    #[test]
    fn postback_ids_differ_by_event_transaction_and_status_only() {
        let base = parse_postback(pairs(&[
            ("click_id", "a"),
            ("event", "sale"),
            ("payout", "1"),
        ]))
        .unwrap();
        let same = parse_postback(pairs(&[
            ("click_id", "a"),
            ("event", "sale"),
            ("payout", "2"),
        ]))
        .unwrap();
        let other_event = parse_postback(pairs(&[("click_id", "a"), ("event", "lead")])).unwrap();
        let other_tx = parse_postback(pairs(&[
            ("click_id", "a"),
            ("event", "sale"),
            ("transaction_id", "t2"),
        ]))
        .unwrap();
        assert_eq!(postback_event_id(&base), postback_event_id(&same));
        assert_ne!(postback_event_id(&base), postback_event_id(&other_event));
        assert_ne!(postback_event_id(&base), postback_event_id(&other_tx));
    }
}
