//! Turns an endpoint and an event into the exact HTTP request to send:
//! method, URL, headers (auth, signature, idempotency key) and body.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use std::collections::BTreeSet;

use crate::domain::{Endpoint, Event, Method};
use crate::macros::{EventValues, DEFAULT_BODY_FIELDS};
use crate::template::Lookup;

/// The HTTP method of a prepared request: what an endpoint's [`Method`]
/// (a format) comes to on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Verb {
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "POST")]
    Post,
}

impl Verb {
    /// The verb of an endpoint's format: GET for GET, POST for both posts.
    pub fn of(method: Method) -> Self {
        match method {
            Method::Get => Verb::Get,
            Method::PostForm | Method::PostJson => Verb::Post,
        }
    }

    /// As HTTP spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
        }
    }
}

/// A request ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub method: Verb,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// Macros that named nothing on the event and rendered empty.
    pub empty_macros: BTreeSet<String>,
}

/// Header names whose values are secrets, masked wherever a request is shown.
pub const SECRET_HEADERS: [&str; 2] = ["authorization", "webhook-signature"];

impl Prepared {
    /// The request as it may be shown: secret header values masked.
    pub fn masked_headers(&self, endpoint: &Endpoint) -> Vec<(String, String)> {
        self.headers
            .iter()
            .map(|(k, v)| {
                let secret = SECRET_HEADERS.contains(&k.to_ascii_lowercase().as_str())
                    || endpoint.is_secret_header(k)
                    || endpoint.secret.as_deref().is_some_and(|s| v.contains(s));
                (
                    k.clone(),
                    if secret { "***".to_string() } else { v.clone() },
                )
            })
            .collect()
    }
}

/// Every non-empty standard field and attribute of the event, for POST
/// bodies without a template.
fn all_fields(values: &EventValues<'_>) -> Map<String, Value> {
    let mut map = Map::new();
    for name in DEFAULT_BODY_FIELDS {
        if let Some(v) = values
            .lookup(name)
            .filter(|v| !v.is_null() && v.as_str() != Some(""))
        {
            map.insert(name.to_string(), v);
        }
    }
    map
}

/// Renders the request for `event` to `endpoint`. `delivery_id` is the
/// idempotency key and the Standard Webhooks `webhook-id`.
pub fn prepare(endpoint: &Endpoint, event: &Event, delivery_id: &str, timestamp: i64) -> Prepared {
    let values = EventValues {
        event,
        delivery_id,
        rename: &endpoint.rename,
    };
    let mut empty = BTreeSet::new();
    let mut url = endpoint.url.render_url(&values, &mut empty);
    if endpoint.omit_empty {
        url = omit_empty_query(&url);
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    let body = match endpoint.method {
        Method::Get => None,
        Method::PostForm => {
            headers.push((
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ));
            Some(match &endpoint.body {
                Some(t) => {
                    let form = t.render_form(&values, &mut empty);
                    if endpoint.omit_empty {
                        omit_empty_pairs(&form)
                    } else {
                        form
                    }
                }
                None => {
                    let mut form = form_urlencoded::Serializer::new(String::new());
                    for (k, v) in all_fields(&values) {
                        form.append_pair(&k, v.as_str().unwrap_or_default());
                    }
                    for (k, v) in &event.attributes {
                        let text = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        form.append_pair(k, &text);
                    }
                    form.finish()
                }
            })
        }
        Method::PostJson => {
            headers.push(("content-type".into(), "application/json".into()));
            Some(match &endpoint.body {
                Some(t) => {
                    let json = t.render_json(&values, &mut empty);
                    if endpoint.omit_empty {
                        omit_empty_json(&json)
                    } else {
                        json
                    }
                }
                None => {
                    let mut map = all_fields(&values);
                    map.insert(
                        "attributes".into(),
                        Value::Object(event.attributes.clone().into_iter().collect()),
                    );
                    Value::Object(map).to_string()
                }
            })
        }
    };
    for (name, value) in &endpoint.headers {
        headers.push((name.clone(), value.render_header(&values, &mut empty)));
    }
    if let Some(auth) = &endpoint.basic_auth {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
        let token = auth.token.clone().unwrap_or_else(|| {
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", auth.username, auth.password))
        });
        headers.push(("authorization".into(), format!("Basic {token}")));
    }
    headers.push(("idempotency-key".into(), delivery_id.to_string()));
    if let Some(secret) = &endpoint.secret {
        let signature = sign(
            secret,
            delivery_id,
            timestamp,
            body.as_deref().unwrap_or(""),
        );
        headers.push(("webhook-id".into(), delivery_id.to_string()));
        headers.push(("webhook-timestamp".into(), timestamp.to_string()));
        headers.push(("webhook-signature".into(), signature));
    }
    Prepared {
        method: Verb::of(endpoint.method),
        url,
        headers,
        body,
        empty_macros: empty,
    }
}

/// A URL without the query parameters whose value is empty.
pub fn omit_empty_query(url: &str) -> String {
    match url.split_once('?') {
        Some((base, query)) => {
            let kept = omit_empty_pairs(query);
            if kept.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{kept}")
            }
        }
        None => url.to_string(),
    }
}

/// `a=1&b=&c` without the pairs whose value is empty (the text of the others kept as it is).
pub fn omit_empty_pairs(pairs: &str) -> String {
    pairs
        .split('&')
        .filter(|p| p.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
        .collect::<Vec<_>>()
        .join("&")
}

/// A JSON document without the object members whose value is null or an
/// empty string, at any depth. Key order and every other value are kept.
pub fn omit_empty_json(json: &str) -> String {
    fn prune(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.retain(|_, v| !(v.is_null() || v.as_str() == Some("")));
                map.values_mut().for_each(prune);
            }
            Value::Array(items) => items.iter_mut().for_each(prune),
            _ => {}
        }
    }
    match serde_json::from_str::<Value>(json) {
        Ok(mut v) => {
            prune(&mut v);
            v.to_string()
        }
        Err(_) => json.to_string(),
    }
}

/// The key of a signing secret: a Standard Webhooks `whsec_<base64>` secret
/// is decoded; any other secret is used as its bytes.
pub fn signing_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// Standard Webhooks signature: `v1,` + base64(HMAC-SHA256(key, "id.timestamp.body")).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    let key = signing_key(secret);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}
