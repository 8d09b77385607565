//! `@max_auto("100/h")`: caps on how many proposals an allow policy may
//! approve per fixed window. The store counts them in the submitting
//! transaction, so the cap holds under concurrency and across restarts.

use std::fmt;
use std::time::Duration;

use crate::Timestamp;
use crate::routing::ReviewPlan;

/// A count per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Most automated approvals per window.
    pub limit: u32,
    /// The window length.
    pub window: Duration,
}

impl Rate {
    /// Parses `N/s`, `N/m`, `N/h` or `N/d` (also `N/sec`, `N/min`, `N/hour`,
    /// `N/day`), N from 0 to 1,000,000,000.
    pub fn parse(text: &str) -> Option<Rate> {
        let (count, unit) = text.trim().split_once('/')?;
        let limit: u32 = count.trim().parse().ok()?;
        if limit > 1_000_000_000 {
            return None;
        }
        let seconds = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3_600,
            "d" | "day" => 86_400,
            _ => return None,
        };
        Some(Rate {
            limit,
            window: Duration::from_secs(seconds),
        })
    }

    /// The start of the window `now` falls in (windows are aligned to the
    /// Unix epoch: hours start on the hour, days at 00:00 UTC).
    pub fn window_start(&self, now: Timestamp) -> Timestamp {
        let width = i64::try_from(self.window.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        Timestamp::from_millis(now.millis().div_euclid(width) * width)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.window.as_secs() {
            1 => "s",
            60 => "m",
            3_600 => "h",
            _ => "d",
        };
        write!(f, "{}/{unit}", self.limit)
    }
}

/// The cap of one matched allow policy.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoLimit {
    /// The policy id; counters are kept per policy id.
    pub policy: String,
    /// The cap.
    pub rate: Rate,
    /// The review when the cap is used up (the policy's `@reviewers` etc.).
    pub review: ReviewPlan,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        for (text, shown) in [
            ("100/h", Some("100/h")),
            ("5/m", Some("5/m")),
            ("0/d", Some("0/d")),
            (" 7 / sec ", Some("7/s")),
            ("1000/day", Some("1000/d")),
            ("100", None),
            ("-1/h", None),
            ("1.5/h", None),
            ("10/w", None),
            ("2000000000/h", None),
        ] {
            assert_eq!(
                Rate::parse(text).map(|rate| rate.to_string()).as_deref(),
                shown,
                "{text}"
            );
        }
    }

    #[test]
    fn windows_align_to_the_epoch() {
        let rate = Rate::parse("10/h").unwrap();
        let start = rate.window_start(Timestamp::from_millis(3_600_000 * 5 + 1234));
        assert_eq!(start.millis(), 3_600_000 * 5);
    }
}
