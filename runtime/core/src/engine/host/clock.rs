//! `clock`: the current time, and wall-clock time in IANA time zones for business hours.

use chrono::{DateTime, Datelike, Offset, TimeZone, Timelike, Utc};
use serde_json::json;

use super::{Source, StepState};
use crate::engine::bindings::switchboard::flow::clock::{Host, LocalTime, Weekday};

/// Where a step's time comes from.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system clock.
    System,
    /// A fixed instant (simulations at a chosen time).
    Fixed(DateTime<Utc>),
}

impl Clock {
    fn now(self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Fixed(at) => at,
        }
    }
}

/// The wall-clock time at `at` in IANA zone `zone`.
pub fn local_time(at: DateTime<Utc>, zone: &str) -> Result<LocalTime, String> {
    let tz: chrono_tz::Tz = zone.parse().map_err(|_| {
        format!("unknown time zone {zone:?}: use an IANA name such as America/New_York")
    })?;
    let local = tz.from_utc_datetime(&at.naive_utc());
    Ok(LocalTime {
        year: local.year(),
        month: local.month() as u8,
        day: local.day() as u8,
        weekday: match local.weekday() {
            chrono::Weekday::Mon => Weekday::Monday,
            chrono::Weekday::Tue => Weekday::Tuesday,
            chrono::Weekday::Wed => Weekday::Wednesday,
            chrono::Weekday::Thu => Weekday::Thursday,
            chrono::Weekday::Fri => Weekday::Friday,
            chrono::Weekday::Sat => Weekday::Saturday,
            chrono::Weekday::Sun => Weekday::Sunday,
        },
        hour: local.hour() as u8,
        minute: local.minute() as u8,
        second: local.second() as u8,
        utc_offset_secs: local.offset().fix().local_minus_utc(),
    })
}

impl Host for StepState {
    fn now(&mut self) -> u64 {
        let ms = match self.source("clock.now", &json!(null)) {
            Source::Recorded(answer) => answer.as_u64().unwrap_or_default(),
            Source::Live | Source::Missing => {
                self.services.clock.now().timestamp_millis().max(0) as u64
            }
        };
        self.record("clock.now", json!(null), json!(ms));
        ms
    }

    fn time_in(&mut self, zone: String) -> Result<LocalTime, String> {
        let result = local_time(self.services.clock.now(), &zone);
        let recorded = match &result {
            Ok(t) => json!({"ok": format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02} {:?} {:+}s",
                t.year, t.month, t.day, t.hour, t.minute, t.second, t.weekday, t.utc_offset_secs)}),
            Err(e) => json!({"err": e}),
        };
        self.record("clock.time-in", json!(zone), recorded);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_york_in_winter_and_summer() {
        let winter = Utc.with_ymd_and_hms(2026, 1, 15, 14, 30, 0).unwrap();
        let t = local_time(winter, "America/New_York").unwrap();
        assert_eq!((t.hour, t.minute, t.utc_offset_secs), (9, 30, -5 * 3600));
        assert_eq!(t.weekday, Weekday::Thursday);
        let summer = Utc.with_ymd_and_hms(2026, 7, 15, 14, 30, 0).unwrap();
        assert_eq!(local_time(summer, "America/New_York").unwrap().hour, 10);
        assert!(
            local_time(summer, "Mars/Olympus")
                .unwrap_err()
                .contains("IANA")
        );
    }
}
