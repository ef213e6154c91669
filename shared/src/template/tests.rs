use super::*;
use std::collections::HashMap;

struct Map(HashMap<&'static str, &'static str>);
impl Lookup for Map {
    fn lookup(&self, name: &str) -> Option<Value> {
        self.0.get(name).map(|s| Value::String(s.to_string()))
    }
}

struct Typed(HashMap<&'static str, Value>);
impl Lookup for Typed {
    fn lookup(&self, name: &str) -> Option<Value> {
        self.0.get(name).cloned()
    }
}

#[test]
fn json_values_keep_their_type_in_a_json_body_and_read_as_text_elsewhere() {
    let v = Typed(HashMap::from([
        ("sub_ids", serde_json::json!(["youtube", "email"])),
        ("has_paid", serde_json::json!(true)),
        ("amount", serde_json::json!(5000)),
        (
            "payload",
            serde_json::json!({"user_id": "3410444", "n": [1]}),
        ),
        ("nothing", Value::Null),
    ]));
    let t = Template::parse(
        r#"{"s": {sub_ids}, "p": {has_paid}, "a": {amount}, "o": {payload}, "q": "{sub_ids}", "n": {nothing}, "d": {missing|0}}"#,
    )
    .unwrap();
    let mut empty = BTreeSet::new();
    let body = t.render_json(&v, &mut empty);
    assert_eq!(
        body,
        r#"{"s": ["youtube","email"], "p": true, "a": 5000, "o": {"user_id":"3410444","n":[1]}, "q": "youtube,email", "n": null, "d": 0}"#
    );
    assert_eq!(empty.into_iter().collect::<Vec<_>>(), ["nothing"]);
    let url = Template::parse("https://p.example/?s={sub_ids}&p={has_paid}&o={payload}")
        .unwrap()
        .render_url(&v, &mut BTreeSet::new());
    assert_eq!(
        url,
        "https://p.example/?s=youtube%2Cemail&p=true&o=%7B%22user_id%22%3A%223410444%22%2C%22n%22%3A%5B1%5D%7D"
    );
}

#[test]
fn a_macro_default_stands_in_for_a_missing_or_empty_value() {
    let t = Template::parse("?lb={is_loyaltyboost|0}&u={user_id|}&s={sub1|none}").unwrap();
    let mut empty = BTreeSet::new();
    assert_eq!(
        t.render_url(&values(), &mut empty),
        "?lb=0&u=u%201&s=a%26b%3Dc%20%23d%20%C3%A9%22%27"
    );
    assert!(empty.is_empty(), "a default is not an empty macro");
    assert!(Template::parse("{a|b").is_err());
    assert_eq!(Template::parse("{a|x}").unwrap().macros(), ["a"]);
}

fn values() -> Map {
    Map(HashMap::from([
        ("payout", "12.50"),
        ("sub1", "a&b=c #d é\"'"),
        ("user_id", "u 1"),
        ("neg", "-3.25"),
    ]))
}

#[test]
fn macros_are_found_and_braces_that_are_not_macros_stay_literal() {
    let t = Template::parse(r#"{"a": {payout}, "b": "{sub1}", "c": {}}"#).unwrap();
    assert_eq!(t.macros(), ["payout", "sub1"]);
}

#[test]
fn unclosed_and_empty_segment_macros_are_refused() {
    assert_eq!(
        Template::parse("https://x/?p={payout&x=1")
            .unwrap_err()
            .position,
        14
    );
    assert!(Template::parse("{a..b}").is_err());
    assert!(Template::parse("{payout").is_err());
}

#[test]
fn url_values_cannot_break_the_url() {
    let t = Template::parse("https://p.example/pb?payout={payout}&sub={sub1}&u={user_id}").unwrap();
    let mut empty = BTreeSet::new();
    let url = t.render_url(&values(), &mut empty);
    assert_eq!(
        url,
        "https://p.example/pb?payout=12.50&sub=a%26b%3Dc%20%23d%20%C3%A9%22%27&u=u%201"
    );
    let parsed = url::Url::parse(&url).unwrap();
    let pairs: HashMap<_, _> = parsed.query_pairs().into_owned().collect();
    assert_eq!(pairs["sub"], "a&b=c #d é\"'");
    assert!(empty.is_empty());
}

#[test]
fn macros_before_the_path_are_detected() {
    assert!(macro_in_authority("https://{host}/pb"));
    assert!(macro_in_authority("https://p.example:{port}/pb"));
    assert!(macro_in_authority("https://{user}@p.example/pb"));
    assert!(!macro_in_authority("https://p.example/{path}?a={b}#{c}"));
    assert!(!macro_in_authority("https://p.example?a={b}"));
    // What a URL parser forgives is an authority too.
    assert!(macro_in_authority("https:/{click.dest}/lp"));
    assert!(macro_in_authority("https:{click.dest}/lp"));
    assert!(macro_in_authority("HTTPS:\\{host}/lp"));
    assert!(macro_in_authority("https://p.example{path}"));
    assert!(macro_in_authority("{scheme}://p.example/pb"));
    assert!(!macro_in_authority("https:/p.example/{path}"));
}

#[test]
fn form_values_are_form_encoded() {
    let t = Template::parse("sub={sub1}&u={user_id}").unwrap();
    let body = t.render_form(&values(), &mut BTreeSet::new());
    let pairs: HashMap<_, _> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(pairs["sub"], "a&b=c #d é\"'");
    assert_eq!(pairs["u"], "u 1");
}

#[test]
fn json_values_are_escaped_in_strings_and_typed_outside() {
    let t = Template::parse(
        r#"{"amount": {payout}, "neg": {neg}, "sub": "{sub1}", "u": {user_id}, "none": {missing}}"#,
    )
    .unwrap();
    let mut empty = BTreeSet::new();
    let body = t.render_json(&values(), &mut empty);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["amount"], serde_json::json!(12.50));
    assert_eq!(v["neg"], serde_json::json!(-3.25));
    assert_eq!(v["sub"], "a&b=c #d é\"'");
    assert_eq!(v["u"], "u 1");
    assert_eq!(v["none"], Value::Null);
    assert_eq!(empty.into_iter().collect::<Vec<_>>(), ["missing"]);
}

#[test]
fn header_values_cannot_inject_lines() {
    let t = Template::parse("Bearer {x}").unwrap();
    let m = Map(HashMap::from([("x", "a\r\nX-Evil: 1")]));
    assert_eq!(
        t.render_header(&m, &mut BTreeSet::new()),
        "Bearer aX-Evil: 1"
    );
    // Found by `make fuzz`: line breaks in the template's own text.
    let t = Template::parse("a\n\r\nb").unwrap();
    assert_eq!(t.render_header(&m, &mut BTreeSet::new()), "ab");
}

#[test]
fn missing_macros_render_empty_and_are_reported() {
    let t = Template::parse("?a={nothing}").unwrap();
    let mut empty = BTreeSet::new();
    assert_eq!(t.render_url(&values(), &mut empty), "?a=");
    assert!(empty.contains("nothing"));
}

#[test]
fn json_numbers_are_recognised_strictly() {
    assert!(is_json_number("0.5") && is_json_number("-12") && is_json_number("10.50"));
    assert!(
        !is_json_number("01")
            && !is_json_number("1e3")
            && !is_json_number("1.")
            && !is_json_number("abc")
    );
}
