//! openapi.yaml and the router cannot drift: every documented operation is a
//! route, no other method answers on a documented path, and every path the
//! router declares is documented.

use integration_tests::TestApp;
use serde_yaml::Value;
use std::collections::BTreeSet;

const SPEC: &str = include_str!("../openapi.yaml");
const ROUTER_SOURCE: &str = include_str!("../functions/api/src/lib.rs");
const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

fn documented() -> Vec<(String, BTreeSet<String>)> {
    let spec: Value = serde_yaml::from_str(SPEC).expect("openapi.yaml parses");
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    spec["paths"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(path, ops)| {
            let methods = ops
                .as_mapping()
                .unwrap()
                .keys()
                .filter_map(|k| k.as_str())
                .filter(|k| METHODS.contains(k))
                .map(str::to_string)
                .collect();
            (path.as_str().unwrap().to_string(), methods)
        })
        .collect()
}

/// The paths of every `.route("…", …)` in the router's source.
fn routed_paths() -> BTreeSet<String> {
    ROUTER_SOURCE
        .split(".route(")
        .skip(1)
        .filter_map(|rest| {
            rest.trim_start()
                .strip_prefix('"')
                .and_then(|r| r.split('"').next())
                .map(str::to_string)
        })
        .collect()
}

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "x" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn the_openapi_document_and_the_router_describe_the_same_routes() {
    let t = TestApp::start().await;
    let doc = documented();
    assert!(doc.len() >= 15, "every route of the contract is documented");

    for (path, methods) in &doc {
        for method in METHODS {
            let req = t.http.request(
                method.to_uppercase().parse().unwrap(),
                t.url(&concrete(path)),
            );
            let (status, body) = t.send(req).await;
            if methods.contains(method) {
                assert_ne!(status, 405, "{method} {path} is documented but not routed");
                assert_ne!(
                    body["error"]["code"], "route_not_found",
                    "{method} {path} is documented but not routed"
                );
            } else {
                assert_eq!(status, 405, "{method} {path} answers but is not documented");
            }
        }
    }

    let documented_paths: BTreeSet<String> = doc.iter().map(|(p, _)| p.clone()).collect();
    let routed = routed_paths();
    assert!(
        routed.len() >= 15,
        "the router's paths were found in its source"
    );
    let undocumented: Vec<_> = routed.difference(&documented_paths).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.yaml: {undocumented:?}"
    );
}

#[test]
fn every_operation_is_named_and_documents_the_answers_it_can_give() {
    let spec: Value = serde_yaml::from_str(SPEC).expect("openapi.yaml parses");
    let statics = [
        "/health",
        "/",
        "/console",
        "/console/app.js",
        "/console/app.css",
    ];
    let public = [
        "/health",
        "/click",
        "/postback",
        "/",
        "/console",
        "/console/app.js",
        "/console/app.css",
    ];
    let mut ids = BTreeSet::new();
    let mut problems = Vec::new();
    for (path, ops) in spec["paths"].as_mapping().unwrap() {
        let path = path.as_str().unwrap();
        for (method, op) in ops.as_mapping().unwrap() {
            let method = method.as_str().unwrap();
            if !METHODS.contains(&method) {
                continue;
            }
            let name = format!("{method} {path}");
            match op["operationId"].as_str() {
                Some(id) if ids.insert(id.to_string()) => {}
                Some(id) => problems.push(format!("{name}: operationId {id} is not unique")),
                None => problems.push(format!("{name}: no operationId")),
            }
            let responses = op["responses"].as_mapping().cloned().unwrap_or_default();
            let has = |code: &str| responses.contains_key(Value::String(code.into()));
            let mut wanted = Vec::new();
            if !public.contains(&path) {
                wanted.push("401");
            }
            if !statics.contains(&path) {
                wanted.extend(["429", "500", "503"]);
            }
            if op.get("requestBody").is_some() {
                wanted.extend(["400", "413"]);
            }
            for code in wanted {
                if !has(code) {
                    problems.push(format!("{name}: does not document {code}"));
                }
            }
            for (code, answer) in &responses {
                let code = code.as_str().unwrap_or_default();
                if code.starts_with('2') && code != "204" && answer.get("content").is_none() {
                    // (3xx redirects carry a Location header, not a body.)
                    problems.push(format!("{name}: {code} has no schema"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(ids.len() >= 30, "{} operations", ids.len());
}

/// The README's walk-through is docs/walkthrough.sh, shown unchanged (the
/// script itself is run by `make test` through scripts/walkthrough-check.sh).
#[test]
fn the_readme_shows_the_walkthrough_script_unchanged() {
    let readme = include_str!("../README.md");
    let script = include_str!("../docs/walkthrough.sh");
    assert!(
        readme.contains(&format!("```sh\n{script}```")),
        "README.md's walk-through differs from docs/walkthrough.sh: paste the script into the README again"
    );
    // Nothing to copy by hand: no placeholders, no fixed dates.
    for placeholder in [
        "<click_id>",
        "<ep_id>",
        "<delivery_id>",
        "<event_id>",
        "pbk_p1_",
        "2026-11-",
    ] {
        assert!(
            !script.contains(placeholder),
            "the walk-through holds {placeholder}"
        );
    }
}

/// Every environment variable the code reads is documented in the README.
#[test]
fn every_environment_variable_the_code_reads_is_in_the_readme() {
    let readme = include_str!("../README.md");
    let sources = [
        include_str!("../shared/src/config.rs"),
        include_str!("../shared/src/telemetry.rs"),
        include_str!("../local/src/main.rs"),
        include_str!("../local/src/lambda_events.rs"),
    ];
    let mut names = std::collections::BTreeSet::new();
    for text in sources {
        for (i, _) in text.match_indices("(\"") {
            let rest = &text[i + 2..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            let whole = rest[name.len()..].starts_with("\")");
            let env_like = (name.contains('_') && !name.ends_with('_')) || name == "PORT";
            if whole && env_like {
                names.insert(name);
            }
        }
    }
    assert!(
        names.contains("LOG_FORMAT") && names.contains("TABLE_NAME"),
        "{names:?}"
    );
    let missing: Vec<_> = names
        .iter()
        .filter(|n| !readme.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "read by the code, not in README.md: {missing:?}"
    );
}
