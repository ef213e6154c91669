//! The public contract at its edges: every error is JSON naming what is at
//! fault (paths that do not decode, queries that are not UTF-8, URIs too
//! long), write-only header values are sealed whatever case names them, a
//! URL's host never comes from a macro, every endpoint field is bounded.

use integration_tests::*;
use serde_json::{json, Value};

/// Status, content type and body of a raw request (the body need not be JSON).
async fn raw(req: reqwest::RequestBuilder) -> (u16, String, String) {
    let resp = req.send().await.expect("request to the router");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, content_type, resp.text().await.unwrap_or_default())
}

/// Asserts a JSON error `{"error":{"code","message"}}` with `status`, and returns it.
fn json_error(got: (u16, String, String), status: u16, what: &str) -> Value {
    let (s, content_type, body) = got;
    assert_eq!(s, status, "{what}: {body}");
    assert!(
        content_type.starts_with("application/json"),
        "{what}: answered {content_type:?}: {body}"
    );
    let v: Value =
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("{what}: not JSON: {body:?}"));
    assert!(
        v["error"]["code"].is_string() && v["error"]["message"].is_string(),
        "{what}: {v}"
    );
    v
}

#[tokio::test]
async fn a_path_that_does_not_decode_is_a_json_400_on_every_partner_route() {
    let t = TestApp::start().await;
    let seed = t.seed(offer_body(), None).await;
    // A valid partner key: what any partner holds.
    let bad = "%FF%FE";
    let routes = [
        ("GET", format!("/partners/{bad}")),
        ("GET", format!("/partners/{bad}/endpoints")),
        ("POST", format!("/partners/{bad}/endpoints")),
        ("GET", format!("/partners/{bad}/keys")),
        ("POST", format!("/partners/{bad}/keys")),
        ("GET", format!("/partners/{bad}/deliveries")),
        ("POST", format!("/partners/{bad}/endpoints/preview")),
        (
            "GET",
            format!("/partners/{}/endpoints/{bad}", seed.partner_id),
        ),
        (
            "DELETE",
            format!("/partners/{}/keys/{bad}", seed.partner_id),
        ),
        ("POST", format!("/deliveries/{bad}/retry")),
        ("GET", format!("/offers/{bad}")),
        ("GET", format!("/events/{bad}/deliveries")),
    ];
    for (method, path) in routes {
        let req = t
            .http
            .request(method.parse().unwrap(), t.url(&path))
            .bearer_auth(&seed.partner_key)
            .json(&json!({}));
        let e = json_error(raw(req).await, 400, &format!("{method} {path}"));
        assert!(
            ["invalid_path", "invalid_field"].contains(&e["error"]["code"].as_str().unwrap()),
            "{method} {path}: {e}"
        );
    }
    // The same with an id that decodes but breaks the id rule: named.
    let req = t
        .http
        .get(t.url("/partners/a%20b/endpoints"))
        .bearer_auth(&seed.partner_key);
    let e = json_error(raw(req).await, 400, "a space in {pid}");
    assert_eq!(e["error"]["field"], "partner_id");
}

#[tokio::test]
async fn queries_that_are_not_utf8_and_uris_too_long_answer_json() {
    let t = TestApp::start().await;
    let seed = t.seed(offer_body(), None).await;
    let e = json_error(
        raw(t.http.get(t.url("/postback?click_id=%FF%FE&event=x"))).await,
        400,
        "a click id that is not UTF-8",
    );
    assert_eq!(e["error"]["field"], "click_id");
    let e = json_error(
        raw(t.http.get(t.url(&format!(
            "/click?offer_id={}&partner_id={}&sub1=%C3%28",
            seed.offer_id, seed.partner_id
        ))))
        .await,
        400,
        "a click parameter that is not UTF-8",
    );
    assert_eq!(e["error"]["field"], "sub1");
    let long = "a".repeat(9_000);
    let e = json_error(
        raw(t
            .http
            .get(t.url(&format!(
                "/partners/{}/deliveries?x={long}",
                seed.partner_id
            )))
            .bearer_auth(&seed.partner_key))
        .await,
        414,
        "a URI over 8 KiB",
    );
    assert_eq!(e["error"]["code"], "uri_too_long");
    // Unknown routes and methods: JSON too.
    json_error(raw(t.http.get(t.url("/nope"))).await, 404, "no such route");
    json_error(
        raw(t.http.put(t.url("/postback"))).await,
        405,
        "no such method",
    );
}

#[tokio::test]
async fn a_secret_header_named_in_another_case_is_sealed_in_the_table() {
    let t = TestApp::start().await;
    let seed = t.seed(offer_body(), None).await;
    let value = "header-secret-case-40917";
    let (s, e) = t
        .send(
            t.http
                .post(t.url(&format!("/partners/{}/endpoints", seed.partner_id)))
                .bearer_auth(&seed.partner_key)
                .json(&json!({"name": "case", "url": "https://partner.example/pb",
                    "headers": {"X-Api-Key": value}, "secret_headers": ["x-api-key"]})),
        )
        .await;
    assert_eq!(s, 201, "{e}");
    assert_eq!(e["headers"]["X-Api-Key"], Value::Null, "masked: {e}");
    let item = t
        .raw_endpoint_item(&seed.partner_id, e["id"].as_str().unwrap())
        .await;
    let stored = format!("{item:?}");
    assert!(!stored.contains(value), "stored in clear: {stored}");
    assert!(stored.contains("enc:v1:"), "sealed: {stored}");
}

#[tokio::test]
async fn a_landing_url_never_takes_its_host_from_a_macro_however_spelled() {
    let t = TestApp::start().await;
    for url in [
        "https:/{click.dest}/lp",
        "https:{click.dest}/lp",
        "https://{click.dest}/lp",
        "https://acme.example{click.path}",
        "{click.scheme}://acme.example/lp",
    ] {
        let mut offer = offer_body();
        offer["landing_url"] = json!(url);
        let (s, e) = t.admin_post("/offers", offer).await;
        assert_eq!(s, 400, "{url} accepted: {e}");
        assert_eq!(e["error"]["field"], "landing_url", "{url}: {e}");
    }
    let seed = t.seed(offer_body(), None).await;
    for url in ["https:/{sub1}/pb", "http:{sub1}/pb"] {
        let (s, e) = t
            .send(
                t.http
                    .post(t.url(&format!("/partners/{}/endpoints", seed.partner_id)))
                    .bearer_auth(&seed.partner_key)
                    .json(&json!({"name": "n", "url": url})),
            )
            .await;
        assert_eq!(s, 400, "{url} accepted: {e}");
        assert_eq!(e["error"]["field"], "url", "{url}: {e}");
    }
}

#[tokio::test]
async fn every_endpoint_field_has_a_size_limit() {
    let t = TestApp::start().await;
    let seed = t.seed(offer_body(), None).await;
    let offers: Vec<String> = (0..3000).map(|i| format!("off{i}")).collect();
    let cases = [
        (
            "headers.X-Long",
            json!({"headers": {"X-Long": "v".repeat(60_000)}}),
        ),
        ("offers", json!({"offers": offers})),
        ("offers", json!({"offers": ["not an id"]})),
        ("name", json!({"name": "n".repeat(201)})),
        ("goals", json!({"goals": vec!["g"; 51]})),
        ("secret_headers", json!({"secret_headers": vec!["X-A"; 51]})),
    ];
    for (field, extra) in cases {
        let mut body = json!({"name": "n", "url": "https://partner.example/pb"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (s, e) = t
            .send(
                t.http
                    .post(t.url(&format!("/partners/{}/endpoints", seed.partner_id)))
                    .bearer_auth(&seed.partner_key)
                    .json(&body),
            )
            .await;
        assert_eq!(s, 400, "{field}: {e}");
        assert_eq!(e["error"]["field"], field, "{e}");
    }
}
