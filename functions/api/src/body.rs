//! Reading request bodies and JSON fields with errors that name the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use shared::ids::TypedId;
use shared::Error;

use crate::error::ApiError;
use crate::MAX_BODY_BYTES;

/// The raw body with its content type; over 64 KiB answers 413.
pub struct RawBody {
    pub content_type: String,
    pub bytes: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError(Error::PayloadTooLarge(MAX_BODY_BYTES))
            } else {
                ApiError(Error::MalformedBody(format!(
                    "the body could not be read: {rejection}"
                )))
            }
        })?;
        Ok(RawBody {
            content_type,
            bytes,
        })
    }
}

impl RawBody {
    /// Parses the body as JSON.
    pub fn json(&self) -> Result<Value, ApiError> {
        if self.bytes.is_empty() {
            return Err(Error::MalformedBody(
                "the body is empty; a JSON object is expected".into(),
            )
            .into());
        }
        serde_json::from_slice(&self.bytes).map_err(|e| {
            ApiError(Error::MalformedBody(format!(
                "the body is not valid JSON: {e}"
            )))
        })
    }

    /// Parses the body as a JSON object.
    pub fn object(&self) -> Result<Fields, ApiError> {
        match self.json()? {
            Value::Object(map) => Ok(Fields(map)),
            _ => Err(Error::MalformedBody("the body must be a JSON object".into()).into()),
        }
    }
}

/// Query-string pairs, decoded as a form (`+` is a space). A name or value
/// that is not UTF-8 once decoded is a 400 naming it, never text with
/// replacement characters passed on as if it had been sent.
pub fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, Error> {
    let decode = |raw: &str| {
        let spaced = raw.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8()
            .map(|s| s.into_owned())
    };
    let mut pairs = Vec::new();
    for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let not_utf8 = |field: &str| Error::Invalid {
            field: field.to_string(),
            code: "invalid_query",
            message: format!("query parameter `{field}` is not UTF-8 once decoded"),
        };
        let name = decode(k).map_err(|_| not_utf8("query"))?;
        let value = decode(v).map_err(|_| not_utf8(&name))?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// A JSON object being validated field by field.
pub struct Fields(pub Map<String, Value>);

impl Fields {
    /// Refuses any field not in `known`, naming it.
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => {
                Err(Error::invalid(k.as_str(), format!("`{k}` is not a known field")).into())
            }
            None => Ok(()),
        }
    }

    /// The caller-chosen `id` (checked by the id's rule), or a new random one.
    pub fn id_or_new<T: TypedId>(&self, random: fn() -> T) -> Result<T, ApiError> {
        match self.0.get("id") {
            None | Some(Value::Null) => Ok(random()),
            Some(Value::String(id)) => Ok(T::parse_as("id", id)?),
            Some(_) => Err(Error::invalid("id", "`id` must be a string").into()),
        }
    }

    /// A required id, checked by its type's rule.
    pub fn id<T: TypedId>(&self, field: &str) -> Result<T, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Err(Error::missing(field).into()),
            Some(Value::String(id)) => Ok(T::parse_as(field, id)?),
            Some(_) => Err(Error::invalid(field, format!("`{field}` must be a string")).into()),
        }
    }

    /// Takes an optional id out of the object (absent or null: `None`).
    pub fn take_id<T: TypedId>(&mut self, field: &str) -> Result<Option<T>, ApiError> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(id)) => Ok(Some(T::parse_as(field, &id)?)),
            Some(_) => Err(Error::invalid(field, format!("`{field}` must be a string")).into()),
        }
    }

    /// Whether the field is present (even as null).
    pub fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }

    /// An optional non-empty string.
    pub fn opt_str(&self, field: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Error::invalid(field, format!("`{field}` must be a string")).into()),
        }
    }

    /// A required non-empty string of at most `max` characters.
    pub fn str(&self, field: &str, max: usize) -> Result<String, ApiError> {
        let s = self
            .opt_str(field)?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| Error::missing(field))?;
        if s.chars().count() > max {
            return Err(Error::invalid(
                field,
                format!("`{field}` is longer than {max} characters"),
            )
            .into());
        }
        Ok(s.trim().to_string())
    }

    /// A decimal given as a string or a JSON number, returned as text.
    pub fn opt_decimal_text(&self, field: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            // Anything else: a whole JSON number, or refused.
            Some(v) => shared::fields::whole_number(v)
                .map(|n| Some(n.to_string()))
                .ok_or_else(|| {
                    Error::invalid(
                        field,
                        format!(
                            "`{field}` must be decimal text such as \"12.50\" or a whole number"
                        ),
                    )
                    .into()
                }),
        }
    }

    /// An optional whole number in `min..=max`.
    pub fn opt_u32(&self, field: &str, min: u32, max: u32) -> Result<Option<u32>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v @ Value::Number(_)) => match shared::fields::whole_number(v) {
                Some(v) if (i64::from(min)..=i64::from(max)).contains(&v) => Ok(Some(v as u32)),
                _ => Err(Error::invalid(
                    field,
                    format!("`{field}` must be a whole number from {min} to {max}"),
                )
                .into()),
            },
            Some(_) => Err(Error::invalid(
                field,
                format!("`{field}` must be a whole number from {min} to {max}"),
            )
            .into()),
        }
    }

    /// An optional boolean.
    pub fn opt_bool(&self, field: &str) -> Result<Option<bool>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => {
                Err(Error::invalid(field, format!("`{field}` must be true or false")).into())
            }
        }
    }

    /// An optional list of strings.
    pub fn opt_str_list(&self, field: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                    _ => Err(ApiError(Error::invalid(
                        field,
                        format!("`{field}` must be a list of non-empty strings"),
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => {
                Err(Error::invalid(field, format!("`{field}` must be a list of strings")).into())
            }
        }
    }

    /// An optional object of string values (numbers and booleans are taken as text).
    pub fn opt_str_map(&self, field: &str) -> Result<Option<BTreeMap<String, String>>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    Value::Number(n) => Ok((k.clone(), n.to_string())),
                    Value::Bool(b) => Ok((k.clone(), b.to_string())),
                    _ => Err(ApiError(Error::invalid(
                        format!("{field}.{k}"),
                        format!("`{field}.{k}` must be a string"),
                    ))),
                })
                .collect::<Result<BTreeMap<_, _>, _>>()
                .map(Some),
            Some(_) => Err(Error::invalid(field, format!("`{field}` must be an object")).into()),
        }
    }

    /// An optional nested object.
    pub fn opt_object(&self, field: &str) -> Result<Option<Fields>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(Fields(m.clone()))),
            Some(_) => Err(Error::invalid(field, format!("`{field}` must be an object")).into()),
        }
    }
}

/// Checks an absolute http(s) URL with a host.
pub fn http_url(field: &str, raw: &str) -> Result<url::Url, ApiError> {
    let url = url::Url::parse(raw.trim()).map_err(|e| {
        ApiError(Error::invalid(
            field,
            format!("`{field}` is not a valid URL: {e}"),
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(
            Error::invalid(field, format!("`{field}` must be an http or https URL")).into(),
        );
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid(field, format!("`{field}` must name a host")).into());
    }
    Ok(url)
}
