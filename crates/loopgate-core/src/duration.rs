//! ISO 8601 durations as used in `@sla("PT4H")`: `PnW`, or `PnDTnHnMnS`
//! with integer parts (seconds may have a fraction). Years and months are
//! refused because their length depends on the calendar.

use std::time::Duration;

/// Parses an ISO 8601 duration such as `PT4H`, `P1DT12H` or `PT90S`.
pub fn parse_iso8601(text: &str) -> Option<Duration> {
    let rest = text.strip_prefix('P')?;
    if rest.is_empty() {
        return None;
    }
    let (date_part, time_part) = match rest.split_once('T') {
        Some((date, time)) => {
            if time.is_empty() {
                return None;
            }
            (date, time)
        }
        None => (rest, ""),
    };
    let mut total = 0.0_f64;
    for (part, units) in [
        (date_part, &[('W', 604_800.0), ('D', 86_400.0)][..]),
        (time_part, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)][..]),
    ] {
        let mut number = String::new();
        let mut unit_idx = 0;
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            let position = units.iter().skip(unit_idx).position(|(u, _)| *u == c)?;
            let (_, seconds) = units.get(unit_idx + position)?;
            let value: f64 = number.parse().ok()?;
            if c != 'S' && number.contains('.') {
                return None;
            }
            total += value * seconds;
            number.clear();
            unit_idx += position + 1;
        }
        if !number.is_empty() {
            return None;
        }
    }
    if !(0.0 < total && total < 1e10) {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

/// Parses a short duration such as `30s`, `500ms`, `2m` or a plain number of seconds.
pub fn parse_short(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.trim().parse().ok()?;
    if !(0.0 <= value && value * scale < 1e9) {
        return None;
    }
    Some(Duration::from_secs_f64(value * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601() {
        assert_eq!(parse_iso8601("PT4H"), Some(Duration::from_secs(4 * 3600)));
        assert_eq!(
            parse_iso8601("P1DT12H"),
            Some(Duration::from_secs(36 * 3600))
        );
        assert_eq!(parse_iso8601("PT90S"), Some(Duration::from_secs(90)));
        assert_eq!(parse_iso8601("PT1M30S"), Some(Duration::from_secs(90)));
        assert_eq!(parse_iso8601("P2W"), Some(Duration::from_secs(14 * 86400)));
        assert_eq!(parse_iso8601("PT0.5S"), Some(Duration::from_millis(500)));
        for bad in [
            "", "P", "PT", "4H", "PT4", "P1M", "PT4H3H", "PTH", "P1.5D", "PT0S", "PT-1H",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn short() {
        assert_eq!(parse_short("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_short("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_short("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_short("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_short("-5"), None);
        assert_eq!(parse_short("soon"), None);
    }
}
