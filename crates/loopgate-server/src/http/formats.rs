//! The formats the API document promises for text parameters, written once:
//! each is a pattern in `openapi.json` (the attributes repeat the literal;
//! a test checks they agree) and the one check the handlers apply, so that
//! what the document allows is accepted and what it refuses is refused.

use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;

use crate::http::error::ApiError;

/// A page cursor: `c` and the position of the last item seen.
pub const CURSOR: &str = r"^c[0-9]{1,18}$";
/// A system id.
pub const SYSTEM_ID: &str = r"^[a-z][a-z0-9-]{0,63}$";
/// A long-poll's wait: a number of seconds, or with `ms`, `s` or `m`, or
/// ISO 8601 seconds (`PT30S`). Longer waits wait the longest (60 s).
pub const WAIT: &str = r"^([0-9]{1,9}(\.[0-9]{1,3})?(ms|s|m)?|PT[0-9]{1,9}(\.[0-9]{1,3})?S)$";
/// How long an assignee has to open a task: 1 minute to 7 days.
pub const RETURN_AFTER: &str =
    r"^([1-9][0-9]{0,3}m|[1-9][0-9]?h|[1-7]d|PT[1-9][0-9]{0,3}M|PT[1-9][0-9]?H|P[1-7]D)$";
/// A standing grant's duration (bounded by the policy's `@grantable`).
pub const GRANT_FOR: &str = r"^([1-9][0-9]{0,5}[smhd]|PT[1-9][0-9]{0,5}[HMS]|P[1-9][0-9]{0,3}D)$";
/// A period up to now: hours or days, or ISO 8601 (`P7D`, `PT12H`).
pub const PERIOD: &str = r"^([1-9][0-9]{0,3}[hd]|P[1-9][0-9]{0,3}D|PT[1-9][0-9]{0,4}H)$";

// The patterns are constants (the tests compile each); one that did not
// compile would match nothing, refusing rather than admitting.
static CURSOR_RE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(CURSOR).ok());
static WAIT_RE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(WAIT).ok());
static PERIOD_RE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(PERIOD).ok());
static RETURN_AFTER_RE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(RETURN_AFTER).ok());
static GRANT_FOR_RE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(GRANT_FOR).ok());

fn matches(pattern: &LazyLock<Option<Regex>>, text: &str) -> bool {
    pattern.as_ref().is_some_and(|it| it.is_match(text))
}

/// The position a cursor names; 422 when it is not one this API made.
pub fn cursor(text: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    match matches(&CURSOR_RE, text) {
        true => Ok(text.get(1..).and_then(|n| n.parse().ok())),
        false => Err(
            ApiError::invalid(format!("`{text}` is not a cursor from this API"))
                .help("pass `next_cursor` of the previous page"),
        ),
    }
}

/// A wait, at most `max`; 422 when it is not written as `WAIT` says.
pub fn wait(text: &str, max: Duration) -> Result<Duration, ApiError> {
    let refused = || {
        ApiError::invalid(format!(
            "`wait` must be a duration such as `30s`, `500ms` or `PT30S`, not `{text}`"
        ))
    };
    if !matches(&WAIT_RE, text) {
        return Err(refused());
    }
    let (number, scale) = match text.strip_prefix("PT") {
        Some(rest) => (rest.trim_end_matches('S'), 1.0),
        None => [("ms", 0.001), ("s", 1.0), ("m", 60.0)]
            .iter()
            .find_map(|(unit, scale)| text.strip_suffix(unit).map(|n| (n, *scale)))
            .unwrap_or((text, 1.0)),
    };
    let seconds = number.parse::<f64>().map_err(|_| refused())? * scale;
    Ok(Duration::from_secs_f64(seconds.min(max.as_secs_f64())))
}

/// A duration written as `pattern` says, else 422 with `expected` (what a
/// good one looks like).
fn duration(
    pattern: &LazyLock<Option<Regex>>,
    name: &str,
    expected: &str,
    text: &str,
) -> Result<Duration, ApiError> {
    let refused = || {
        ApiError::invalid(format!(
            "`{name}` must be {expected}, not `{}`",
            crate::http::error::quoted(text)
        ))
    };
    if !matches(pattern, text) {
        return Err(refused());
    }
    loopgate_core::duration::parse(text).ok_or_else(refused)
}

/// A period up to now; 422 when it is not written as `PERIOD` says.
pub fn period(name: &str, text: &str) -> Result<Duration, ApiError> {
    let expected = "a period such as `30d`, `12h` or `P7D` (at most 9999 days)";
    duration(&PERIOD_RE, name, expected, text)
}

/// How long an assignee has to open a task; 422 when it is not written as
/// `RETURN_AFTER` says.
pub fn return_after(text: &str) -> Result<Duration, ApiError> {
    let expected = "between 1m and 7d, such as `30m`, `2h`, `7d` or `PT1H`";
    duration(&RETURN_AFTER_RE, "return_after", expected, text)
}

/// A standing grant's duration; 422 when it is not written as `GRANT_FOR`
/// says.
pub fn grant_for(text: &str) -> Result<Duration, ApiError> {
    let expected = "a duration such as `30m`, `1h`, `7d` or `PT1H`";
    duration(&GRANT_FOR_RE, "grant.for", expected, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patterns_compile_and_say_what_the_checks_take() {
        for pattern in [CURSOR, SYSTEM_ID, WAIT, PERIOD, RETURN_AFTER, GRANT_FOR] {
            assert!(Regex::new(pattern).is_ok(), "{pattern}");
        }
        assert_eq!(cursor(Some("c42")).ok(), Some(Some(42)));
        assert_eq!(
            cursor(Some("c999999999999999999")).ok(),
            Some(Some(999_999_999_999_999_999))
        );
        for bad in ["", "c", "c+1", "c-1", "x1", "c1 ", "c9999999999999999999"] {
            assert!(cursor(Some(bad)).is_err(), "{bad:?}");
        }
        let max = Duration::from_secs(60);
        for (text, secs) in [
            ("30s", 30.0),
            ("500ms", 0.5),
            ("2m", 60.0),
            ("0", 0.0),
            ("PT1.5S", 1.5),
            ("999999999m", 60.0),
        ] {
            assert_eq!(
                wait(text, max).ok(),
                Some(Duration::from_secs_f64(secs)),
                "{text}"
            );
        }
        for bad in ["", "1h", "-1", "1e3", "PT", "P1D", " 1s", "1.s"] {
            assert!(wait(bad, max).is_err(), "{bad:?}");
        }
        for good in ["30d", "12h", "9999d", "P7D", "PT12H", "PT99999H"] {
            assert!(period("since", good).is_ok(), "{good}");
        }
        for bad in ["", "0d", "30", "1.5d", "10000d", "30m", "P0D", "P1W"] {
            assert!(period("since", bad).is_err(), "{bad:?}");
        }
        for good in ["1m", "9999m", "99h", "7d", "PT30M", "PT99H", "P7D"] {
            assert!(return_after(good).is_ok(), "{good}");
        }
        for bad in ["", "30s", "0m", "8d", "100h", "10000m", "P8D", "1.5h"] {
            assert!(return_after(bad).is_err(), "{bad:?}");
        }
    }
}
