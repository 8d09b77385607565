//! What routing compares: a proposal's context and subject attributes read
//! by loopgate's number rule and checked against the system's declared shape.
//!
//! The number rule: a JSON number that is a whole number within `i64`
//! (`5000000`, `5000000.0`, `5e6`) is a Cedar `Long`; any other number is a
//! Cedar `decimal`, which holds four fractional digits. A number with more
//! fractional digits, a whole number beyond `i64` and a decimal beyond
//! Cedar's range are refused, never rounded: a rounded number could slip
//! under a limit a policy sets.
//!
//! This module reads values; it does not decide anything. A value the rule
//! refuses is an [`InvalidContext`] naming the field, which the server
//! answers with `422 invalid_context` before anything is stored.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use super::schema::{AttrType, Declared, Shape};

/// A value as policies see it.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// `true` or `false`.
    Bool(bool),
    /// A whole number.
    Long(i64),
    /// A number with a fraction.
    Decimal(Decimal),
    /// Text.
    String(String),
    /// A JSON array (Cedar has sets, not lists).
    Set(Vec<Attr>),
    /// A JSON object.
    Record(Vec<(String, Attr)>),
}

/// Cedar's `decimal`: a whole number of ten-thousandths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Decimal(i64);

impl Decimal {
    /// Fractional digits a decimal holds.
    pub const PLACES: u32 = 4;
    const SCALE: i64 = 10_000;

    /// The decimal of a whole number, when it is within Cedar's range.
    pub fn from_long(long: i64) -> Option<Decimal> {
        long.checked_mul(Decimal::SCALE).map(Decimal)
    }

    /// The value in ten-thousandths.
    pub fn ten_thousandths(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Decimal {
    /// Cedar's literal syntax: `-12.5000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let scale = Decimal::SCALE.unsigned_abs();
        write!(f, "{sign}{}.{:04}", abs / scale, abs % scale)
    }
}

/// Why a number cannot be routed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberProblem {
    /// More fractional digits than a decimal holds.
    TooPrecise,
    /// A whole number beyond `i64`, or a decimal beyond Cedar's range.
    OutOfRange,
    /// The JSON text and the number it was read as differ (too many
    /// significant digits for a 64-bit float).
    Inexact,
    /// Not JSON number syntax.
    NotANumber,
}

/// A context or subject attribute that routing refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {problem}")]
pub struct InvalidContext {
    /// Where: `context.amount_minor`, `subject.attributes.country`,
    /// `context.items[2].price`.
    pub field: String,
    /// The declared type, when a shape declares one.
    pub expected: Option<String>,
    /// What is wrong, as the end of a sentence that starts with the field.
    pub problem: String,
}

/// A proposal's context and subject attributes, typed for routing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypedInput {
    /// The context (without loopgate's own keys, which routing adds).
    pub context: Vec<(String, Attr)>,
    /// The subject's attributes.
    pub subject_attributes: Vec<(String, Attr)>,
    /// Some number was written with a fraction or an exponent: the server
    /// checks its JSON text with [`check_exact`] (a 64-bit float may have
    /// rounded it while the body was parsed).
    pub has_float: bool,
}

/// Whether a proposal must match a declared shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeRule {
    /// Check against the shape when the action has one.
    WhenDeclared,
    /// Refuse an action without a declared shape (`require_shapes`).
    Required,
}

impl ShapeRule {
    /// The rule for a system: the server's `require_shapes`, or the
    /// system's own shape asking it of its actions.
    pub fn of(server_requires: bool, shape: Option<&Shape>) -> ShapeRule {
        match server_requires || shape.is_some_and(|it| it.require_shapes) {
            true => ShapeRule::Required,
            false => ShapeRule::WhenDeclared,
        }
    }
}

/// Reads a proposal's context and subject attributes by the number rule,
/// checked and coerced against `shape` where it declares the action.
pub fn typed_input(
    shape: Option<&Shape>,
    action: &str,
    context: &Map<String, Value>,
    subject_attributes: &Map<String, Value>,
    rule: ShapeRule,
) -> Result<TypedInput, InvalidContext> {
    let declared_action = shape.and_then(|it| it.actions.get(action));
    if rule == ShapeRule::Required && declared_action.is_none() {
        return Err(InvalidContext {
            field: "action".to_owned(),
            expected: None,
            problem: format!(
                "is `{action}`, which has no declared shape; this server requires one for every action (`require_shapes`)"
            ),
        });
    }
    let mut has_float = false;
    let context = read_map(
        "context",
        context,
        declared_action.map(|it| &it.context),
        &mut has_float,
    )?;
    let subject_attributes = read_map(
        "subject.attributes",
        subject_attributes,
        shape.map(|it| &it.subject_attributes),
        &mut has_float,
    )?;
    Ok(TypedInput {
        context,
        subject_attributes,
        has_float,
    })
}

/// Reads one number by the number rule from its JSON text.
pub fn number(text: &str) -> Result<Attr, NumberProblem> {
    let parsed = parse_decimal_text(text).ok_or(NumberProblem::NotANumber)?;
    let DecimalText {
        negative,
        mut digits,
        mut exponent,
    } = parsed;
    // Normalise: no leading zeros, no trailing zeros (they move to the exponent).
    let leading = digits.iter().take_while(|it| **it == 0).count();
    digits.drain(..leading);
    while digits.last() == Some(&0) {
        digits.pop();
        exponent = exponent.saturating_add(1);
    }
    if digits.is_empty() {
        return Ok(Attr::Long(0));
    }
    // More than 19 significant digits never fit an i64, nor a decimal's 23.
    let n_digits = i64::try_from(digits.len()).unwrap_or(i64::MAX);
    if 0 <= exponent {
        if 19 < n_digits.saturating_add(exponent) {
            return Err(NumberProblem::OutOfRange);
        }
        let whole = magnitude(&digits, exponent).ok_or(NumberProblem::OutOfRange)?;
        let signed = if negative { -whole } else { whole };
        return i64::try_from(signed)
            .map(Attr::Long)
            .map_err(|_| NumberProblem::OutOfRange);
    }
    // INVARIANT: compare without negating: the exponent may be `i64::MIN`
    // (`5.1e-9223372036854775807`, found by fuzzing).
    if exponent < -i64::from(Decimal::PLACES) {
        return Err(NumberProblem::TooPrecise);
    }
    // INVARIANT: -4 <= exponent < 0 here, so this neither overflows nor is negative.
    let scaled_exponent = exponent + i64::from(Decimal::PLACES);
    if 19 < n_digits.saturating_add(scaled_exponent) {
        return Err(NumberProblem::OutOfRange);
    }
    let scaled = magnitude(&digits, scaled_exponent).ok_or(NumberProblem::OutOfRange)?;
    let signed = if negative { -scaled } else { scaled };
    i64::try_from(signed)
        .map(|it| Attr::Decimal(Decimal(it)))
        .map_err(|_| NumberProblem::OutOfRange)
}

/// Reads a parsed JSON number by the number rule: the shortest text that
/// reads back as the same float, for numbers that were parsed as floats.
pub fn json_number(value: &Number) -> Result<Attr, NumberProblem> {
    if let Some(long) = value.as_i64() {
        return Ok(Attr::Long(long));
    }
    if value.is_u64() {
        return Err(NumberProblem::OutOfRange);
    }
    number(&value.to_string())
}

/// Checks that every number written with a fraction or an exponent in the
/// JSON object `raw` (the text of `field`) means what it meant after the
/// body was parsed: `100000.00000000001` reads as the float `100000.0`, and
/// the rule refuses the text while it would accept the float.
pub fn check_exact(field: &str, raw: &str) -> Result<(), InvalidContext> {
    let Ok(value) = serde_json::from_str::<&RawValue>(raw) else {
        return Ok(());
    };
    check_raw(field, value)
}

fn check_raw(field: &str, raw: &RawValue) -> Result<(), InvalidContext> {
    let text = raw.get().trim();
    match text.as_bytes().first() {
        Some(b'{') => {
            let Ok(map) = serde_json::from_str::<BTreeMap<String, &RawValue>>(text) else {
                return Ok(());
            };
            for (key, value) in map {
                check_raw(&format!("{field}.{key}"), value)?;
            }
            Ok(())
        }
        Some(b'[') => {
            let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(text) else {
                return Ok(());
            };
            for (n, value) in items.into_iter().enumerate() {
                check_raw(&format!("{field}[{n}]"), value)?;
            }
            Ok(())
        }
        Some(b'-' | b'0'..=b'9') if text.contains(['.', 'e', 'E']) => {
            let as_written = number(text);
            let as_parsed = serde_json::from_str::<Number>(text)
                .map_err(|_| NumberProblem::NotANumber)
                .and_then(|it| json_number(&it));
            match (as_written, as_parsed) {
                (Ok(a), Ok(b)) if a == b => Ok(()),
                (Err(problem), _) | (Ok(_), Err(problem)) => Err(InvalidContext {
                    field: field.to_owned(),
                    ..number_error(text, problem)
                }),
                (Ok(_), Ok(_)) => Err(InvalidContext {
                    field: field.to_owned(),
                    ..number_error(text, NumberProblem::Inexact)
                }),
            }
        }
        _ => Ok(()),
    }
}

/// The Cedar type a value has by the JSON rule, for messages.
fn described(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "true or false",
        Value::Number(n) if n.as_i64().is_some() => "a whole number",
        Value::Number(_) => "a number with a fraction",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A refusal found below the top: the path is built on the way up, so
/// that reading a good value allocates no field names.
struct Refusal {
    /// Path segments, innermost first (`.key` or `[n]`).
    path: Vec<String>,
    error: InvalidContext,
}

impl Refusal {
    fn at(mut self, segment: String) -> Refusal {
        self.path.push(segment);
        self
    }

    fn into_error(self, field: &str) -> InvalidContext {
        let mut full = field.to_owned();
        for segment in self.path.iter().rev() {
            full.push_str(segment);
        }
        InvalidContext {
            field: full,
            ..self.error
        }
    }
}

fn refusal(problem: InvalidContext) -> Refusal {
    Refusal {
        path: Vec::new(),
        error: problem,
    }
}

fn read_map(
    place: &str,
    map: &Map<String, Value>,
    declared: Option<&BTreeMap<String, Declared>>,
    has_float: &mut bool,
) -> Result<Vec<(String, Attr)>, InvalidContext> {
    let mut out = Vec::with_capacity(map.len());
    for (key, value) in map {
        if is_reserved(key) {
            continue;
        }
        let read = match declared.and_then(|it| it.get(key)) {
            Some(declared) if !value.is_null() => coerce(value, declared.kind, has_float),
            _ => read_value(value, has_float),
        };
        match read {
            Ok(Some(attr)) => out.push((key.clone(), attr)),
            Ok(None) => (),
            Err(refusal) => return Err(refusal.into_error(&format!("{place}.{key}"))),
        }
    }
    if let Some(declared) = declared {
        for (key, declared) in declared {
            let present = map.get(key).is_some_and(|it| !it.is_null());
            if declared.required && !present {
                return Err(InvalidContext {
                    field: format!("{place}.{key}"),
                    expected: Some(declared.kind.cedar().to_owned()),
                    problem: format!(
                        "is required by the declared shape ({}) and missing",
                        declared.kind.cedar()
                    ),
                });
            }
        }
    }
    Ok(out)
}

/// A value by the JSON rule; `None` for null (left out, as if absent).
fn read_value(value: &Value, has_float: &mut bool) -> Result<Option<Attr>, Refusal> {
    let attr = match value {
        Value::Null => return Ok(None),
        Value::Bool(b) => Attr::Bool(*b),
        Value::String(s) => Attr::String(s.clone()),
        Value::Number(n) => {
            *has_float |= n.is_f64();
            json_number(n).map_err(|problem| refusal(number_error(&n.to_string(), problem)))?
        }
        Value::Array(items) => {
            let mut set = Vec::with_capacity(items.len());
            for (n, item) in items.iter().enumerate() {
                match read_value(item, has_float) {
                    Ok(Some(attr)) => set.push(attr),
                    Ok(None) => (),
                    Err(refusal) => return Err(refusal.at(format!("[{n}]"))),
                }
            }
            Attr::Set(set)
        }
        Value::Object(map) => {
            let mut record = Vec::with_capacity(map.len());
            for (key, item) in map {
                if is_reserved(key) {
                    continue;
                }
                match read_value(item, has_float) {
                    Ok(Some(attr)) => record.push((key.clone(), attr)),
                    Ok(None) => (),
                    Err(refusal) => return Err(refusal.at(format!(".{key}"))),
                }
            }
            Attr::Record(record)
        }
    };
    Ok(Some(attr))
}

/// A value of a declared type: numbers are coerced between `Long` and
/// `decimal` where no digit is lost; anything else must already have the type.
fn coerce(value: &Value, kind: AttrType, has_float: &mut bool) -> Result<Option<Attr>, Refusal> {
    let wrong = || {
        refusal(InvalidContext {
            field: String::new(),
            expected: Some(kind.cedar().to_owned()),
            problem: format!(
                "must be {} as the declared shape says, not {}",
                kind.described(),
                described(value)
            ),
        })
    };
    let number = |problem: NumberProblem, n: &Number| {
        let mut error = number_error(&n.to_string(), problem);
        error.expected = Some(kind.cedar().to_owned());
        refusal(error)
    };
    let attr = match (kind, value) {
        (AttrType::Bool, Value::Bool(b)) => Attr::Bool(*b),
        (AttrType::String, Value::String(s)) => Attr::String(s.clone()),
        (AttrType::Long | AttrType::Decimal, Value::Number(n)) => {
            *has_float |= n.is_f64();
            let read = json_number(n).map_err(|problem| number(problem, n))?;
            match (kind, read) {
                (AttrType::Long, Attr::Long(long)) => Attr::Long(long),
                (AttrType::Decimal, Attr::Decimal(decimal)) => Attr::Decimal(decimal),
                (AttrType::Decimal, Attr::Long(long)) => match Decimal::from_long(long) {
                    Some(decimal) => Attr::Decimal(decimal),
                    None => return Err(number(NumberProblem::OutOfRange, n)),
                },
                _ => return Err(wrong()),
            }
        }
        (AttrType::Strings | AttrType::Longs, Value::Array(items)) => {
            let item_kind = match kind {
                AttrType::Longs => AttrType::Long,
                _ => AttrType::String,
            };
            let mut set = Vec::with_capacity(items.len());
            for (n, item) in items.iter().enumerate() {
                match coerce(item, item_kind, has_float) {
                    Ok(Some(attr)) => set.push(attr),
                    Ok(None) => (),
                    Err(refusal) => return Err(refusal.at(format!("[{n}]"))),
                }
            }
            Attr::Set(set)
        }
        _ => return Err(wrong()),
    };
    Ok(Some(attr))
}

fn number_error(text: &str, problem: NumberProblem) -> InvalidContext {
    let problem = match problem {
        NumberProblem::TooPrecise => format!(
            "is {text}, which has more than {} fractional digits: policies compare decimals of at most {} places, and loopgate does not round (send it rounded, or in smaller units as a whole number)",
            Decimal::PLACES,
            Decimal::PLACES
        ),
        NumberProblem::OutOfRange => format!(
            "is {text}, beyond the numbers policies can compare (whole numbers within ±9223372036854775807, decimals within ±922337203685477.5807)"
        ),
        NumberProblem::Inexact => format!(
            "is {text}, which has more significant digits than loopgate reads exactly; send a whole number without a fraction or exponent, or fewer digits"
        ),
        NumberProblem::NotANumber => format!("is {text}, which is not a number"),
    };
    InvalidContext {
        field: String::new(),
        expected: None,
        problem,
    }
}

/// Keys Cedar's JSON format reserves; dropped from records.
fn is_reserved(key: &str) -> bool {
    key.starts_with("__")
}

/// JSON number text as digits and a power of ten.
struct DecimalText {
    negative: bool,
    digits: Vec<u8>,
    exponent: i64,
}

/// Parses JSON number syntax (`-12.5e3`); `None` for anything else.
fn parse_decimal_text(text: &str) -> Option<DecimalText> {
    let bytes = text.as_bytes();
    let mut at = 0;
    let negative = bytes.first() == Some(&b'-');
    if negative {
        at += 1;
    }
    let mut digits = Vec::with_capacity(bytes.len());
    let start = at;
    while let Some(b) = bytes.get(at).filter(|it| it.is_ascii_digit()) {
        digits.push(b - b'0');
        at += 1;
    }
    if at == start {
        return None;
    }
    let mut exponent: i64 = 0;
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while let Some(b) = bytes.get(at).filter(|it| it.is_ascii_digit()) {
            digits.push(b - b'0');
            exponent -= 1;
            at += 1;
        }
        if at == start {
            return None;
        }
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        let sign: i64 = match bytes.get(at) {
            Some(b'-') => {
                at += 1;
                -1
            }
            Some(b'+') => {
                at += 1;
                1
            }
            _ => 1,
        };
        let start = at;
        let mut power: i64 = 0;
        while let Some(b) = bytes.get(at).filter(|it| it.is_ascii_digit()) {
            power = power.saturating_mul(10).saturating_add(i64::from(b - b'0'));
            at += 1;
        }
        if at == start {
            return None;
        }
        exponent = exponent.saturating_add(sign.saturating_mul(power));
    }
    if at != bytes.len() {
        return None;
    }
    Some(DecimalText {
        negative,
        digits,
        exponent,
    })
}

/// `digits × 10^exponent` for a non-negative exponent, when it fits an i128.
fn magnitude(digits: &[u8], exponent: i64) -> Option<i128> {
    let mut value: i128 = 0;
    for digit in digits {
        value = value.checked_mul(10)?.checked_add(i128::from(*digit))?;
    }
    for _ in 0..exponent {
        value = value.checked_mul(10)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, expect: &str) {
        let got = match number(text) {
            Ok(Attr::Long(long)) => format!("Long {long}"),
            Ok(Attr::Decimal(decimal)) => format!("decimal {decimal}"),
            Ok(other) => format!("{other:?}"),
            Err(problem) => format!("{problem:?}"),
        };
        assert_eq!(got, expect, "{text}");
    }

    #[test]
    fn whole_numbers_are_longs_however_written() {
        check("5000000", "Long 5000000");
        check("5000000.0", "Long 5000000");
        check("5e6", "Long 5000000");
        check("5E+6", "Long 5000000");
        check("50000000e-1", "Long 5000000");
        check("-0.0", "Long 0");
        check("0e999999999999999999999", "Long 0");
        check("9223372036854775807", "Long 9223372036854775807");
        check("-9223372036854775808", "Long -9223372036854775808");
        check("9223372036854775807.000", "Long 9223372036854775807");
    }

    #[test]
    fn fractions_are_decimals_of_at_most_four_places() {
        check("0.87", "decimal 0.8700");
        check("-12.5", "decimal -12.5000");
        check("1.2345", "decimal 1.2345");
        check("1.23450000", "decimal 1.2345");
        check("12345e-4", "decimal 1.2345");
        check("922337203685477.5807", "decimal 922337203685477.5807");
        check("-922337203685477.5808", "decimal -922337203685477.5808");
        check("1.23456", "TooPrecise");
        check("1e-5", "TooPrecise");
        check("1e-99999999999999999999", "TooPrecise");
        // Found by fuzzing: the exponent saturates at `i64::MIN`.
        check("5.1e-9223372036854775807", "TooPrecise");
        check("-5.1e-9223372036854775808", "TooPrecise");
        check("922337203685477.5808", "OutOfRange");
    }

    #[test]
    fn beyond_i64_is_refused() {
        check("9223372036854775808", "OutOfRange");
        check("-9223372036854775809", "OutOfRange");
        check("1e19", "OutOfRange");
        check("1e999999999999999999999", "OutOfRange");
        check("123456789012345678901234567890", "OutOfRange");
    }

    #[test]
    fn only_json_number_syntax_is_a_number() {
        for text in [
            "", "-", "1.", ".5", "1e", "1e+", "0x10", "1 ", "NaN", "+1", "--1",
        ] {
            check(text, "NotANumber");
        }
    }

    #[test]
    fn floats_read_by_their_shortest_text() {
        let read = |text: &str| json_number(&serde_json::from_str::<Number>(text).unwrap());
        assert_eq!(read("5000000.0"), Ok(Attr::Long(5_000_000)));
        assert_eq!(read("5e6"), Ok(Attr::Long(5_000_000)));
        assert_eq!(read("0.1"), Ok(Attr::Decimal(Decimal(1_000))));
        assert_eq!(read("1.5e-3"), Ok(Attr::Decimal(Decimal(15))));
        assert_eq!(read("1e20"), Err(NumberProblem::OutOfRange));
        assert_eq!(read("18446744073709551615"), Err(NumberProblem::OutOfRange));
        assert_eq!(read("0.123456"), Err(NumberProblem::TooPrecise));
    }

    #[test]
    fn text_rounded_by_the_float_parse_is_refused() {
        let error = check_exact("context", r#"{"a": {"b": [1, 100000.00000000001]}}"#).unwrap_err();
        assert_eq!(error.field, "context.a.b[1]");
        assert!(error.problem.contains("fractional digits"), "{error}");
        let error = check_exact("context", r#"{"big": 9007199254740993.0}"#).unwrap_err();
        assert_eq!(error.field, "context.big");
        assert!(error.problem.contains("significant digits"), "{error}");
        check_exact(
            "context",
            r#"{"a": 5e6, "b": 0.25, "c": "1.234567", "d": 12}"#,
        )
        .unwrap();
    }

    fn shape() -> Shape {
        serde_json::from_value(serde_json::json!({
            "actions": {"refund": {"context": {
                "amount_minor": {"type": "Long", "required": true},
                "rate": "decimal",
                "tags": "Set<String>",
                "urgent": "Bool"
            }}},
            "subject_attributes": {"country": "String"}
        }))
        .unwrap()
    }

    #[track_caller]
    fn read(action: &str, context: Value, attributes: Value, rule: ShapeRule) -> String {
        let shape = shape();
        let (Value::Object(context), Value::Object(attributes)) = (context, attributes) else {
            panic!("objects expected")
        };
        match typed_input(Some(&shape), action, &context, &attributes, rule) {
            Ok(input) => format!("{:?} {:?}", input.context, input.subject_attributes),
            Err(error) => format!("422 {error} (expected {:?})", error.expected),
        }
    }

    #[test]
    fn declared_shapes_check_and_coerce() {
        use serde_json::json;
        let when = ShapeRule::WhenDeclared;
        assert_eq!(
            read(
                "refund",
                json!({"amount_minor": 5e6, "rate": 2, "other": 0.5}),
                json!({}),
                when
            ),
            "[(\"amount_minor\", Long(5000000)), (\"rate\", Decimal(Decimal(20000))), (\"other\", Decimal(Decimal(5000)))] []"
        );
        assert_eq!(
            read(
                "refund",
                json!({"amount_minor": "5000000"}),
                json!({}),
                when
            ),
            "422 `context.amount_minor` must be a whole number (Long) as the declared shape says, not text (expected Some(\"Long\"))"
        );
        assert_eq!(
            read("refund", json!({"amount_minor": 12.5}), json!({}), when),
            "422 `context.amount_minor` must be a whole number (Long) as the declared shape says, not a number with a fraction (expected Some(\"Long\"))"
        );
        assert_eq!(
            read("refund", json!({"rate": 1}), json!({}), when),
            "422 `context.amount_minor` is required by the declared shape (Long) and missing (expected Some(\"Long\"))"
        );
        assert_eq!(
            read("refund", json!({"amount_minor": null}), json!({}), when),
            "422 `context.amount_minor` is required by the declared shape (Long) and missing (expected Some(\"Long\"))"
        );
        assert_eq!(
            read(
                "refund",
                json!({"amount_minor": 1, "tags": ["a", 2]}),
                json!({}),
                when
            ),
            "422 `context.tags[1]` must be text (String) as the declared shape says, not a whole number (expected Some(\"String\"))"
        );
        assert_eq!(
            read(
                "refund",
                json!({"amount_minor": 1}),
                json!({"country": 49}),
                when
            ),
            "422 `subject.attributes.country` must be text (String) as the declared shape says, not a whole number (expected Some(\"String\"))"
        );
        let refused = read(
            "refund",
            json!({"amount_minor": 1, "rate": 0.00001}),
            json!({}),
            when,
        );
        assert!(
            refused.starts_with(
                "422 `context.rate` is 0.00001, which has more than 4 fractional digits"
            ),
            "{refused}"
        );
    }

    #[test]
    fn undeclared_actions_pass_unless_shapes_are_required() {
        use serde_json::json;
        assert_eq!(
            read("other", json!({"x": 1}), json!({}), ShapeRule::WhenDeclared),
            "[(\"x\", Long(1))] []"
        );
        assert_eq!(
            read("other", json!({"x": 1}), json!({}), ShapeRule::Required),
            "422 `action` is `other`, which has no declared shape; this server requires one for every action (`require_shapes`) (expected None)"
        );
    }

    #[test]
    fn nested_values_name_their_path() {
        use serde_json::json;
        let context = json!({"items": [{"price": 1}, {"price": 0.123456}]});
        let Value::Object(context) = context else {
            panic!()
        };
        let error =
            typed_input(None, "a", &context, &Map::new(), ShapeRule::WhenDeclared).unwrap_err();
        assert_eq!(error.field, "context.items[1].price");
    }
}
