//! A partner's endpoint as the API takes it. One parse of the input
//! ([`EndpointInput::parse`]: every field's type, size and rule) and one
//! apply onto what is stored ([`EndpointInput::apply`]: the defaults, what
//! PUT and PATCH keep, the rules between fields), used by POST, PUT, PATCH
//! and the preview alike. The fields are listed once, in [`EndpointInput`];
//! the view is the stored endpoint with its secrets masked.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

use crate::domain::{
    names_header, same_header, BasicAuth, Endpoint, Event, Method, Ordering, Source, Status,
};
use crate::error::{Error, Result};
use crate::fields::name_field;
use crate::ids::{ClickId, EndpointId, EventId, LeadId, OfferId, PartnerId, TransactionId};
use crate::schedule::RetrySchedule;
use crate::template::{macro_in_authority, SampleValues, Template};

/// Most endpoints one partner may have (an event's deliveries must fit one DynamoDB transaction).
pub const MAX_ENDPOINTS_PER_PARTNER: usize = 50;
/// Bounds of one attempt's timeout, in milliseconds.
pub const TIMEOUT_MS_RANGE: (u32, u32) = (100, 30_000);
/// Longest endpoint name.
pub const MAX_NAME_LEN: usize = 200;
/// Longest URL template.
pub const MAX_URL_LEN: usize = 2048;
/// Longest body template.
pub const MAX_BODY_LEN: usize = 16 * 1024;
/// Most headers, and most entries of `rename`.
pub const MAX_HEADERS: usize = 20;
/// Longest header name.
pub const MAX_HEADER_NAME_LEN: usize = 64;
/// Longest header value (template or secret).
pub const MAX_HEADER_VALUE_LEN: usize = 2048;
/// Most entries of `events`, `statuses`, `offers`, `goals` and `secret_headers`.
pub const MAX_LIST_LEN: usize = 50;
/// Bounds of a signing secret's length.
pub const SECRET_LEN: (usize, usize) = (16, 256);
/// Longest basic-auth username or password.
pub const MAX_CREDENTIAL_LEN: usize = 256;
/// Longest ready-made basic-auth token.
pub const MAX_TOKEN_LEN: usize = 1024;
/// Longest name a partner gives an event or status in `rename`.
pub const MAX_RENAMED_LEN: usize = 64;

/// Headers the service sets itself; an endpoint may not.
pub const RESERVED_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "idempotency-key",
];

/// How an input meets the stored endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `POST`: a new endpoint; what is left out takes its default.
    Create,
    /// `PUT`: every field replaced; left-out write-only values are kept.
    Replace,
    /// `PATCH`: only the fields given change.
    Patch,
}

/// One field of an input: left out, `null`, or a value.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Given<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<T> Given<T> {
    fn or_else(self, absent: impl FnOnce() -> Option<T>) -> Option<T> {
        match self {
            Given::Value(v) => Some(v),
            Given::Null => None,
            Given::Absent => absent(),
        }
    }
}

/// Basic credentials as given: a token, or a username with a password (left
/// out to keep the stored one).
#[derive(Debug, Clone, PartialEq)]
pub enum BasicAuthInput {
    Token(String),
    User {
        username: String,
        password: Option<String>,
    },
}

/// An endpoint's fields as a request gives them, each checked on its own.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EndpointInput {
    pub name: Given<String>,
    pub url: Given<Template>,
    pub method: Given<Method>,
    pub body: Given<Template>,
    /// A secret header's value left out (`null`) keeps the stored one.
    pub headers: Given<BTreeMap<String, Option<Template>>>,
    pub secret_headers: Given<Vec<String>>,
    pub basic_auth: Given<BasicAuthInput>,
    pub secret: Given<String>,
    pub events: Given<Vec<String>>,
    pub statuses: Given<Vec<Status>>,
    pub offers: Given<Vec<OfferId>>,
    pub goals: Given<Vec<String>>,
    pub invalidations: Given<bool>,
    pub rename: Given<BTreeMap<String, String>>,
    pub omit_empty: Given<bool>,
    pub ordering: Given<Ordering>,
    pub retry_schedule: Given<RetrySchedule>,
    pub timeout_ms: Given<u32>,
    pub active: Given<bool>,
}

fn invalid(field: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid(field, format!("`{field}` {why}"))
}

fn given<T>(v: &Value, parse: impl FnOnce(&Value) -> Result<T>) -> Result<Given<T>> {
    match v {
        Value::Null => Ok(Given::Null),
        v => parse(v).map(Given::Value),
    }
}

fn text(field: &str, v: &Value, max: usize) -> Result<String> {
    let s = v
        .as_str()
        .ok_or_else(|| invalid(field, "must be a string"))?;
    if s.chars().count() > max {
        return Err(invalid(field, format!("is longer than {max} characters")));
    }
    Ok(s.to_string())
}

fn flag(field: &str, v: &Value) -> Result<bool> {
    v.as_bool()
        .ok_or_else(|| invalid(field, "must be true or false"))
}

fn list<T>(field: &str, v: &Value, item: impl Fn(&str) -> Result<T>) -> Result<Vec<T>> {
    let items = v
        .as_array()
        .ok_or_else(|| invalid(field, "must be a list of strings"))?;
    if items.len() > MAX_LIST_LEN {
        return Err(invalid(
            field,
            format!("may hold at most {MAX_LIST_LEN} entries"),
        ));
    }
    items
        .iter()
        .map(|i| {
            i.as_str()
                .ok_or_else(|| invalid(field, "must be a list of strings"))
                .and_then(&item)
        })
        .collect()
}

fn template(field: &str, text: &str) -> Result<Template> {
    Template::parse(text).map_err(|e| invalid(field, format!("is not a valid template: {e}")))
}

/// An HTTP header name: a token of at most [`MAX_HEADER_NAME_LEN`] characters.
fn header_name(field: &str, name: &str) -> Result<()> {
    let token = !name.is_empty()
        && name.len() <= MAX_HEADER_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(Error::invalid(
            field,
            format!("`{name}` is not a valid header name (a token of at most {MAX_HEADER_NAME_LEN} characters)"),
        ));
    }
    Ok(())
}

fn header_value(name: &str, value: &str) -> Result<Template> {
    let field = format!("headers.{name}");
    if value.chars().count() > MAX_HEADER_VALUE_LEN {
        return Err(invalid(
            &field,
            format!("is longer than {MAX_HEADER_VALUE_LEN} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(
            &field,
            "must not contain line breaks or control characters",
        ));
    }
    template(&field, value)
}

fn basic_auth(v: &Value) -> Result<BasicAuthInput> {
    let m = v
        .as_object()
        .ok_or_else(|| invalid("basic_auth", "must be an object"))?;
    if let Some(unknown) = m
        .keys()
        .find(|k| !["username", "password", "token"].contains(&k.as_str()))
    {
        return Err(Error::invalid(
            format!("basic_auth.{unknown}"),
            format!("`basic_auth.{unknown}` is not a known field"),
        ));
    }
    let get = |k: &str, max: usize| -> Result<Option<String>> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => text(&format!("basic_auth.{k}"), v, max).map(Some),
        }
    };
    if let Some(token) = get("token", MAX_TOKEN_LEN)? {
        if m.contains_key("username") || m.contains_key("password") {
            return Err(invalid(
                "basic_auth",
                "holds either `token` or `username` and `password`",
            ));
        }
        if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "basic_auth.token",
                "must be non-empty, without spaces or control characters",
            ));
        }
        return Ok(BasicAuthInput::Token(token));
    }
    let username = get("username", MAX_CREDENTIAL_LEN)?
        .filter(|u| !u.is_empty())
        .ok_or_else(|| Error::missing("basic_auth.username"))?;
    if username.contains(':') || username.chars().any(char::is_control) {
        return Err(invalid(
            "basic_auth.username",
            "must not contain `:` or control characters",
        ));
    }
    Ok(BasicAuthInput::User {
        username,
        password: get("password", MAX_CREDENTIAL_LEN)?,
    })
}

fn retry_schedule(v: &Value) -> Result<RetrySchedule> {
    let items = v
        .as_array()
        .ok_or_else(|| invalid("retry_schedule", "must be a list of delays in seconds"))?;
    let delays = items
        .iter()
        .map(|d| {
            crate::fields::whole_number(d)
                .and_then(|s| u32::try_from(s).ok())
                .ok_or_else(|| invalid("retry_schedule", "must hold whole numbers of seconds"))
        })
        .collect::<Result<Vec<_>>>()?;
    RetrySchedule::new(delays).map_err(|m| invalid("retry_schedule", m))
}

impl EndpointInput {
    /// Reads a request body: every field by its type, size and own rule; a
    /// field this type does not know is refused by name.
    pub fn parse(obj: &Map<String, Value>) -> Result<Self> {
        let mut input = EndpointInput::default();
        for (field, v) in obj {
            let f = field.as_str();
            match f {
                "name" => input.name = given(v, |v| text(f, v, MAX_NAME_LEN))?,
                "url" => input.url = given(v, |v| url_template(&text(f, v, MAX_URL_LEN)?))?,
                "method" => {
                    input.method = given(v, |v| match v.as_str() {
                        Some("GET") => Ok(Method::Get),
                        Some("POST_FORM") => Ok(Method::PostForm),
                        Some("POST_JSON") => Ok(Method::PostJson),
                        _ => Err(invalid(f, "must be GET, POST_FORM or POST_JSON")),
                    })?
                }
                "body" => input.body = given(v, |v| template(f, &text(f, v, MAX_BODY_LEN)?))?,
                "headers" => {
                    input.headers = given(v, |v| {
                        let m = v
                            .as_object()
                            .ok_or_else(|| invalid(f, "must be an object"))?;
                        if m.len() > MAX_HEADERS {
                            return Err(invalid(
                                f,
                                format!("may hold at most {MAX_HEADERS} entries"),
                            ));
                        }
                        m.iter()
                            .map(|(name, value)| {
                                let field = format!("headers.{name}");
                                header_name(&field, name)?;
                                if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                                    return Err(Error::invalid(
                                        field,
                                        format!("`{name}` is set by the service"),
                                    ));
                                }
                                match value {
                                    Value::Null => Ok((name.clone(), None)),
                                    Value::String(s) => {
                                        Ok((name.clone(), Some(header_value(name, s)?)))
                                    }
                                    _ => Err(invalid(&field, "must be a string")),
                                }
                            })
                            .collect()
                    })?
                }
                "secret_headers" => {
                    input.secret_headers = given(v, |v| {
                        list(f, v, |h| header_name(f, h).map(|()| h.to_string()))
                    })?
                }
                "basic_auth" => input.basic_auth = given(v, basic_auth)?,
                "secret" => {
                    input.secret = given(v, |v| {
                        let s = text(f, v, SECRET_LEN.1)?;
                        if s.chars().count() < SECRET_LEN.0 {
                            return Err(invalid(
                                f,
                                format!("must be {} to {} characters", SECRET_LEN.0, SECRET_LEN.1),
                            ));
                        }
                        Ok(s)
                    })?
                }
                "events" => {
                    input.events = given(v, |v| {
                        let events = list(f, v, |e| {
                            if e == "*" {
                                Ok(e.to_string())
                            } else {
                                name_field(f, e)
                            }
                        })?;
                        if events.is_empty() {
                            return Err(invalid(f, "must name at least one event, or `*`"));
                        }
                        Ok(events)
                    })?
                }
                "statuses" => {
                    input.statuses = given(v, |v| {
                        list(f, v, |s| {
                            Status::parse(s).ok_or_else(|| {
                                invalid(f, "may hold pending, approved and rejected")
                            })
                        })
                    })?
                }
                "offers" => input.offers = given(v, |v| list(f, v, |o| OfferId::parse_as(f, o)))?,
                "goals" => input.goals = given(v, |v| list(f, v, |g| name_field(f, g)))?,
                "invalidations" => input.invalidations = given(v, |v| flag(f, v))?,
                "omit_empty" => input.omit_empty = given(v, |v| flag(f, v))?,
                "active" => input.active = given(v, |v| flag(f, v))?,
                "rename" => {
                    input.rename = given(v, |v| {
                        let m = v
                            .as_object()
                            .ok_or_else(|| invalid(f, "must be an object"))?;
                        if m.len() > MAX_HEADERS {
                            return Err(invalid(
                                f,
                                format!("may hold at most {MAX_HEADERS} names"),
                            ));
                        }
                        m.iter()
                            .map(|(from, to)| {
                                name_field(f, from)?;
                                let field = format!("rename.{from}");
                                let to = to.as_str().filter(|t| {
                                    !t.is_empty()
                                        && t.chars().count() <= MAX_RENAMED_LEN
                                        && !t.chars().any(char::is_control)
                                });
                                let to = to.ok_or_else(|| {
                                    invalid(
                                        &field,
                                        format!(
                                            "must be 1 to {MAX_RENAMED_LEN} printable characters"
                                        ),
                                    )
                                })?;
                                Ok((from.clone(), to.to_string()))
                            })
                            .collect()
                    })?
                }
                "ordering" => {
                    input.ordering = given(v, |v| {
                        v.as_str()
                            .and_then(Ordering::parse)
                            .ok_or_else(|| invalid(f, "must be `in_order` or `latest_only`"))
                    })?
                }
                "retry_schedule" => input.retry_schedule = given(v, retry_schedule)?,
                "timeout_ms" => {
                    input.timeout_ms = given(v, |v| {
                        crate::fields::whole_number(v)
                            .and_then(|n| u32::try_from(n).ok())
                            .filter(|n| (TIMEOUT_MS_RANGE.0..=TIMEOUT_MS_RANGE.1).contains(n))
                            .ok_or_else(|| {
                                invalid(
                                    f,
                                    format!(
                                        "must be a whole number from {} to {}",
                                        TIMEOUT_MS_RANGE.0, TIMEOUT_MS_RANGE.1
                                    ),
                                )
                            })
                    })?
                }
                other => {
                    return Err(Error::invalid(
                        other,
                        format!("`{other}` is not a known field"),
                    ))
                }
            }
        }
        Ok(input)
    }

    /// The endpoint this input makes of `previous` (none when creating):
    /// defaults for what a new or replaced endpoint leaves out, the stored
    /// value for what a patch leaves out, and write-only values (secret,
    /// password, secret headers) kept unless replaced or cleared.
    pub fn apply(
        self,
        mode: Mode,
        partner_id: &PartnerId,
        previous: Option<&Endpoint>,
        now: DateTime<Utc>,
    ) -> Result<Endpoint> {
        let patch = mode == Mode::Patch;
        // What a left-out field becomes: the stored value on a patch, the
        // default otherwise.
        macro_rules! field {
            ($name:ident, $default:expr) => {
                match self.$name {
                    Given::Value(v) => v,
                    Given::Null => $default,
                    Given::Absent => match (patch, previous) {
                        (true, Some(p)) => p.$name.clone(),
                        _ => $default,
                    },
                }
            };
        }
        let name = field!(name, String::new());
        if name.trim().is_empty() {
            return Err(Error::missing("name"));
        }
        let url = match self.url {
            Given::Value(u) => u,
            Given::Absent if patch => match previous {
                Some(p) => p.url.clone(),
                None => return Err(Error::missing("url")),
            },
            _ => return Err(Error::missing("url")),
        };
        let method = field!(method, Method::Get);
        let body = match self.body {
            Given::Value(b) if b.source().is_empty() => None,
            b => b.or_else(|| previous.filter(|_| patch).and_then(|p| p.body.clone())),
        };
        check_body(method, body.as_ref())?;

        let secret_headers = field!(secret_headers, Vec::new());
        let is_secret = |name: &str| names_header(&secret_headers, name);
        let stored = |name: &str| previous.and_then(|p| p.header(name)).cloned();
        let mut headers = BTreeMap::new();
        match self.headers {
            Given::Value(given) => {
                for (name, value) in given {
                    match value {
                        Some(v) => {
                            headers.insert(name, v);
                        }
                        None if is_secret(&name) => {
                            if let Some(v) = stored(&name) {
                                headers.insert(name, v);
                            }
                        }
                        None => {
                            return Err(Error::rule(
                                format!("headers.{name}"),
                                format!("`headers.{name}` may be null only for a secret header (to keep its value)"),
                            ))
                        }
                    }
                }
            }
            Given::Null => {}
            Given::Absent => {
                if let Some(p) = previous {
                    for (k, v) in &p.headers {
                        if patch || is_secret(k) {
                            headers.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
        }
        // A secret header named but left out keeps its stored value.
        for name in &secret_headers {
            if !headers.keys().any(|k| same_header(k, name)) {
                match stored(name) {
                    Some(v) => {
                        headers.insert(name.clone(), v);
                    }
                    None => {
                        return Err(Error::rule(
                            "secret_headers",
                            format!(
                                "`secret_headers` names `{name}`, which is not one of `headers`"
                            ),
                        ))
                    }
                }
            }
        }
        if headers.len() > MAX_HEADERS {
            return Err(invalid(
                "headers",
                format!("may hold at most {MAX_HEADERS} entries"),
            ));
        }

        let kept_auth = || previous.and_then(|p| p.basic_auth.clone());
        let basic_auth = match self.basic_auth {
            Given::Null => None,
            Given::Absent => kept_auth(),
            Given::Value(BasicAuthInput::Token(token)) => Some(BasicAuth {
                username: String::new(),
                password: String::new(),
                token: Some(token),
            }),
            Given::Value(BasicAuthInput::User { username, password }) => {
                let password = match password {
                    Some(p) => p,
                    None => kept_auth()
                        .filter(|a| a.token.is_none())
                        .map(|a| a.password)
                        .ok_or_else(|| {
                            Error::rule(
                                "basic_auth.password",
                                "`basic_auth.password` is required: no password is stored to keep",
                            )
                        })?,
                };
                Some(BasicAuth {
                    username,
                    password,
                    token: None,
                })
            }
        };
        let secret = match self.secret {
            Given::Value(s) => Some(s),
            Given::Null => None,
            Given::Absent => previous.and_then(|p| p.secret.clone()),
        };

        let active = field!(active, true);
        // Still paused: keep when and why; newly paused: now; active: neither.
        let (paused_at, paused_reason) = match (active, previous) {
            (true, _) => (None, None),
            (false, Some(p)) if !p.active => (p.paused_at.or(Some(now)), p.paused_reason.clone()),
            (false, _) => (Some(now), None),
        };
        Ok(Endpoint {
            id: previous.map_or_else(EndpointId::random, |p| p.id.clone()),
            partner_id: partner_id.clone(),
            name,
            url,
            method,
            body,
            headers,
            secret_headers,
            basic_auth,
            secret,
            events: field!(events, vec!["*".to_string()]),
            statuses: field!(statuses, Vec::new()),
            offers: field!(offers, Vec::new()),
            goals: field!(goals, Vec::new()),
            invalidations: field!(invalidations, false),
            rename: field!(rename, BTreeMap::new()),
            omit_empty: field!(omit_empty, false),
            retry_schedule: field!(retry_schedule, RetrySchedule::default()),
            timeout_ms: field!(timeout_ms, crate::domain::DEFAULT_TIMEOUT_MS),
            active,
            version: previous.map_or(1, |p| p.version + 1),
            paused_reason,
            paused_at,
            // The worker's mark, not the partner's: an edit keeps it.
            slow_until: previous.and_then(|p| p.slow_until),
            ordering: match self.ordering {
                Given::Value(o) => o,
                Given::Null => Ordering::default(),
                // Kept on PUT too: a partner's older client does not know it.
                Given::Absent => previous.map(|p| p.ordering).unwrap_or_default(),
            },
            created_at: previous.map_or(now, |p| p.created_at),
            updated_at: now,
        })
    }
}

/// The URL template, parsed: an absolute http(s) URL once rendered, with
/// macros only after the host.
fn url_template(url: &str) -> Result<Template> {
    if url.is_empty() {
        return Err(Error::missing("url"));
    }
    let parsed = template("url", url)?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "url",
            "must not contain spaces or control characters",
        ));
    }
    if macro_in_authority(url) {
        return Err(invalid(
            "url",
            "may use macros only after the host (in the path or query)",
        ));
    }
    let rendered = parsed.render_url(&SampleValues, &mut BTreeSet::new());
    let u = url::Url::parse(&rendered)
        .map_err(|e| invalid("url", format!("is not a valid URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(invalid("url", "must be an http or https URL"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(invalid("url", "must name a host"));
    }
    Ok(parsed)
}

/// The body template: only with a POST method, and valid JSON once
/// rendered for `POST_JSON`.
fn check_body(method: Method, body: Option<&Template>) -> Result<()> {
    let Some(t) = body else {
        return Ok(());
    };
    match method {
        Method::Get => Err(Error::rule(
            "body",
            "`body` needs method POST_FORM or POST_JSON",
        )),
        Method::PostJson => {
            let sample = t.render_json(&SampleValues, &mut BTreeSet::new());
            serde_json::from_str::<Value>(&sample)
                .map(drop)
                .map_err(|e| {
                    Error::rule("body", format!("`body` does not render to valid JSON: {e}"))
                })
        }
        Method::PostForm => Ok(()),
    }
}

/// The endpoint as the API shows it: secrets are reported as set, never shown.
pub fn view(e: &Endpoint) -> Value {
    let headers: Map<String, Value> = e
        .headers
        .iter()
        .map(|(k, v)| {
            let shown = if e.is_secret_header(k) {
                Value::Null
            } else {
                json!(v)
            };
            (k.clone(), shown)
        })
        .collect();
    let mut shown = serde_json::to_value(e).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut shown {
        // The worker's own marks are not the partner's business.
        for internal in ["version", "slow_until", "secret"] {
            m.remove(internal);
        }
        m.insert("headers".into(), Value::Object(headers));
        m.insert("secret_set".into(), json!(e.secret.is_some()));
        m.insert(
            "basic_auth".into(),
            match &e.basic_auth {
                Some(b) if b.token.is_some() => json!({"token_set": true}),
                Some(b) => json!({"username": b.username, "password_set": true}),
                None => Value::Null,
            },
        );
        for (key, empty) in [
            ("body", Value::Null),
            ("paused_reason", Value::Null),
            ("paused_at", Value::Null),
        ] {
            m.entry(key).or_insert(empty);
        }
        m.entry("secret_headers").or_insert(json!([]));
        m.entry("rename").or_insert(json!({}));
        m.entry("omit_empty").or_insert(json!(false));
    }
    shown
}

/// The body PartnerStack sends as a test event; ours for JSON endpoints without a template.
pub const TEST_JSON_BODY: &str = r#"{"event":"test","data":{"message":"Test event sent!"}}"#;

/// A sample event for the test route and the preview: every standard field
/// set, no attributes (so the answer shows which attribute macros would
/// render empty). Its ids are random and never stored.
pub fn sample_event(partner_id: &PartnerId, now: DateTime<Utc>) -> Event {
    let sample = |raw: &str| raw.to_string();
    Event {
        id: EventId::random("evt_test"),
        source: Source::Internal,
        event: "test".into(),
        status: Status::Approved,
        transaction_id: TransactionId::parse(&format!("test-{}", EventId::random("t"))).ok(),
        partner_id: partner_id.clone(),
        click_id: ClickId::parse(&sample("test-click")).ok(),
        lead_id: LeadId::parse(&sample("test-lead")).ok(),
        offer_id: OfferId::parse(&sample("test-offer")).ok(),
        advertiser: Some("Test advertiser".into()),
        goal: Some("test".into()),
        payout: rust_decimal::Decimal::ZERO,
        currency: "USD".into(),
        occurred_at: now,
        recorded_at: now,
        deleted_at: None,
        attributes: Default::default(),
        delivery_ids: Vec::new(),
        owed: Default::default(),
        sequence: 1,
        superseded: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(v: Value) -> Result<EndpointInput> {
        match v {
            Value::Object(m) => EndpointInput::parse(&m),
            _ => unreachable!(),
        }
    }

    fn pid() -> PartnerId {
        PartnerId::parse("p").unwrap()
    }

    fn make(v: Value, mode: Mode, previous: Option<&Endpoint>) -> Result<Endpoint> {
        input(v)?.apply(mode, &pid(), previous, Utc::now())
    }

    fn refused_field(v: Value) -> String {
        match make(v, Mode::Create, None) {
            Err(Error::Invalid { field, .. } | Error::Rule { field, .. }) => field,
            Err(other) => panic!("unexpected error {other:?}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn a_minimal_endpoint_gets_the_defaults() {
        let e = make(
            json!({"name": "n", "url": "https://p.example/pb?tx={transaction_id}"}),
            Mode::Create,
            None,
        )
        .unwrap();
        assert_eq!(e.method, Method::Get);
        assert_eq!(e.retry_schedule, RetrySchedule::default());
        assert_eq!(e.timeout_ms, crate::domain::DEFAULT_TIMEOUT_MS);
        assert_eq!(e.events, ["*"]);
        assert!(e.active && !e.invalidations);
    }

    #[test]
    fn bad_endpoints_are_refused_naming_the_field() {
        let base = json!({"name": "n", "url": "https://p.example/pb"});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        assert_eq!(refused_field(with("url", json!("ftp://x/"))), "url");
        assert_eq!(
            refused_field(with("url", json!("https://p.example/?a={payout"))),
            "url"
        );
        assert_eq!(refused_field(with("method", json!("PATCH"))), "method");
        assert_eq!(refused_field(with("body", json!("a={payout}"))), "body");
        let mut json_body = with("method", json!("POST_JSON"));
        json_body["body"] = json!("{\"a\": {payout}, ");
        assert_eq!(refused_field(json_body), "body");
        assert_eq!(
            refused_field(with("retry_schedule", json!([0, 43201]))),
            "retry_schedule"
        );
        assert_eq!(
            refused_field(with("retry_schedule", json!([]))),
            "retry_schedule"
        );
        assert_eq!(
            refused_field(with("retry_schedule", json!(vec![0; 21]))),
            "retry_schedule"
        );
        assert_eq!(
            refused_field(with("timeout_ms", json!(60_000))),
            "timeout_ms"
        );
        assert_eq!(refused_field(with("statuses", json!(["paid"]))), "statuses");
        assert_eq!(
            refused_field(with("headers", json!({"Host": "x"}))),
            "headers.Host"
        );
        assert_eq!(
            refused_field(with("url", json!("https://{sub1}.partner.example/pb"))),
            "url"
        );
        assert_eq!(
            refused_field(with("headers", json!({"X-A": "a\r\nX-B: b"}))),
            "headers.X-A"
        );
        assert_eq!(refused_field(with("secret", json!("short"))), "secret");
        assert_eq!(refused_field(with("colour", json!("red"))), "colour");
        assert_eq!(refused_field(with("offers", json!(["off#1"]))), "offers");
    }

    #[test]
    fn every_field_is_bounded() {
        let base = json!({"name": "n", "url": "https://p.example/pb"});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        let long = "x".repeat(60_000);
        assert_eq!(
            refused_field(with("headers", json!({"X-Long": long}))),
            "headers.X-Long"
        );
        let offers: Vec<String> = (0..3000).map(|i| format!("off{i}")).collect();
        assert_eq!(refused_field(with("offers", json!(offers))), "offers");
        assert_eq!(refused_field(with("name", json!("n".repeat(201)))), "name");
        assert_eq!(
            refused_field(with(
                "url",
                json!(format!("https://p.example/{}", "a".repeat(3000)))
            )),
            "url"
        );
        assert_eq!(
            refused_field(with("body", json!("a".repeat(17 * 1024)))),
            "body"
        );
        assert_eq!(
            refused_field(with("events", json!(vec!["e"; 51]))),
            "events"
        );
        let mut b = base.clone();
        b["basic_auth"] = json!({"username": "u", "password": "p".repeat(300)});
        assert_eq!(refused_field(b), "basic_auth.password");
        let mut b = base.clone();
        b["basic_auth"] = json!({"token": "t".repeat(1025)});
        assert_eq!(refused_field(b), "basic_auth.token");
    }

    #[test]
    fn secrets_are_kept_when_an_update_leaves_them_out_and_never_shown() {
        let first = make(
            json!({"name": "n", "url": "https://p.example/", "secret": "0123456789abcdef0123",
                "basic_auth": {"username": "u", "password": "pw-123"},
                "headers": {"X-Api-Key": "k-123"}, "secret_headers": ["x-api-key"]}),
            Mode::Create,
            None,
        )
        .unwrap();
        let second = make(
            json!({"name": "n2", "url": "https://p.example/", "basic_auth": {"username": "u2"}, "secret_headers": ["X-API-KEY"]}),
            Mode::Replace,
            Some(&first),
        )
        .unwrap();
        assert_eq!(second.secret, first.secret);
        assert_eq!(second.basic_auth.as_ref().unwrap().password, "pw-123");
        assert_eq!(
            second.headers.get("X-Api-Key").map(Template::source),
            Some("k-123")
        );
        let shown = view(&second).to_string();
        assert!(
            !shown.contains("0123456789abcdef0123")
                && !shown.contains("pw-123")
                && !shown.contains("k-123"),
            "{shown}"
        );
        let cleared = make(
            json!({"name": "n", "url": "https://p.example/", "secret": null}),
            Mode::Replace,
            Some(&first),
        )
        .unwrap();
        assert_eq!(cleared.secret, None);
    }

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let first = make(
            json!({"name": "n", "url": "https://p.example/", "events": ["purchase"], "timeout_ms": 500,
                   "headers": {"X-A": "a"}}),
            Mode::Create,
            None,
        )
        .unwrap();
        let patched = make(json!({"name": "renamed"}), Mode::Patch, Some(&first)).unwrap();
        assert_eq!(patched.name, "renamed");
        assert_eq!(patched.events, ["purchase"]);
        assert_eq!(patched.timeout_ms, 500);
        assert_eq!(patched.headers, first.headers);
        assert_eq!(patched.id, first.id);
        assert_eq!(patched.version, first.version + 1);
        // The same fields on PUT take their defaults.
        let replaced = make(
            json!({"name": "r", "url": "https://p.example/"}),
            Mode::Replace,
            Some(&first),
        )
        .unwrap();
        assert_eq!(replaced.events, ["*"]);
        assert!(replaced.headers.is_empty());
    }

    #[test]
    fn the_view_lists_the_api_fields_and_no_internal_ones() {
        let e = make(
            json!({"name": "n", "url": "https://p.example/"}),
            Mode::Create,
            None,
        )
        .unwrap();
        let v = view(&e);
        for field in [
            "id",
            "partner_id",
            "name",
            "url",
            "method",
            "body",
            "headers",
            "secret_headers",
            "basic_auth",
            "secret_set",
            "events",
            "statuses",
            "offers",
            "goals",
            "invalidations",
            "rename",
            "omit_empty",
            "ordering",
            "retry_schedule",
            "timeout_ms",
            "active",
            "paused_reason",
            "paused_at",
            "created_at",
            "updated_at",
        ] {
            assert!(v.get(field).is_some(), "{field} missing from {v}");
        }
        for internal in ["version", "slow_until", "secret"] {
            assert!(v.get(internal).is_none(), "{internal} shown in {v}");
        }
    }
}
