//! The Postback Explorer as a person meets it: a real headless Chromium signs
//! in with a partner key, creates an endpoint, sends a test, sees a
//! conversion arrive in the history, filters by date, downloads the CSV
//! (opened with a real CSV parser), retries a failed delivery, and shows an
//! attacker's click parameter as text. With SCREENSHOTS_DIR set (`make
//! screenshots`), the main screens are saved at desktop and phone width.

use integration_tests::browser::Browser;
use integration_tests::receiver::{Receiver, Reply};
use integration_tests::{offer_body, TestApp, ADMIN_KEY};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

const XSS: &str = "<img src=x onerror=alert(1)>";

fn screenshots() -> Option<PathBuf> {
    std::env::var_os("SCREENSHOTS_DIR").map(PathBuf::from)
}

async fn history_of(t: &TestApp, partner_id: &str) -> Vec<Value> {
    let (s, h) = t
        .send(
            t.http
                .get(t.url(&format!("/partners/{partner_id}/deliveries")))
                .bearer_auth(ADMIN_KEY),
        )
        .await;
    assert_eq!(s, 200);
    h["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_sets_up_and_verifies_a_postback_in_the_console() {
    let t = TestApp::start().await;
    let shots = screenshots().map(|d| d.join("desktop"));
    let ok = Receiver::ok().await;
    let seed = t.seed(offer_body(), None).await;
    let pid = seed.partner_id.clone();

    let b = Browser::start(1280, 900).await;
    b.client.goto(&t.url("/console")).await.unwrap();
    b.wait("#signin").await;
    b.screenshot(shots.as_deref(), "1-sign-in").await;
    b.type_into("#key", "pbk_wrong_key").await;
    b.click("#signin-button").await;
    b.wait_text("#signin", "not valid").await;
    b.type_into("#key", &seed.partner_key).await;
    b.click("#signin-button").await;

    // No endpoint yet: set one up, watching the live preview.
    b.click("#new-endpoint").await;
    b.type_into("#f-name", "Main postback").await;
    b.type_into(
        "#f-url",
        &ok.url("/pb?tx={transaction_id}&sub={sub1}&payout={payout}"),
    )
    .await;
    let preview = b
        .wait_text("#preview", &format!("127.0.0.1:{}", ok.port))
        .await;
    assert!(preview.contains("/pb?tx="), "{preview}");
    b.wait_text("#preview", "{sub1}").await; // the sample has no sub1: flagged as empty
    let panel = b.wait_text("#preview-panel", "{click_id}").await;
    assert!(
        !panel.contains("[object"),
        "the macros are chips, not stringified nodes: {panel}"
    );
    let chips = b
        .client
        .find_all(fantoccini::Locator::Css("#macros .chip"))
        .await
        .unwrap();
    assert!(chips.len() >= 10, "the macros to click: {}", chips.len());
    b.type_into("#f-secret", "whsec_console-signing-secret-42")
        .await;
    // The picture's caption promises the live preview: the page back at the
    // top, and the preview rendered again after the last keystroke.
    b.client
        .execute("window.scrollTo(0, 0)", vec![])
        .await
        .unwrap();
    b.wait_text("#preview", &format!("127.0.0.1:{}", ok.port))
        .await;
    b.wait_text("#preview-panel", "{click_id}").await;
    b.screenshot(shots.as_deref(), "2-new-endpoint").await;
    b.click("#save-endpoint").await;
    b.wait_text("#endpoint-list", "Main postback").await;
    // Write-only: the secret is "set", never sent back to the browser.
    b.click("#endpoint-list .edit-endpoint").await;
    let secret_field = b.wait("#f-secret").await;
    assert_eq!(
        secret_field
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default(),
        ""
    );
    assert_eq!(
        secret_field
            .attr("placeholder")
            .await
            .unwrap()
            .unwrap_or_default(),
        "set — type to replace"
    );
    let source = b.client.source().await.unwrap();
    assert!(
        !source.contains("whsec_console-signing-secret-42"),
        "no secret in the page"
    );
    assert!(
        !b.client
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains(&seed.partner_key),
        "the key is never in a URL"
    );
    b.click("#nav-endpoints").await;
    b.screenshot(shots.as_deref(), "3-endpoints").await;

    // Test it: the exact request and their answer.
    b.click("#endpoint-list .test-endpoint").await;
    let result = b.wait_text("#test-result", "Accepted").await;
    assert!(result.contains("HTTP 200"), "{result}");
    b.screenshot(shots.as_deref(), "4-test").await;
    b.click(".close-dialog").await;
    assert_eq!(ok.count(), 1, "the test reached the partner's server");

    // A conversion whose click carries an attacker's markup.
    let click = t.click(&seed, json!({"sub1": XSS})).await;
    let (s, _) = t
        .postback(&[
            ("click_id", &click),
            ("transaction_id", "T-console"),
            ("payout", "12.50"),
        ])
        .await;
    assert_eq!(s, 200);
    t.pump_until("DeliveryQueue", Duration::from_secs(15), || async {
        ok.count() >= 2
    })
    .await;

    // It arrives in the history.
    b.click("#nav-history").await;
    let rows = b.wait_text("#history-rows", "T-console").await;
    assert!(
        rows.contains("delivered") && rows.contains("12.50"),
        "{rows}"
    );
    b.screenshot(shots.as_deref(), "5-history").await;

    // The delivery opens with its attempts and its request; the click's
    // markup is text, not an element, and nothing ran.
    b.click("#history-rows tr[data-delivery]").await;
    let rendered = b.wait_text(".dialog pre.request", "sub=").await;
    let detail = b.wait_text(".dialog", " ms").await; // each attempt's latency
    assert!(
        !detail.contains("[object") && !detail.contains("null"),
        "{detail}"
    );
    assert!(
        rendered.contains("%3Cimg") || rendered.contains(XSS),
        "the attacker's value is shown as text: {rendered}"
    );
    let imgs = b
        .client
        .find_all(fantoccini::Locator::Css("img"))
        .await
        .unwrap();
    assert!(imgs.is_empty(), "no element came out of the data");
    assert!(b.client.get_alert_text().await.is_err(), "no script ran");
    b.screenshot(shots.as_deref(), "6-delivery").await;
    b.click(".close-dialog").await;

    // Filter by date: a range in the past is empty; today has the delivery.
    b.select("#h-preset", "custom").await;
    b.client
        .execute(
            "const f = document.querySelector('#h-from'); f.value = '2020-01-01'; f.dispatchEvent(new Event('change'));
             const t = document.querySelector('#h-to'); t.value = '2020-01-31'; t.dispatchEvent(new Event('change'));",
            vec![],
        )
        .await
        .unwrap();
    b.wait_text("#history-rows", "Nothing in this range").await;
    b.select("#h-preset", "today").await;
    b.wait_text("#history-rows", "T-console").await;

    // Download exactly that range as CSV, and open it with a CSV parser.
    b.click("#history-csv").await;
    let file = b.downloaded(".csv").await;
    let mut reader = csv::Reader::from_path(&file).unwrap();
    let headers = reader.headers().unwrap().clone();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let tx = headers.iter().position(|h| h == "transaction_id").unwrap();
    let status = headers.iter().position(|h| h == "status").unwrap();
    assert_eq!(
        records.len(),
        1,
        "exactly today's one delivery: {records:?}"
    );
    assert_eq!(&records[0][tx], "T-console");
    assert_eq!(&records[0][status], "delivered");

    // A failed delivery, retried from its detail.
    let failing = Receiver::start(vec![Reply::Status(500)]).await;
    let (s, ep) = t
        .admin_post(
            &format!("/partners/{pid}/endpoints"),
            json!({"name": "Backup", "url": failing.url("/fail?tx={transaction_id}"), "retry_schedule": [0]}),
        )
        .await;
    assert_eq!(s, 201, "{ep}");
    let (s, _) = t
        .postback(&[
            ("click_id", &click),
            ("transaction_id", "T-fails"),
            ("payout", "3.00"),
        ])
        .await;
    assert_eq!(s, 200);
    let failed_id = {
        let mut id = None;
        for _ in 0..100 {
            t.pump_for("DeliveryQueue", Duration::from_millis(200))
                .await;
            id = history_of(&t, &pid)
                .await
                .into_iter()
                .find(|d| d["status"] == "failed")
                .and_then(|d| d["delivery_id"].as_str().map(String::from));
            if id.is_some() {
                break;
            }
        }
        id.expect("a failed delivery")
    };
    b.click("#nav-history").await;
    b.select("#h-status", "failed").await;
    b.wait_text("#history-rows", "T-fails").await;
    b.click(&format!("#history-rows tr[data-delivery='{failed_id}']"))
        .await;
    b.wait_text(".dialog", "500").await;
    b.click("#retry-delivery").await;
    b.wait_text("#toast", "Retry queued").await;
    let retried = history_of(&t, &pid)
        .await
        .into_iter()
        .find(|d| d["delivery_id"] == failed_id.as_str())
        .unwrap();
    assert_eq!(retried["status"], "pending", "{retried}");

    // Health: delivered vs failed per endpoint, in a picture.
    b.click("#nav-health").await;
    let health = b.wait_text("#health", "Main postback").await;
    assert!(health.contains("Last success"), "{health}");
    let bars = b
        .client
        .find_all(fantoccini::Locator::Css("#health svg rect"))
        .await
        .unwrap();
    assert!(!bars.is_empty(), "the chart has bars");
    b.screenshot(shots.as_deref(), "7-health").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_sees_everything_and_every_screen_fits_a_phone() {
    let t = TestApp::start().await;
    let ok = Receiver::ok().await;
    let seed = t
        .seed(
            offer_body(),
            Some(json!({"name": "Phone", "url": ok.url("/pb?tx={transaction_id}")})),
        )
        .await;
    let click = t.click(&seed, json!({"sub1": XSS})).await;
    let (s, _) = t
        .postback(&[("click_id", &click), ("transaction_id", "T-phone")])
        .await;
    assert_eq!(s, 200);
    t.pump_until("DeliveryQueue", Duration::from_secs(15), || async {
        ok.count() >= 1
    })
    .await;

    for (label, width, height) in [("desktop", 1280, 900), ("phone", 390, 844)] {
        let shots = screenshots().map(|d| d.join(label));
        let b = Browser::start(width, height).await;
        b.client.goto(&t.url("/")).await.unwrap();
        b.wait("#signin").await;
        b.type_into("#key", ADMIN_KEY).await;
        b.click("#signin-button").await;
        b.wait("#partner-picker").await;
        b.select("#partner-picker", &seed.partner_id).await;
        for (view, expect) in [
            ("endpoints", "Phone"),
            // (The transaction column is hidden on a phone: the row shows the status.)
            ("history", "delivered"),
            ("health", "Phone"),
            ("operator", "Dead letters"),
        ] {
            b.click(&format!("#nav-{view}")).await;
            b.wait_text("#main", expect).await;
            let errors = b
                .client
                .find_all(fantoccini::Locator::Css("#main .error"))
                .await
                .unwrap();
            if let Some(e) = errors.first() {
                panic!(
                    "{view} shows an error: {}",
                    e.text().await.unwrap_or_default()
                );
            }
            let overflow: Value = b
                .client
                .execute(
                    "return document.documentElement.scrollWidth - window.innerWidth",
                    vec![],
                )
                .await
                .unwrap();
            if label == "phone" || view == "operator" {
                b.screenshot(shots.as_deref(), &format!("admin-{view}"))
                    .await;
            }
            assert!(
                overflow.as_f64().unwrap_or(0.0) <= 1.0,
                "{view} overflows a {width} px screen by {overflow} px"
            );
        }
        // The operator's view of an offer's postbacks (the loop ended on it).
        b.select("#offer-picker", &seed.offer_id).await;
        b.wait_text("#offer-postbacks", "Phone").await;
        assert!(b.client.get_alert_text().await.is_err(), "no script ran");
    }
}

/// Health → "Resend all failed since…": the count before confirming, then
/// the progress until every resent delivery has ended; the history says which
/// attempts came from the recovery, and offers the same action filtered to failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_resends_everything_a_downtime_failed_from_the_console() {
    let t = TestApp::start().await;
    let shots = screenshots().map(|d| d.join("desktop"));
    // Down for the first three requests, then up.
    let partner = Receiver::start(vec![
        Reply::Status(500),
        Reply::Status(500),
        Reply::Status(500),
        Reply::Status(200),
    ])
    .await;
    let seed = t
        .seed(
            offer_body(),
            Some(json!({"name": "Main postback", "url": partner.url("/pb?tx={transaction_id}"), "retry_schedule": [0]})),
        )
        .await;
    let pid = seed.partner_id.clone();
    let click = t.click(&seed, json!({})).await;
    for tx in ["T-down-1", "T-down-2", "T-down-3"] {
        let (s, b) = t
            .postback(&[
                ("click_id", &click),
                ("transaction_id", tx),
                ("payout", "4.00"),
            ])
            .await;
        assert_eq!(s, 200, "{b}");
    }
    let failed = t
        .pump_until("DeliveryQueue", Duration::from_secs(20), || async {
            history_of(&t, &pid)
                .await
                .iter()
                .filter(|d| d["status"] == "failed")
                .count()
                == 3
        })
        .await;
    assert!(failed, "three postbacks failed while the partner was down");
    // The deliver worker runs beside the browser, as it does in the cloud.
    let pump = {
        let worker = t.worker.clone();
        let url = t.queue_url("DeliveryQueue");
        tokio::spawn(async move {
            let arn = postback_local::queue_arn(&worker.app, &url).await.unwrap();
            loop {
                let _ = postback_local::poll_once(
                    &worker,
                    postback_local::Consumer::Deliveries,
                    &url,
                    &arn,
                    1,
                )
                .await;
            }
        })
    };

    let b = Browser::start(1280, 900).await;
    b.client.goto(&t.url("/console")).await.unwrap();
    b.wait("#signin").await;
    b.type_into("#key", &seed.partner_key).await;
    b.click("#signin-button").await;
    b.click("#nav-health").await;
    b.wait_text("#health", "Main postback").await;
    b.click("#health button.recover").await;
    let count = b.wait_text("#recover-count", "will be sent again").await;
    assert!(count.starts_with("3 failed deliveries"), "{count}");
    let confirm = b.wait_text("#recover-confirm", "Resend 3").await;
    assert_eq!(confirm, "Resend 3");
    b.click("#recover-confirm").await;
    let progress = b.wait_text("#recover-progress", "finished").await;
    assert!(
        progress.contains("Queued 3 of 3") && progress.contains("delivered 3"),
        "{progress}"
    );
    b.screenshot(shots.as_deref(), "8-recover").await;
    assert_eq!(partner.count(), 6, "three failed attempts, three resent");
    b.click(".close-dialog").await;

    // The history: the attempts that came from the recovery say so.
    b.click("#nav-history").await;
    b.wait_text("#history-rows", "T-down-1").await;
    b.click("#history-rows tr[data-delivery]").await;
    b.wait_text(".dialog", "recovery").await;
    b.click(".close-dialog").await;
    // Filtered to failed with an endpoint, the same action is offered.
    b.select("#h-status", "failed").await;
    b.select("#h-endpoint", seed.endpoint_id.as_deref().unwrap())
        .await;
    let offered = b
        .wait_text("#history-recover", "Resend all failed since")
        .await;
    assert!(offered.contains("Resend all failed since"), "{offered}");
    b.click("#history-recover").await;
    b.wait_text("#recover-count", "0 failed deliveries").await;
    pump.abort();
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_policy_and_no_third_party_code() {
    let t = TestApp::start().await;
    for (path, kind) in [
        ("/console", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let r = t.http.get(t.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        for rule in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(rule), "{path}: {csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        let body = r.text().await.unwrap();
        assert!(
            !body.contains("http://") && !body.contains("https://") || path != "/console",
            "nothing loaded from elsewhere"
        );
        if path == "/console/app.js" {
            assert!(
                !body.contains("innerHTML")
                    && !body.contains("insertAdjacentHTML")
                    && !body.contains("eval("),
                "values reach the page only as text"
            );
        }
    }
    let r = t.http.get(t.url("/")).send().await.unwrap();
    assert_eq!(r.headers()["location"], "/console");
}
