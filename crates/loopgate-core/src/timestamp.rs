//! `Timestamp`: milliseconds since the Unix epoch, UTC.
//!
//! Core never reads the clock; the server's `Clock` makes these.

use std::time::Duration;

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// From milliseconds since the epoch.
    pub const fn from_millis(millis: i64) -> Timestamp {
        Timestamp(millis)
    }

    /// Milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// This time plus a duration (saturating).
    pub fn plus(self, duration: Duration) -> Timestamp {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(millis))
    }

    /// RFC 3339 with millisecond precision, e.g. `2026-11-25T06:00:00.000Z`.
    /// (Written digit by digit: every listed task and proposal carries a
    /// few, and `format!` cost a twentieth of a review cycle.)
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(at) => match u32::try_from(at.year()) {
                Ok(year) if year <= 9999 => {
                    let mut out = *b"0000-00-00T00:00:00.000Z";
                    let fields = [
                        (0..4, year),
                        (5..7, u32::from(u8::from(at.month()))),
                        (8..10, u32::from(at.day())),
                        (11..13, u32::from(at.hour())),
                        (14..16, u32::from(at.minute())),
                        (17..19, u32::from(at.second())),
                        (20..23, u32::from(at.millisecond())),
                    ];
                    for (range, value) in fields {
                        put_digits(&mut out[range], value);
                    }
                    // INVARIANT: ASCII digits and separators only.
                    String::from_utf8(out.to_vec())
                        .unwrap_or_else(|_| String::from("9999-12-31T23:59:59.999Z"))
                }
                _ => {
                    let (y, mo, d) = (at.year(), u8::from(at.month()), at.day());
                    let (h, mi, s, ms) = (at.hour(), at.minute(), at.second(), at.millisecond());
                    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
                }
            },
            Err(_) => String::from("9999-12-31T23:59:59.999Z"),
        }
    }

    /// Parses RFC 3339.
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .ok()?;
        let millis = at.unix_timestamp_nanos() / 1_000_000;
        i64::try_from(millis).ok().map(Timestamp)
    }
}

/// Writes `value`'s last `slot.len()` decimal digits into `slot`.
fn put_digits(slot: &mut [u8], mut value: u32) {
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(millis: i64) -> String {
        let nanos = i128::from(millis) * 1_000_000;
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap();
        let (y, mo, d) = (at.year(), u8::from(at.month()), at.day());
        let (h, mi, s, ms) = (at.hour(), at.minute(), at.second(), at.millisecond());
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
    }

    proptest::proptest! {
        /// From the year -1000 to the last the `time` crate knows (9999):
        /// the digits written one by one are `format!`'s.
        #[test]
        fn formats_as_format_does(millis in -93_700_000_000_000_i64..=253_402_214_400_000) {
            proptest::prop_assert_eq!(Timestamp::from_millis(millis).to_rfc3339(), reference(millis));
        }
    }

    #[test]
    fn formats_the_edges_of_four_digit_years() {
        for millis in [
            0,
            -1,
            1,
            -62_167_219_200_000,
            -62_167_219_200_001,
            253_402_214_400_000,
        ] {
            assert_eq!(
                Timestamp::from_millis(millis).to_rfc3339(),
                reference(millis)
            );
        }
    }

    #[test]
    fn formats_and_parses() {
        let at = Timestamp::from_millis(1_795_000_000_123);
        assert_eq!(at.to_rfc3339(), "2026-11-18T11:06:40.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&at.to_rfc3339()), Some(at));
    }
}
