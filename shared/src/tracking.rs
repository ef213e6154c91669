//! Tracking links: the offer's landing URL, with the click's values in it.
//!
//! The landing URL is a template: `{click_id}`, `{partner_id}` (or
//! `{affiliate_id}`, MomentScience's name), `{offer_id}`, and
//! `{click.<param>}` for any parameter the click carried (`{click.sub1}`),
//! each URL-encoded. Without a `{click_id}` macro the click id is appended
//! as the `click_id` query parameter. Any other macro is refused when the
//! offer is saved, so a typo cannot send traffic to a broken URL.

use serde_json::Value;
use std::collections::BTreeSet;

use crate::domain::Click;
use crate::template::{macro_in_authority, Lookup, Template};

/// The macros a landing URL may use besides `click.<param>`.
pub const LANDING_MACROS: [&str; 4] = ["click_id", "partner_id", "affiliate_id", "offer_id"];

/// Checks a landing URL template; the error is a sentence.
pub fn check_landing(url: &str) -> Result<(), String> {
    let t = Template::parse(url).map_err(|e| format!("is not a valid template: {e}"))?;
    if macro_in_authority(url) {
        return Err("may use macros only after the host (in the path or query)".into());
    }
    for name in t.macros() {
        let param = name.strip_prefix("click.");
        let known = LANDING_MACROS.contains(&name)
            || param.is_some_and(|p| !p.is_empty() && !p.contains('.'));
        if !known {
            return Err(format!(
                "uses `{{{name}}}`, which is not a click value: use {}, or click.<parameter>",
                LANDING_MACROS.map(|m| format!("{{{m}}}")).join(", ")
            ));
        }
    }
    Ok(())
}

struct ClickValues<'a>(&'a Click);

impl Lookup for ClickValues<'_> {
    fn lookup(&self, name: &str) -> Option<Value> {
        let c = self.0;
        let text = |s: &str| Some(Value::String(s.to_string()));
        match name {
            "click_id" => text(&c.click_id),
            "partner_id" | "affiliate_id" => text(&c.partner_id),
            "offer_id" => text(&c.offer_id),
            other => other
                .strip_prefix("click.")
                .and_then(|p| c.attributes.get(p))
                .cloned(),
        }
    }
}

/// Where the click goes: the landing URL rendered with the click's values,
/// with `click_id` appended when the template does not place it.
pub fn landing_url(landing: &str, click: &Click) -> String {
    let Ok(t) = Template::parse(landing) else {
        return landing.to_string();
    };
    let rendered = t.render_url(&ClickValues(click), &mut BTreeSet::new());
    if t.macros().contains(&"click_id") {
        return rendered;
    }
    match url::Url::parse(&rendered) {
        Ok(mut url) => {
            url.query_pairs_mut()
                .append_pair("click_id", &click.click_id);
            url.to_string()
        }
        Err(_) => rendered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn click() -> Click {
        Click {
            click_id: crate::ids::t("c1"),
            offer_id: crate::ids::t("789"),
            partner_id: crate::ids::t("pub-7"),
            attributes: [("sub1".to_string(), Value::String("a&b".into()))].into(),
            created_at: Utc::now(),
            expires_at: Utc::now(),
        }
    }

    #[test]
    fn the_click_id_is_appended_or_placed_and_click_values_fill_the_macros() {
        assert_eq!(
            landing_url("https://a.example/lp?x=1", &click()),
            "https://a.example/lp?x=1&click_id=c1"
        );
        assert_eq!(
            landing_url(
                "https://yourdomain.example/landing?click_id={click_id}&offer_id={offer_id}&affiliate_id={affiliate_id}&s={click.sub1}&m={click.missing}",
                &click()
            ),
            "https://yourdomain.example/landing?click_id=c1&offer_id=789&affiliate_id=pub-7&s=a%26b&m="
        );
    }

    #[test]
    fn unknown_macros_and_macros_in_the_host_are_refused() {
        assert!(check_landing("https://a.example/lp?c={click_id}&s={click.sub1}").is_ok());
        assert!(check_landing("https://a.example/lp?p={payout}").is_err());
        assert!(check_landing("https://a.example/lp?p={click.}").is_err());
        assert!(check_landing("https://{click.host}/lp").is_err());
        assert!(check_landing("https://a.example/lp?p={click_id").is_err());
    }
}
