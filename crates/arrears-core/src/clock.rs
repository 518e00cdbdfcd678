//! Time, decided in one place. Business results are computed for an explicit business
//! date (`as_of`); the wall clock only stamps when something happened (an audit
//! record, a run, an import). Both come from a [`Clock`] the binary chooses and passes
//! down, so a test can fix them and no lower layer reads the system time itself.

use chrono::{DateTime, Local, NaiveDate, Utc};

pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The wall-clock instant.
    fn now(&self) -> DateTime<Utc>;

    /// Today, in the local time zone of the machine (the business date when no
    /// `--as-of` or configured date says otherwise).
    fn today(&self) -> NaiveDate {
        self.now().with_timezone(&Local).date_naive()
    }
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that always says the same instant (tests, replays).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// The business date of a command or request: the one it names, else the one the
/// configuration fixes, else the clock's today.
pub fn business_date(
    named: Option<NaiveDate>,
    configured: Option<NaiveDate>,
    clock: &dyn Clock,
) -> NaiveDate {
    named.or(configured).unwrap_or_else(|| clock.today())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_named_date_wins_then_the_configured_one_then_the_clock() {
        let clock = FixedClock("2026-03-04T12:00:00Z".parse().unwrap());
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(
            business_date(Some(d("2026-01-01")), Some(d("2026-02-02")), &clock),
            d("2026-01-01")
        );
        assert_eq!(
            business_date(None, Some(d("2026-02-02")), &clock),
            d("2026-02-02")
        );
        // Noon UTC is the same date in every zone from UTC−11 to UTC+11.
        assert_eq!(business_date(None, None, &clock), d("2026-03-04"));
    }
}
