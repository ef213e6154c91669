//! Field rules shared by every route: names, statuses and attributes, each
//! refused with an error that names the field (ids have their types, in
//! `crate::ids`).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::Status;
use crate::error::{Error, Result};

/// Longest event or goal name.
pub const MAX_NAME_LEN: usize = 64;
/// Most extra parameters / attributes stored with a click or event.
pub const MAX_ATTRIBUTES: usize = 50;
/// Longest attribute value.
pub const MAX_ATTRIBUTE_LEN: usize = 1024;
/// Most bytes (as JSON) of one set of attributes (a click's, a postback's
/// extra parameters, an event's), and of an event's attributes once merged
/// with its click's or transaction's: an event is copied into each of its
/// deliveries, and up to 100 of them must fit one 4 MB DynamoDB transaction.
pub const MAX_ATTRIBUTES_BYTES: usize = 16 * 1024;
/// Deepest nesting of an attribute value (DynamoDB refuses beyond 32 levels;
/// no network's payload needs more than a few).
pub const MAX_ATTRIBUTE_DEPTH: usize = 8;

/// A JSON number that is whole (`30`, and `30.0`, which JSON Schema and most
/// JSON libraries count as the same integer), within ±2^53.
pub fn whole_number(v: &serde_json::Value) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    (f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0).then_some(f as i64)
}

/// Checks an event or goal name: 1-64 characters of letters, digits and `_ . : -`.
pub fn name_field(field: &str, raw: &str) -> Result<String> {
    let s = raw;
    if s.is_empty() || s.len() > MAX_NAME_LEN {
        return Err(Error::invalid(
            field,
            format!("`{field}` must be 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
    {
        return Err(Error::invalid(
            field,
            format!("`{field}` may hold only letters, digits and _ . : -"),
        ));
    }
    Ok(s.to_string())
}

/// How deeply a JSON value nests (a scalar is 0).
pub fn depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Checks a set of attributes as a whole: its size as JSON and how deep its values nest.
pub fn attributes_bounds<V: serde::Serialize>(
    field: &str,
    values: &BTreeMap<String, V>,
) -> Result<()> {
    let json = serde_json::to_value(values).unwrap_or_default();
    if depth(&json) > MAX_ATTRIBUTE_DEPTH + 1 {
        return Err(Error::invalid(
            field,
            format!("`{field}` nests deeper than {MAX_ATTRIBUTE_DEPTH} levels"),
        ));
    }
    if json.to_string().len() > MAX_ATTRIBUTES_BYTES {
        return Err(Error::invalid(
            field,
            format!("`{field}` is larger than {MAX_ATTRIBUTES_BYTES} bytes as JSON"),
        ));
    }
    Ok(())
}

pub(crate) fn status_field(field: &str, raw: &str) -> Result<Status> {
    Status::parse(raw).ok_or_else(|| {
        Error::invalid(
            field,
            format!("`{field}` must be pending, approved or rejected"),
        )
    })
}

pub(crate) fn attribute(field: &str, key: &str, value: &str) -> Result<()> {
    if key.is_empty() || key.chars().count() > MAX_NAME_LEN || key.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("`{field}` has a key that is empty, too long or not printable"),
        ));
    }
    if value.chars().count() > MAX_ATTRIBUTE_LEN {
        return Err(Error::invalid(
            format!("{field}.{key}"),
            format!("`{field}.{key}` is longer than {MAX_ATTRIBUTE_LEN} characters"),
        ));
    }
    Ok(())
}

/// JSON attributes (a click's, a postback's extra parameters, an event's),
/// checked: at most 50 keys, each string value at most 1,024 characters, the
/// whole at most 16 KiB as JSON and 8 levels deep.
pub fn json_attributes(
    field: &str,
    values: BTreeMap<String, serde_json::Value>,
) -> Result<BTreeMap<String, serde_json::Value>> {
    if values.len() > MAX_ATTRIBUTES {
        return Err(Error::invalid(
            field,
            format!("`{field}` has more than {MAX_ATTRIBUTES} entries"),
        ));
    }
    // A string value is capped on its own; other JSON values (a payload
    // object) only by the whole set's size and depth below.
    for (k, v) in &values {
        let text = match v {
            serde_json::Value::String(s) => s.as_str(),
            _ => "",
        };
        attribute(field, k, text)?;
    }
    attributes_bounds(field, &values)?;
    Ok(values)
}

/// A time field: RFC 3339, or a date (with `end_of_day`, the end of that
/// day, as a range's `to` means it).
pub fn time_field(field: &str, raw: &str, end_of_day: bool) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d").map_err(|_| {
        Error::invalid(
            field,
            format!("`{field}` must be a date (2026-11-23) or an RFC 3339 time"),
        )
    })?;
    let t = if end_of_day {
        date.and_hms_micro_opt(23, 59, 59, 999_999)
    } else {
        date.and_hms_opt(0, 0, 0)
    };
    Ok(t.unwrap_or_default().and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_are_accepted_for_the_range() {
        assert_eq!(
            time_field("from", "2026-11-01", false)
                .unwrap()
                .to_rfc3339(),
            "2026-11-01T00:00:00+00:00"
        );
        assert!(time_field("to", "2026-11-01", true)
            .unwrap()
            .to_rfc3339()
            .starts_with("2026-11-01T23:59:59.999999"));
        assert_eq!(
            time_field("from", "2026-11-01T10:00:00+02:00", false)
                .unwrap()
                .to_rfc3339(),
            "2026-11-01T08:00:00+00:00"
        );
        assert!(time_field("from", "yesterday", false).is_err());
    }
}
