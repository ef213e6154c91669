//! Payouts and currencies. Money is a decimal, never a float: a payout is
//! parsed from its decimal text and kept as `rust_decimal::Decimal`.

use rust_decimal::Decimal;
use std::str::FromStr;

use crate::error::Error;

/// Most fraction digits a payout may carry (1/10,000 of a currency unit).
pub const MAX_FRACTION_DIGITS: usize = 4;
/// Most digits before the point: amounts stay below 1,000,000,000, a guard
/// against typos and overflow downstream (the contract's pattern says the same).
pub const MAX_INTEGER_DIGITS: usize = 9;

/// The largest payout one conversion may carry when its offer names no
/// `max_payout` (and when the event names no offer): a guard against typos
/// (an amount in cents sent as units) and absurd amounts.
pub const DEFAULT_MAX_PAYOUT: i64 = 10_000;

/// Refuses a payout above `max` (the offer's `max_payout`, or
/// [`DEFAULT_MAX_PAYOUT`]), naming the field.
pub fn within_max(field: &str, payout: Decimal, max: Option<Decimal>) -> Result<(), Error> {
    let max = max.unwrap_or_else(|| Decimal::from(DEFAULT_MAX_PAYOUT));
    if payout.abs() > max {
        return Err(Error::rule(
            field,
            format!("`{field}` {payout} is above the maximum payout of this offer ({max}); raise the offer's `max_payout` if it is real"),
        ));
    }
    Ok(())
}

/// Parses a payout such as `49.99`. Refuses exponents (`1e3`), signs other than
/// a leading `-`, more than four fraction digits and anything that is not a
/// plain decimal. `allow_negative` is false for conversions.
pub fn parse_payout(field: &str, raw: &str, allow_negative: bool) -> Result<Decimal, Error> {
    let bad = |why: &str| Error::invalid(field, format!("`{field}` {why}"));
    let s = raw;
    if s.is_empty() {
        return Err(bad("must not be empty"));
    }
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
        return Err(bad("must be a decimal number such as 12.50"));
    }
    if frac.is_some_and(|f| f.len() > MAX_FRACTION_DIGITS) {
        return Err(bad("has more than 4 fraction digits"));
    }
    if int.len() > MAX_INTEGER_DIGITS {
        return Err(bad("is too large"));
    }
    let value = Decimal::from_str(s).map_err(|_| bad("must be a decimal number such as 12.50"))?;
    if negative && !allow_negative {
        return Err(bad("must not be negative"));
    }
    Ok(value.normalize_to_scale())
}

trait NormalizeToScale {
    fn normalize_to_scale(self) -> Self;
}

impl NormalizeToScale for Decimal {
    /// `-0` becomes `0`; the scale the sender wrote is otherwise kept (`10.50` stays `10.50`).
    fn normalize_to_scale(self) -> Self {
        if self.is_zero() {
            Decimal::ZERO
        } else {
            self
        }
    }
}

/// A JSON body's `payout` numbers as they were written: JSON numbers are
/// read as binary floats, which would let `1e3` pass as `1000.0` and round
/// an over-precise value. Each object's (or each array item's) `payout`
/// number is replaced by its own text, for [`parse_payout`] to judge like the
/// query form's. `bytes` is the text `value` was parsed from.
pub fn payouts_as_written(bytes: &[u8], mut value: serde_json::Value) -> serde_json::Value {
    use serde_json::value::RawValue;
    use serde_json::Value;
    type RawFields<'a> = std::collections::HashMap<String, &'a RawValue>;
    // Whole numbers become their text; a number with a fraction or an
    // exponent stays a number, which the parsers refuse (to most JSON
    // libraries it is a float: money is sent as text).
    fn fix(obj: &mut serde_json::Map<String, Value>, raw: &RawFields<'_>) {
        if let (Some(Value::Number(_)), Some(text)) = (obj.get("payout"), raw.get("payout")) {
            let text = text.get().trim();
            let unsigned = text.strip_prefix('-').unwrap_or(text);
            // `12` and `12.0` are whole; `12.5` and `1e3` are not taken.
            let (digits, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
            let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
            if !digits.is_empty() && all_digits(digits) && fraction.bytes().all(|b| b == b'0') {
                obj.insert("payout".into(), Value::String(text.to_string()));
            }
        }
    }
    match &mut value {
        Value::Object(obj) => {
            if let Ok(raw) = serde_json::from_slice::<RawFields<'_>>(bytes) {
                fix(obj, &raw);
            }
        }
        Value::Array(items) => {
            if let Ok(raws) = serde_json::from_slice::<Vec<&RawValue>>(bytes) {
                for (item, raw) in items.iter_mut().zip(raws) {
                    if let (Value::Object(obj), Ok(fields)) =
                        (item, serde_json::from_str::<RawFields<'_>>(raw.get()))
                    {
                        fix(obj, &fields);
                    }
                }
            }
        }
        _ => {}
    }
    value
}

/// Parses an ISO 4217-shaped currency code: three ASCII letters, upper-cased.
pub fn parse_currency(field: &str, raw: &str) -> Result<String, Error> {
    let s = raw;
    if s.len() == 3 && s.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(s.to_ascii_uppercase())
    } else {
        Err(Error::invalid(
            field,
            format!("`{field}` must be a three-letter currency code such as USD"),
        ))
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    #[test]
    fn whole_json_payouts_become_their_text_and_floats_stay_numbers() {
        let text = br#"[{"payout": 1e3}, {"payout": 12.50, "n": 1e3}, {"payout": "7"}, {"payout": 40}, {"payout": 40.0}, 5]"#;
        let value = serde_json::from_slice(text).unwrap();
        let fixed = payouts_as_written(text, value);
        // Not whole as written: left a number, which the parsers refuse.
        assert!(fixed[0]["payout"].is_number());
        assert!(fixed[1]["payout"].is_number());
        assert_eq!(
            fixed[1]["n"],
            serde_json::json!(1000.0),
            "other numbers stay numbers"
        );
        assert_eq!(fixed[2]["payout"], "7");
        assert_eq!(fixed[3]["payout"], "40");
        assert_eq!(fixed[4]["payout"], "40.0");
        assert_eq!(
            parse_payout("payout", fixed[4]["payout"].as_str().unwrap(), false)
                .unwrap()
                .to_string(),
            "40.0"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        parse_payout("payout", s, false).unwrap().to_string()
    }

    fn rejected(s: &str, allow_negative: bool) -> String {
        match parse_payout("payout", s, allow_negative) {
            Err(e) => e.to_string(),
            Ok(v) => panic!("{s} was accepted as {v}"),
        }
    }

    #[test]
    fn plain_decimals_are_accepted_exactly() {
        assert_eq!(ok("49.99"), "49.99");
        assert_eq!(ok("0"), "0");
        assert_eq!(ok("10.50"), "10.50");
        assert_eq!(ok("1.2345"), "1.2345");
        assert_eq!(ok("999999999.9999"), "999999999.9999");
        // Taken exactly as the contract's pattern says: no spaces, at most
        // nine digits before the point.
        assert!(rejected(" 7 ", false).contains("decimal"));
        assert!(rejected("1000000000", false).contains("too large"));
    }

    #[test]
    fn text_is_rejected() {
        assert!(rejected("abc", false).contains("decimal number"));
        assert!(rejected("", false).contains("empty"));
        assert!(rejected("NaN", false).contains("decimal"));
    }

    #[test]
    fn exponents_and_odd_signs_are_rejected() {
        assert!(rejected("1e3", false).contains("decimal"));
        assert!(rejected("+5", false).contains("decimal"));
        assert!(rejected("5.", false).contains("decimal"));
        assert!(rejected(".5", false).contains("decimal"));
        assert!(rejected("1,5", false).contains("decimal"));
    }

    #[test]
    fn more_than_four_fraction_digits_are_rejected() {
        assert!(rejected("1.23456", false).contains("4 fraction digits"));
    }

    #[test]
    fn negative_payouts_are_rejected_for_conversions_only() {
        assert!(rejected("-1", false).contains("negative"));
        assert_eq!(
            parse_payout("payout", "-12.5", true).unwrap().to_string(),
            "-12.5"
        );
        // `-0` is a sign a conversion may not carry (the pattern says so);
        // an invalidation's `-0` is zero.
        assert!(rejected("-0", false).contains("negative"));
        assert_eq!(parse_payout("payout", "-0", true).unwrap().to_string(), "0");
    }

    #[test]
    fn absurd_magnitudes_are_rejected() {
        assert!(rejected("99999999999999", false).contains("too large"));
    }

    #[test]
    fn currencies_are_three_letters() {
        assert_eq!(parse_currency("currency", "usd").unwrap(), "USD");
        assert!(parse_currency("currency", "US").is_err());
        assert!(parse_currency("currency", "U$D").is_err());
    }
}
