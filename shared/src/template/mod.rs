//! Macro templates: `{payout}`, `{sub1}`, `{payload.user_id}` in a URL, a form
//! body, a JSON body or a header value.
//!
//! A macro is `{` + name + `}`, the name made of letters, digits, `_` and `.`,
//! optionally with a default after a bar: `{is_loyaltyboost|0}` renders `0`
//! when the event has no such value. Any other brace is literal, so a JSON
//! template keeps its own braces: `{"amount": {payout}, "user": "{user_id}"}`.
//! A `{` that starts a name but never closes it is malformed and refused when
//! the endpoint is saved.
//!
//! Values are JSON values (attributes may be numbers, booleans, arrays,
//! objects). Each is encoded for where it stands: a URL component, a form
//! field, a header value (as text: a string as it is, a number or boolean as
//! written, null as empty, an array as its elements joined by commas, an
//! object as compact JSON), or JSON. In a JSON body a bare macro keeps its
//! type (`{customer.sub_ids}` is `["youtube"]`, `{has_paid}` is `true`, a
//! string that is a plain decimal such as a payout is a number, an empty value
//! is `null`); inside a JSON string it is escaped text. Whatever the values
//! hold, the result stays a valid URL, form or JSON document.

use serde_json::Value;
use std::collections::BTreeSet;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Literal(String),
    /// A macro, and its default when the event has no value for it.
    Macro(String, Option<String>),
}

/// A parsed template.
///
/// An endpoint holds its templates parsed: parsed once when saved (a bad one
/// is refused then), read back from the table by parsing the text it is
/// stored as, and rendered on every send without parsing again.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl serde::Serialize for Template {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> serde::Deserialize<'de> for Template {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Template::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// A template error, with the 1-based character position.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} at character {position}")]
pub struct TemplateError {
    pub position: usize,
    pub message: String,
}

impl Template {
    /// Parses `text`; refuses a macro that is opened and never closed, or a
    /// name with an empty segment (`{a..b}`).
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let chars: Vec<char> = text.chars().collect();
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '{' && chars.get(i + 1).is_some_and(|&n| is_name_char(n)) {
                let start = i;
                let mut j = i + 1;
                while j < chars.len() && is_name_char(chars[j]) {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().collect();
                let mut default = None;
                if chars.get(j) == Some(&'|') {
                    let mut k = j + 1;
                    while k < chars.len()
                        && !matches!(chars[k], '}' | '{')
                        && !chars[k].is_control()
                    {
                        k += 1;
                    }
                    default = Some(chars[j + 1..k].iter().collect::<String>());
                    j = k;
                }
                if chars.get(j) != Some(&'}') {
                    return Err(TemplateError {
                        position: start + 1,
                        message: "macro is not closed with `}`".into(),
                    });
                }
                if name.split('.').any(str::is_empty) {
                    return Err(TemplateError {
                        position: start + 1,
                        message: format!("macro `{{{name}}}` has an empty part"),
                    });
                }
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(Part::Macro(name, default));
                i = j + 1;
            } else {
                literal.push(c);
                i += 1;
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template {
            source: text.to_string(),
            parts,
        })
    }

    /// Text taken as it is, macros and all (a sealed secret at rest).
    pub fn literal(text: &str) -> Self {
        Template {
            source: text.to_string(),
            parts: if text.is_empty() {
                Vec::new()
            } else {
                vec![Part::Literal(text.to_string())]
            },
        }
    }

    /// The text it was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The macro names used, in order of first use.
    pub fn macros(&self) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Macro(m, _) if seen.insert(m.as_str()) => Some(m.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Renders with `encode` applied to each value; records macros that were
    /// empty and had no default.
    fn render_with(
        &self,
        values: &dyn Lookup,
        empty: &mut BTreeSet<String>,
        mut encode: impl FnMut(&str, &Value) -> String,
    ) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Macro(name, default) => {
                    let found = values.lookup(name).filter(|v| !is_empty(v));
                    let value = match (found, default) {
                        (Some(v), _) => v,
                        (None, Some(d)) => Value::String(d.clone()),
                        (None, None) => {
                            empty.insert(name.clone());
                            Value::Null
                        }
                    };
                    out.push_str(&encode(&out, &value));
                }
            }
        }
        out
    }

    /// Renders a URL: each value percent-encoded as a URL component.
    pub fn render_url(&self, values: &dyn Lookup, empty: &mut BTreeSet<String>) -> String {
        self.render_with(values, empty, |_, v| encode_component(&value_text(v)))
    }

    /// Renders a form body: each value form-encoded (`application/x-www-form-urlencoded`).
    pub fn render_form(&self, values: &dyn Lookup, empty: &mut BTreeSet<String>) -> String {
        self.render_with(values, empty, |_, v| {
            form_urlencoded::byte_serialize(value_text(v).as_bytes()).collect()
        })
    }

    /// Renders a header value: control characters (CR, LF) are dropped, from
    /// the values and from the template's own text, so a header value can
    /// never start a new header.
    pub fn render_header(&self, values: &dyn Lookup, empty: &mut BTreeSet<String>) -> String {
        self.render_with(values, empty, |_, v| value_text(v))
            .chars()
            .filter(|c| !c.is_control())
            .collect()
    }

    /// Renders a JSON body. Inside a string literal a value is JSON-escaped;
    /// outside one it becomes a JSON number if it is a plain decimal, `null`
    /// if empty, and a quoted string otherwise.
    pub fn render_json(&self, values: &dyn Lookup, empty: &mut BTreeSet<String>) -> String {
        self.render_with(values, empty, |so_far, v| {
            if in_json_string(so_far) {
                let quoted = Value::String(value_text(v)).to_string();
                quoted[1..quoted.len() - 1].to_string()
            } else {
                match v {
                    Value::String(s) if s.is_empty() => "null".into(),
                    Value::String(s) if is_json_number(s) => s.clone(),
                    other => other.to_string(),
                }
            }
        })
    }
}

/// Whether a URL template has a macro before its path: in the scheme, the
/// credentials, the host or the port. Endpoints refuse that: the partner's
/// host is fixed, never taken from event data (found by `make fuzz`).
pub fn macro_in_authority(url_template: &str) -> bool {
    let start = url_template.find("://").map(|i| i + 3).unwrap_or(0);
    let end = url_template[start..]
        .find(['/', '?', '#'])
        .map(|i| start + i)
        .unwrap_or(url_template.len());
    let head: Vec<char> = url_template[..end].chars().collect();
    if head.windows(2).any(|w| w[0] == '{' && is_name_char(w[1])) {
        return true;
    }
    // The text alone misses what a URL parser forgives (`https:/{x}/lp` is
    // `https://{x}/lp` to it): render every macro as a marker, parse the
    // result as a browser or an HTTP client would, and look for the marker
    // anywhere before the path.
    let Ok(template) = Template::parse(url_template) else {
        return false;
    };
    let rendered = template.render_url(&Marker, &mut BTreeSet::new());
    let Ok(url) = url::Url::parse(&rendered) else {
        return false;
    };
    let has = |part: &str| part.to_ascii_lowercase().contains(MARKER);
    has(url.scheme())
        || has(url.username())
        || url.password().is_some_and(has)
        || url.host_str().is_some_and(has)
        || url.port().is_some_and(|p| has(&p.to_string()))
}

/// What every macro renders as when looking for macros in a URL's authority.
const MARKER: &str = "zq9macroq9z";

struct Marker;

impl Lookup for Marker {
    fn lookup(&self, _name: &str) -> Option<Value> {
        Some(Value::String(MARKER.into()))
    }
}

/// Whether the end of `text` lies inside a JSON string literal.
fn in_json_string(text: &str) -> bool {
    let mut inside = false;
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            escaped = false;
        } else if inside && c == '\\' {
            escaped = true;
        } else if c == '"' {
            inside = !inside;
        }
    }
    inside
}

fn is_json_number(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, "0"));
    !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && (int == "0" || !int.starts_with('0'))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode_component(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a value renders as nothing (and so takes the macro's default).
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// A value as text, for URLs, forms and headers: a string as it is, numbers
/// and booleans as written, null as nothing, an array as its elements joined
/// by commas, an object as compact JSON.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(value_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Where macro values come from.
pub trait Lookup {
    /// The value of `name`, `None` when it names nothing.
    fn lookup(&self, name: &str) -> Option<Value>;
}

/// Sample values used to check, when an endpoint is saved, that its templates
/// render to a valid URL / JSON document.
pub struct SampleValues;

impl Lookup for SampleValues {
    fn lookup(&self, name: &str) -> Option<Value> {
        Some(match name {
            "payout" => Value::String("1.5".into()),
            "sample_list" => serde_json::json!(["a", 1]),
            _ => Value::String(format!("x\"&# y{name}")),
        })
    }
}

#[cfg(test)]
mod tests;
