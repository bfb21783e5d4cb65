//! Per-version health: steps run, steps that faulted, contacts started, contacts that got the
//! fallback. Counted on every step, stored with each step's writes, and read by the canary
//! guard that aborts a failing candidate by itself.

use serde::{Deserialize, Serialize};

/// How a version has been doing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// Steps run.
    pub steps: u64,
    /// Steps that faulted (trap, deadline, memory, fuel, flow error, invalid output).
    pub faults: u64,
    /// Contacts started on it.
    pub contacts: u64,
    /// Contacts that got the fallback at least once.
    pub fallback_contacts: u64,
    /// Set when it was aborted as a canary: when, by whom, why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<Aborted>,
}

/// The end of a canary that was not promoted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Aborted {
    /// RFC 3339 time.
    pub at: String,
    /// `auto-rollback` or the admin's token name.
    pub by: String,
    /// Why.
    pub reason: String,
}

impl Health {
    /// Adds another node's counts (a cluster's health is the sum of its nodes').
    pub fn add(&mut self, other: &Health) {
        self.steps += other.steps;
        self.faults += other.faults;
        self.contacts += other.contacts;
        self.fallback_contacts += other.fallback_contacts;
        if self.aborted.is_none() {
            self.aborted = other.aborted.clone();
        }
    }

    /// Share of steps that faulted.
    pub fn fault_rate(&self) -> f64 {
        if self.steps == 0 {
            0.0
        } else {
            self.faults as f64 / self.steps as f64
        }
    }

    /// Why a canary with this health must be aborted, if it must.
    pub fn verdict(&self, max_fault_rate: f64, min_steps: u64) -> Option<String> {
        (self.steps >= min_steps && self.fault_rate() > max_fault_rate).then(|| {
            format!(
                "fault rate {:.0}% ({} of {} steps faulted) is over the {:.0}% threshold",
                self.fault_rate() * 100.0,
                self.faults,
                self.steps,
                max_fault_rate * 100.0
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_needs_a_sample_and_a_rate() {
        let mut h = Health {
            steps: 10,
            faults: 5,
            ..Health::default()
        };
        assert_eq!(h.verdict(0.05, 20), None, "too few steps to judge");
        h.steps = 40;
        h.faults = 12;
        assert!(h.verdict(0.05, 20).unwrap().contains("30%"));
        h.faults = 1;
        assert_eq!(h.verdict(0.05, 20), None);
    }
}
