//! Durations: [`parse`] for what people type (the API, the CLI), and ISO
//! 8601 durations as policies write them (`@sla("PT4H")`): `PnW`, or
//! `PnDTnHnMnS` with integer parts (seconds may have a fraction). Years
//! and months are refused because their length depends on the calendar.

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

/// Parses a duration as people and config write it, the one parser of the
/// API, the CLI and the policies' callers: `500ms`, `30s`, `2m`, `12h`,
/// `30d`, a plain number of seconds, or ISO 8601 (`PT30S`, `P30D`). Never
/// negative; at most about 31 years (ISO 8601: about 317, as
/// [`parse_iso8601`] bounds it).
pub fn parse(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.starts_with('P') {
        return parse_iso8601(text);
    }
    let (number, scale) = [
        ("ms", 0.001),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3_600.0),
        ("d", 86_400.0),
    ]
    .iter()
    .find_map(|(unit, scale)| text.strip_suffix(unit).map(|n| (n, *scale)))
    .unwrap_or((text, 1.0));
    let value: f64 = number.trim().parse().ok()?;
    let seconds = value * scale;
    if !(0.0..1e9).contains(&seconds) {
        return None;
    }
    Some(Duration::from_secs_f64(seconds))
}

/// Writes a duration the short way [`parse`] reads back: the largest unit
/// that divides it (`90m` stays `90m`, `2h`, `30d`, `1500ms`).
pub fn format(duration: Duration) -> String {
    let millis = duration.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if millis != 0 && millis.is_multiple_of(size) {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
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
        assert_eq!(parse("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse("12h"), Some(Duration::from_secs(12 * 3600)));
        assert_eq!(parse("30d"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse(" 5 "), Some(Duration::from_secs(5)));
        assert_eq!(parse("P30D"), Some(Duration::from_secs(30 * 86_400)));
        for bad in [
            "-5", "soon", "", "ms", "NaNs", "infd", "1e10", "P", "5 weeks",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_a_bounded_duration_or_refused(text in ".{0,40}") {
            if let Some(duration) = parse(&text) {
                let bound = if text.trim().starts_with('P') { 1e10 } else { 1e9 };
                proptest::prop_assert!(duration.as_secs_f64() < bound);
            }
        }

        #[test]
        fn formatted_durations_read_back(seconds in 0_u64..100_000_000) {
            let duration = Duration::from_secs(seconds);
            proptest::prop_assert_eq!(parse(&format(duration)), Some(duration));
        }

        #[test]
        fn whole_amounts_read_back(n in 0_u64..10_000, unit in 0_usize..5) {
            let (suffix, seconds) = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3_600.0), ("d", 86_400.0)][unit];
            let expected = Duration::from_secs_f64(n as f64 * seconds);
            proptest::prop_assert_eq!(parse(&format!("{n}{suffix}")), Some(expected));
        }
    }
}
