//! What `cargo lambda watch` + `cargo lambda invoke` need on a laptop: the
//! functions' environment as a dotenv file ([`env_file`]), and the sample
//! events of `events/` with their placeholders (`__PARTNER_KEY__`,
//! `__ENDPOINT_ID__`, …) filled with live ids ([`fill_dir`]) from a seeded
//! offer `lambda-offer`, partner `lambda-partner`, endpoint, click, conversion
//! and recovery.

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

use shared::App;

/// The live ids the placeholders stand for.
#[derive(Debug, Clone, Default)]
pub struct Ids {
    pub partner_key: String,
    pub endpoint_id: String,
    pub click_id: String,
    pub event_id: String,
    pub delivery_id: String,
    /// A recovery started from `http-endpoints-recover.json` (left as the
    /// placeholder until one is known).
    pub recovery_id: String,
}

/// The admin key the sample events carry (make dev's default).
pub const SAMPLE_ADMIN_KEY: &str = "dev-admin-key-change-me";

/// One event with its placeholders filled; the queue names of the dev
/// stack (`postback-dev-…`) become `prefix`'s.
pub fn fill(template: &str, ids: &Ids, admin_key: &str, prefix: &str) -> String {
    template
        .replace(SAMPLE_ADMIN_KEY, admin_key)
        .replace("__PARTNER_KEY__", &ids.partner_key)
        .replace("__ENDPOINT_ID__", &ids.endpoint_id)
        .replace("__CLICK_ID__", &ids.click_id)
        .replace("__DELIVERY_ID__", &ids.delivery_id)
        .replace("__EVENT_ID__", &ids.event_id)
        .replace(
            "__RECOVERY_ID__",
            if ids.recovery_id.is_empty() {
                "__RECOVERY_ID__"
            } else {
                &ids.recovery_id
            },
        )
        .replace("postback-dev-", &format!("{prefix}-"))
}

/// The functions' environment as `KEY=value` lines: what the template
/// resolves to (`resolved`), the admin key, and the SDK's endpoint, region
/// and credential variables of this process.
pub fn env_file(resolved: &BTreeMap<String, String>, admin_key: &str) -> String {
    let mut vars = resolved.clone();
    vars.insert("ADMIN_API_KEY".into(), admin_key.into());
    vars.entry("ALLOW_PRIVATE_TARGETS".into())
        .or_insert_with(|| "true".into());
    for (k, v) in std::env::vars() {
        if k.starts_with("AWS_") || k == "RUST_LOG" {
            vars.insert(k, v);
        }
    }
    let mut out = String::from(
        "# Written by postback-local --write-env: the functions' environment for\n# cargo lambda watch --env-file (the local stand-ins).\n",
    );
    for (k, v) in vars {
        out.push_str(&format!("{k}={v}\n"));
    }
    out
}

async fn call(
    app: &Arc<App>,
    method: Method,
    uri: &str,
    key: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Body::from(body.map(|b| b.to_string()).unwrap_or_default()))?;
    let response = api::router(app.clone()).oneshot(request).await?;
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

fn expect(what: &str, (status, body): (u16, Value), ok: &[u16]) -> anyhow::Result<Value> {
    if ok.contains(&status) {
        Ok(body)
    } else {
        anyhow::bail!("{what}: {status} {body}")
    }
}

/// The offer and partner `make lambda-events` owns: its own ids, so it never
/// touches what a person made by hand.
pub const OFFER: &str = "lambda-offer";
pub const PARTNER: &str = "lambda-partner";
/// The endpoint it seeds, found again by name on the next run.
const ENDPOINT_NAME: &str = "lambda events";

/// Seeds its own offer and partner (kept if they exist), the partner's key
/// (kept in `key_file`: keys are stored hashed, so a later run reuses the
/// file's key, or adds one; it never revokes a key), its endpoint to
/// `receiver_url` (reused), a click and a conversion, through the API's own
/// router. Run it as often as you like.
pub async fn seed(
    app: &Arc<App>,
    admin_key: &str,
    receiver_url: &str,
    key_file: &std::path::Path,
) -> anyhow::Result<Ids> {
    let offer = json!({"id": OFFER, "name": "Loans", "advertiser": "Acme",
        "landing_url": "https://acme.example/lp", "default_payout": "10.00"});
    expect(
        "offer lambda-offer",
        call(app, Method::POST, "/offers", admin_key, Some(offer)).await?,
        &[201, 409],
    )?;
    let partner = call(
        app,
        Method::POST,
        "/partners",
        admin_key,
        Some(json!({"id": PARTNER, "name": "Lambda events partner"})),
    )
    .await?;
    let partner_key = match partner.0 {
        201 => partner.1["api_key"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        _ => {
            let kept = std::fs::read_to_string(key_file).unwrap_or_default();
            let kept = kept.trim();
            let works = !kept.is_empty()
                && call(
                    app,
                    Method::GET,
                    &format!("/partners/{PARTNER}"),
                    kept,
                    None,
                )
                .await?
                .0 == 200;
            if works {
                kept.to_string()
            } else {
                let added = call(
                    app,
                    Method::POST,
                    &format!("/partners/{PARTNER}/keys"),
                    admin_key,
                    None,
                )
                .await?;
                if added.0 == 409 {
                    anyhow::bail!(
                        "partner {PARTNER} already has its most keys and none is in {}: revoke one (DELETE /partners/{PARTNER}/keys/<id>) and run again",
                        key_file.display()
                    );
                }
                expect("a key for lambda-partner", added, &[201])?["api_key"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            }
        }
    };
    if let Some(dir) = key_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(key_file, format!("{partner_key}\n"))?;
    let listed = expect(
        "endpoints of lambda-partner",
        call(
            app,
            Method::GET,
            &format!("/partners/{PARTNER}/endpoints"),
            admin_key,
            None,
        )
        .await?,
        &[200],
    )?;
    let existing = listed["items"]
        .as_array()
        .and_then(|items| items.iter().find(|e| e["name"] == ENDPOINT_NAME))
        .cloned();
    let endpoint = match existing {
        Some(e) => e,
        None => expect(
            "endpoint",
            call(
                app,
                Method::POST,
                &format!("/partners/{PARTNER}/endpoints"),
                admin_key,
                Some(json!({"name": ENDPOINT_NAME, "url": format!("{receiver_url}?payout={{payout}}&tx={{transaction_id}}")})),
            )
            .await?,
            &[201],
        )?,
    };
    let click = expect(
        "click",
        call(
            app,
            Method::POST,
            "/clicks",
            admin_key,
            Some(json!({"offer_id": OFFER, "partner_id": PARTNER, "attributes": {"sub1": "abc"}})),
        )
        .await?,
        &[201],
    )?;
    let click_id = click["click_id"].as_str().unwrap_or_default().to_string();
    let tx = format!("LAMBDA-{}", &shared::ids::ClickId::random()[..8]);
    let recorded = expect(
        "conversion",
        call(
            app,
            Method::GET,
            &format!(
                "/postback?click_id={click_id}&event=purchase&payout=49.99&transaction_id={tx}"
            ),
            admin_key,
            None,
        )
        .await?,
        &[200],
    )?;
    let event_id = recorded["conversion_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let endpoint_id = endpoint["id"].as_str().unwrap_or_default().to_string();
    let delivery_id = app
        .store
        .get_event(&event_id.parse()?)
        .await?
        .and_then(|e| e.delivery_ids.into_iter().next())
        .map(String::from)
        .unwrap_or_default();
    // A recovery for the progress sample: the one running, or a new one of
    // today's failed deliveries (usually none).
    let partner_id: shared::ids::PartnerId = PARTNER.parse()?;
    let running = app
        .store
        .recovery_lock(&partner_id, &endpoint_id.parse()?)
        .await?;
    let recovery_id = match running {
        Some(id) => id.to_string(),
        None => expect(
            "recovery",
            call(
                app,
                Method::POST,
                &format!("/partners/{PARTNER}/endpoints/{endpoint_id}/recover"),
                admin_key,
                Some(json!({"since": chrono::Utc::now().format("%Y-%m-%d").to_string()})),
            )
            .await?,
            &[202],
        )?["recovery_id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    };
    Ok(Ids {
        partner_key,
        endpoint_id,
        click_id,
        event_id,
        delivery_id,
        recovery_id,
    })
}

/// Fills every `*.json` of `src` into `dst`; how many were written.
pub fn fill_dir(
    src: &Path,
    dst: &Path,
    ids: &Ids,
    admin_key: &str,
    prefix: &str,
) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dst)?;
    let mut n = 0;
    for entry in std::fs::read_dir(src)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        if let Some(name) = path.file_name() {
            std::fs::write(dst.join(name), fill(&text, ids, admin_key, prefix))?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled() {
        let ids = Ids {
            partner_key: "pbk_lambda-partner_k".into(),
            endpoint_id: "ep_1".into(),
            click_id: "c1".into(),
            event_id: "evt_1".into(),
            delivery_id: "dlv_1".into(),
            recovery_id: String::new(),
        };
        let text = "Bearer dev-admin-key-change-me __PARTNER_KEY__ __ENDPOINT_ID__ __CLICK_ID__ __EVENT_ID__ __DELIVERY_ID__ arn:aws:sqs:us-east-1:000000000000:postback-dev-EventsQueue";
        let filled = fill(text, &ids, "admin-key-0123456789", "t123");
        assert_eq!(filled, "Bearer admin-key-0123456789 pbk_lambda-partner_k ep_1 c1 evt_1 dlv_1 arn:aws:sqs:us-east-1:000000000000:t123-EventsQueue");
    }

    #[test]
    fn the_env_file_has_the_resolved_names_and_the_admin_key() {
        let resolved =
            BTreeMap::from([("TABLE_NAME".to_string(), "postback-dev-Table".to_string())]);
        let text = env_file(&resolved, "admin-key-0123456789");
        assert!(text.contains("TABLE_NAME=postback-dev-Table\n"));
        assert!(text.contains("ADMIN_API_KEY=admin-key-0123456789\n"));
        assert!(text.contains("ALLOW_PRIVATE_TARGETS=true\n"));
    }
}
