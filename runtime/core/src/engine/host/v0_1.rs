//! The host interfaces of contract 0.1.0 (`wit/0.1.0`). They did not change in 0.2.0: each
//! call converts its values and goes to the current implementation, so both versions are
//! served, traced and replayed by one piece of code.

use super::StepState;
use crate::engine::bindings::switchboard::flow as now;
use crate::engine::bindings::v0_1::switchboard::flow as old;

impl old::types::Host for StepState {}

impl old::kv::Host for StepState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        now::kv::Host::get(self, key)
    }

    fn set(&mut self, key: String, value: Vec<u8>) {
        now::kv::Host::set(self, key, value)
    }

    fn delete(&mut self, key: String) {
        now::kv::Host::delete(self, key)
    }
}

impl old::config::Host for StepState {
    fn get(&mut self, key: String) -> Option<String> {
        now::config::Host::get(self, key)
    }
}

impl old::log::Host for StepState {
    fn log(&mut self, level: old::log::Level, message: String) {
        use now::log::Level as L;
        let level = match level {
            old::log::Level::Trace => L::Trace,
            old::log::Level::Debug => L::Debug,
            old::log::Level::Info => L::Info,
            old::log::Level::Warn => L::Warn,
            old::log::Level::Error => L::Error,
        };
        now::log::Host::log(self, level, message)
    }
}

impl old::clock::Host for StepState {
    fn now(&mut self) -> u64 {
        now::clock::Host::now(self)
    }

    fn time_in(&mut self, zone: String) -> Result<old::clock::LocalTime, String> {
        use old::clock::Weekday as W;
        now::clock::Host::time_in(self, zone).map(|t| old::clock::LocalTime {
            year: t.year,
            month: t.month,
            day: t.day,
            weekday: match t.weekday {
                now::clock::Weekday::Monday => W::Monday,
                now::clock::Weekday::Tuesday => W::Tuesday,
                now::clock::Weekday::Wednesday => W::Wednesday,
                now::clock::Weekday::Thursday => W::Thursday,
                now::clock::Weekday::Friday => W::Friday,
                now::clock::Weekday::Saturday => W::Saturday,
                now::clock::Weekday::Sunday => W::Sunday,
            },
            hour: t.hour,
            minute: t.minute,
            second: t.second,
            utc_offset_secs: t.utc_offset_secs,
        })
    }
}

impl old::crm::Host for StepState {
    fn lookup(&mut self, key: old::crm::LookupKey) -> Result<Option<old::crm::Customer>, String> {
        let key = match key {
            old::crm::LookupKey::Phone(p) => now::crm::LookupKey::Phone(p),
            old::crm::LookupKey::Email(e) => now::crm::LookupKey::Email(e),
            old::crm::LookupKey::Id(id) => now::crm::LookupKey::Id(id),
        };
        now::crm::Host::lookup(self, key).map(|found| {
            found.map(|c| old::crm::Customer {
                id: c.id,
                name: c.name,
                phone: c.phone,
                email: c.email,
                tier: c.tier,
                attributes: c.attributes,
            })
        })
    }
}

impl crate::engine::bindings::v0_1::router::switchboard::flow::routing::Host for StepState {}
