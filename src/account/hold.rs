//! Holds only grow: a later answer never shortens a hold or a block an earlier one set.

use chrono::{DateTime, Utc};

/// The hold to keep when `reported` arrives on top of `stored`: the later of the two, and
/// either one when the other is missing (a missing end is no end, not "until now").
pub fn grown(
    stored: Option<DateTime<Utc>>,
    reported: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    // `None` orders before every `Some`, so the max skips a missing side.
    stored.max(reported)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Option<DateTime<Utc>> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_hold_keeps_the_later_end_and_ignores_a_missing_one() {
        let early = at("2026-12-02T10:00:00Z");
        let late = at("2026-12-03T10:00:00Z");
        assert_eq!(grown(early, late), late);
        assert_eq!(grown(late, early), late);
        assert_eq!(grown(None, early), early);
        assert_eq!(grown(early, None), early);
        assert_eq!(grown(None, None), None);
    }
}
