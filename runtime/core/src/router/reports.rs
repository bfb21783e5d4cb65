//! Historical reports per queue and per agent over a period, cut into intervals (15 minutes,
//! an hour, a day) in a chosen time zone. Computed from what the store keeps: the task log
//! (every finished task, by when it arrived), the open tasks, agents' handled tasks and their
//! state history; nothing from memory that a restart would lose.
//!
//! What counts where (the README's "Reports" section gives the same rules to users):
//! - A queue's figures count each task in the interval in which it arrived: offered, and then
//!   answered (an agent accepted it), abandoned (canceled or timed out first; a short abandon
//!   when it waited less than the threshold), or still waiting.
//! - Service level = answered within the queue's `sla_secs` / (answered + abandoned), short
//!   abandons left out of both; abandon rate = abandoned / (offered - short abandoned);
//!   ASA = mean wait of the answered; AHT = mean of talk + hold + wrap-up (accept to end) of
//!   the answered tasks that have ended, each part reported too.
//! - An agent's handled tasks and AHT count in the interval the task ended; their time in
//!   each activity and their busy time (at least one task accepted and not ended) are the
//!   parts that fall inside the interval; occupancy = busy / (busy or available).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

use super::*;

/// Intervals a report may be cut into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Interval {
    /// 15 minutes.
    #[serde(rename = "15m")]
    Quarter,
    /// An hour.
    #[serde(rename = "1h")]
    Hour,
    /// A day (midnight to midnight in the report's time zone).
    #[serde(rename = "1d")]
    Day,
}

impl Interval {
    /// `15m`, `1h` or `1d`.
    pub fn parse(text: &str) -> Result<Interval, RouterError> {
        match text {
            "15m" => Ok(Interval::Quarter),
            "1h" => Ok(Interval::Hour),
            "1d" => Ok(Interval::Day),
            other => Err(RouterError::Invalid(format!(
                "interval {other:?} is not one of 15m, 1h, 1d"
            ))),
        }
    }

    /// The interval's name.
    pub fn name(self) -> &'static str {
        match self {
            Interval::Quarter => "15m",
            Interval::Hour => "1h",
            Interval::Day => "1d",
        }
    }

    /// The start of the interval holding local time `t`.
    fn floor(self, t: NaiveDateTime) -> NaiveDateTime {
        let day = t.date().and_hms_opt(0, 0, 0).unwrap_or(t);
        match self {
            Interval::Day => day,
            Interval::Hour => day + Duration::hours(i64::from(t.hour())),
            Interval::Quarter => {
                day + Duration::hours(i64::from(t.hour()))
                    + Duration::minutes(i64::from(t.minute() / 15 * 15))
            }
        }
    }

    /// The next interval's start after local time `t`.
    fn step(self, t: NaiveDateTime) -> NaiveDateTime {
        match self {
            Interval::Quarter => t + Duration::minutes(15),
            Interval::Hour => t + Duration::hours(1),
            Interval::Day => t + Duration::days(1),
        }
    }
}

/// Most intervals one report may hold (per queue or agent).
pub const MAX_INTERVALS: usize = 5_000;

/// What a report covers.
#[derive(Debug, Clone)]
pub struct ReportQuery {
    /// From this time (ms since the epoch), rounded down to its interval's start.
    pub from_ms: u64,
    /// Until this time (ms, exclusive); later than now counts up to now.
    pub to_ms: u64,
    /// How the period is cut.
    pub interval: Interval,
    /// The time zone intervals start in (days start at its midnight).
    pub zone: Zone,
    /// Abandons after less than this many seconds are short (counted apart); `None`: each
    /// queue's own `short_abandon_secs`.
    pub short_abandon_secs: Option<u64>,
    /// Only this queue (queue reports) or agent (agent reports).
    pub only: Option<String>,
}

/// One interval of a period: its bounds in ms and its start as local time.
#[derive(Debug, Clone)]
struct Slot {
    start_ms: u64,
    end_ms: u64,
    label: String,
}

impl ReportQuery {
    /// The intervals of the period, in order.
    fn slots(&self) -> Result<Vec<Slot>, RouterError> {
        if self.to_ms <= self.from_ms {
            return Err(RouterError::Invalid(
                "a report's `to` must come after its `from`".into(),
            ));
        }
        let local = |ms: u64| {
            DateTime::<Utc>::from_timestamp_millis(ms as i64)
                .map(|t| t.with_timezone(&self.zone).naive_local())
                .ok_or_else(|| RouterError::Invalid(format!("{ms} is not a time")))
        };
        // The first local time at or after `t` that exists in the zone (a clock moved forward
        // skips an hour), as ms.
        let utc = |t: NaiveDateTime| -> u64 {
            let mut t = t;
            for _ in 0..8 {
                if let Some(at) = self.zone.from_local_datetime(&t).earliest() {
                    return at.timestamp_millis().max(0) as u64;
                }
                t += Duration::minutes(15);
            }
            t.and_utc().timestamp_millis().max(0) as u64
        };
        let mut slots = Vec::new();
        let mut start = self.interval.floor(local(self.from_ms)?);
        let mut start_ms = utc(start);
        while start_ms < self.to_ms {
            // Days run from one local midnight to the next (23 or 25 hours when the clocks
            // change); quarters and hours are steps of real time from a local boundary, so a
            // skipped or repeated local hour neither ends the report nor doubles an interval.
            let next_ms = match self.interval {
                Interval::Day => {
                    let mut next = self.interval.step(start);
                    let mut next_ms = utc(next);
                    while next_ms <= start_ms {
                        next = self.interval.step(next);
                        next_ms = utc(next);
                    }
                    start = next;
                    next_ms
                }
                Interval::Hour => start_ms + 3_600_000,
                Interval::Quarter => start_ms + 900_000,
            };
            if slots.len() == MAX_INTERVALS {
                return Err(RouterError::Invalid(format!(
                    "the period holds more than {MAX_INTERVALS} intervals of {}: choose a longer interval or a shorter period",
                    self.interval.name()
                )));
            }
            let label = self
                .zone
                .timestamp_millis_opt(start_ms as i64)
                .single()
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            slots.push(Slot {
                start_ms,
                end_ms: next_ms,
                label,
            });
            start_ms = next_ms;
        }
        Ok(slots)
    }
}

/// What reports count of a task: kept in the task log when it finishes, read from the
/// router's state while it is open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Finished {
    /// The task.
    pub task: String,
    /// The queue it ended in.
    pub queue: String,
    /// Its channel.
    pub channel: Channel,
    /// The agent who had it last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// When it arrived (ms).
    pub created_ms: u64,
    /// When the agent who had it last accepted it (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_ms: Option<u64>,
    /// When the first agent accepted it (ms): the end of the customer's wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_ms: Option<u64>,
    /// When its conversation ended and wrap-up began (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapping_since_ms: Option<u64>,
    /// When it ended (ms); `None` while open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// How it ended (or stands).
    pub status: TaskStatus,
    /// The agent's disposition code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<String>,
    /// Time on hold (ms).
    #[serde(default)]
    pub hold_ms: u64,
}

impl Finished {
    /// The facts of `task`.
    pub fn of(task: &Task) -> Finished {
        Finished {
            task: task.id.clone(),
            queue: task.queue.clone(),
            channel: task.channel,
            agent: task.agent.clone().filter(|_| task.assigned_ms.is_some()),
            created_ms: task.created_ms,
            assigned_ms: task.assigned_ms,
            answered_ms: task.first_assigned_ms.or(task.assigned_ms),
            wrapping_since_ms: task.wrapping_since_ms,
            ended_ms: task.ended_ms,
            status: task.status,
            disposition: task.disposition.clone(),
            hold_ms: task.hold_ms,
        }
    }

    /// First acceptance to end (talk, hold and wrap-up, every agent's), once ended.
    fn handle_ms(&self) -> Option<u64> {
        Some(self.ended_ms?.saturating_sub(self.answered_ms?))
    }

    /// The last agent's part: their acceptance to end, once ended.
    fn agent_handle_ms(&self) -> Option<u64> {
        Some(self.ended_ms?.saturating_sub(self.assigned_ms?))
    }

    /// Wrap-up (conversation end to task end), once ended.
    fn wrapup_ms(&self) -> Option<u64> {
        let ended = self.ended_ms?;
        self.assigned_ms?;
        Some(
            self.wrapping_since_ms
                .map_or(0, |w| ended.saturating_sub(w)),
        )
    }
}

/// A queue's figures over one interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueRow {
    /// The queue.
    pub queue: String,
    /// The interval's start, local time with its offset (RFC 3339).
    pub interval_start: String,
    /// The interval's start (ms since the epoch).
    pub start_ms: u64,
    /// Tasks that arrived in the interval.
    pub offered: u64,
    /// Of those, accepted by an agent.
    pub answered: u64,
    /// Of those, canceled or timed out before an agent accepted (short abandons not included).
    pub abandoned: u64,
    /// Of those, abandoned after waiting less than the short-abandon threshold.
    pub short_abandoned: u64,
    /// Of those, still waiting when the report was made.
    pub waiting: u64,
    /// Answered within the queue's service-level threshold.
    pub answered_in_sl: u64,
    /// answered_in_sl / (answered + abandoned), 0-100; none without such tasks.
    pub service_level_percent: Option<f64>,
    /// abandoned / (offered - short_abandoned), 0-100.
    pub abandon_rate_percent: Option<f64>,
    /// Mean wait of the answered (s).
    pub asa_secs: Option<f64>,
    /// The longest wait of an answered or abandoned task (s).
    pub longest_wait_secs: f64,
    /// Answered tasks that have ended (what AHT averages).
    pub handled: u64,
    /// Mean handle time: talk + hold + wrap-up (s).
    pub aht_secs: Option<f64>,
    /// Mean talk time, hold not included (s).
    pub talk_secs: Option<f64>,
    /// Mean hold time (s).
    pub hold_secs: Option<f64>,
    /// Mean wrap-up time (s).
    pub wrapup_secs: Option<f64>,
}

/// An agent's figures over one interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentRow {
    /// The agent.
    pub agent: String,
    /// The interval's start, local time with its offset (RFC 3339).
    pub interval_start: String,
    /// The interval's start (ms since the epoch).
    pub start_ms: u64,
    /// Tasks they accepted that ended in the interval.
    pub handled: u64,
    /// Mean handle time of those (s).
    pub aht_secs: Option<f64>,
    /// Time in the interval with at least one accepted task (s).
    pub busy_secs: f64,
    /// busy / (busy or available), 0-100.
    pub occupancy_percent: Option<f64>,
    /// Seconds of the interval in each activity (`offline` before the first one).
    pub states: BTreeMap<String, f64>,
}

/// Seconds, from ms.
fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// `part / whole` as a percentage, none when `whole` is 0.
fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

/// The mean of `total` over `n`, in seconds.
fn mean_secs(total: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| total as f64 / 1000.0 / n as f64)
}

/// The length of the union of `spans`, each clipped to `[from, to)`.
fn covered(spans: &[(u64, u64)], from: u64, to: u64) -> u64 {
    let mut clipped: Vec<(u64, u64)> = spans
        .iter()
        .map(|&(a, b)| (a.max(from), b.min(to)))
        .filter(|(a, b)| a < b)
        .collect();
    clipped.sort_unstable();
    let (mut total, mut reach) = (0, 0);
    for (a, b) in clipped {
        let a = a.max(reach);
        if b > a {
            total += b - a;
            reach = b;
        }
    }
    total
}

impl Router {
    /// The figures of each queue (or the one asked for) in each interval of the period.
    pub fn queue_report(&self, query: &ReportQuery) -> Result<Vec<QueueRow>, RouterError> {
        let slots = query.slots()?;
        let now = (self.clock)();
        let (Some(first), Some(last)) = (slots.first(), slots.last()) else {
            return Ok(Vec::new());
        };
        let (from, to) = (first.start_ms, last.end_ms.min(query.to_ms));
        let (configs, open) = {
            let state = self.lock();
            let configs: BTreeMap<String, QueueConfig> = state
                .queues
                .iter()
                .map(|(name, q)| (name.clone(), q.config.clone()))
                .collect();
            let open: Vec<Finished> = state
                .tasks
                .values()
                .filter(|t| t.created_ms >= from && t.created_ms < to)
                .map(Finished::of)
                .collect();
            (configs, open)
        };
        // A task that finished between reading the open ones and the log is in both: the
        // log's entry stands.
        let mut tasks = self.task_log(from, to)?;
        let logged: std::collections::HashSet<String> =
            tasks.iter().map(|t| t.task.clone()).collect();
        tasks.extend(open.into_iter().filter(|t| !logged.contains(&t.task)));
        let mut names: BTreeSet<String> = configs.keys().cloned().collect();
        names.extend(tasks.iter().map(|t| t.queue.clone()));
        if let Some(only) = &query.only {
            if !names.contains(only) {
                return Err(RouterError::UnknownQueue(only.clone()));
            }
            names.retain(|n| n == only);
        }
        let mut rows = Vec::with_capacity(names.len() * slots.len());
        for name in names {
            let config = configs.get(&name);
            let sla_ms = config.map_or(20, |c| c.sla_secs) * 1000;
            let short_ms = query
                .short_abandon_secs
                .or(config.map(|c| c.short_abandon_secs))
                .unwrap_or(DEFAULT_SHORT_ABANDON_SECS)
                * 1000;
            let mine: Vec<&Finished> = tasks.iter().filter(|t| t.queue == name).collect();
            for slot in &slots {
                let mut row = QueueRow {
                    queue: name.clone(),
                    interval_start: slot.label.clone(),
                    start_ms: slot.start_ms,
                    offered: 0,
                    answered: 0,
                    abandoned: 0,
                    short_abandoned: 0,
                    waiting: 0,
                    answered_in_sl: 0,
                    service_level_percent: None,
                    abandon_rate_percent: None,
                    asa_secs: None,
                    longest_wait_secs: 0.0,
                    handled: 0,
                    aht_secs: None,
                    talk_secs: None,
                    hold_secs: None,
                    wrapup_secs: None,
                };
                let (mut waited, mut handle, mut wrapup, mut hold, mut longest) = (0, 0, 0, 0, 0);
                for t in mine
                    .iter()
                    .filter(|t| t.created_ms >= slot.start_ms && t.created_ms < slot.end_ms)
                {
                    row.offered += 1;
                    if let Some(assigned) = t.answered_ms {
                        let wait = assigned.saturating_sub(t.created_ms);
                        row.answered += 1;
                        waited += wait;
                        longest = longest.max(wait);
                        if wait <= sla_ms {
                            row.answered_in_sl += 1;
                        }
                        if let (Some(h), Some(w)) = (t.handle_ms(), t.wrapup_ms()) {
                            row.handled += 1;
                            handle += h;
                            wrapup += w;
                            hold += t.hold_ms;
                        }
                    } else if let Some(ended) = t.ended_ms {
                        let wait = ended.saturating_sub(t.created_ms);
                        if wait < short_ms {
                            row.short_abandoned += 1;
                        } else {
                            row.abandoned += 1;
                            longest = longest.max(wait);
                        }
                    } else {
                        row.waiting += 1;
                        longest = longest.max(now.saturating_sub(t.created_ms));
                    }
                }
                row.service_level_percent =
                    percent(row.answered_in_sl, row.answered + row.abandoned);
                row.abandon_rate_percent =
                    percent(row.abandoned, row.offered - row.short_abandoned);
                row.asa_secs = mean_secs(waited, row.answered);
                row.longest_wait_secs = secs(longest);
                row.aht_secs = mean_secs(handle, row.handled);
                row.talk_secs = mean_secs(handle.saturating_sub(wrapup + hold), row.handled);
                row.hold_secs = mean_secs(hold, row.handled);
                row.wrapup_secs = mean_secs(wrapup, row.handled);
                rows.push(row);
            }
        }
        Ok(rows)
    }

    /// The figures of each agent (or the one asked for) in each interval of the period.
    pub fn agent_report(&self, query: &ReportQuery) -> Result<Vec<AgentRow>, RouterError> {
        let slots = query.slots()?;
        let now = (self.clock)();
        let (Some(first), Some(last)) = (slots.first(), slots.last()) else {
            return Ok(Vec::new());
        };
        let (from, to) = (first.start_ms, last.end_ms.min(query.to_ms).min(now));
        let (names, open) = {
            let state = self.lock();
            let names: Vec<String> = state.agents.keys().cloned().collect();
            let open: Vec<Finished> = state
                .tasks
                .values()
                .filter(|t| {
                    t.agent.is_some()
                        && matches!(t.status, TaskStatus::Assigned | TaskStatus::Wrapping)
                })
                .map(Finished::of)
                .collect();
            (names, open)
        };
        let mut names = names;
        names.sort();
        if let Some(only) = &query.only {
            if !names.contains(only) {
                return Err(RouterError::UnknownAgent(only.clone()));
            }
            names.retain(|n| n == only);
        }
        let mut rows = Vec::with_capacity(names.len() * slots.len());
        for name in names {
            let mut tasks = self.handled_since(&name, from)?;
            let logged: std::collections::HashSet<String> =
                tasks.iter().map(|t| t.task.clone()).collect();
            let open: Vec<&Finished> = open.iter().filter(|t| !logged.contains(&t.task)).collect();
            tasks.extend(
                open.iter()
                    .filter(|t| t.agent.as_deref() == Some(&name))
                    .map(|t| (*t).clone()),
            );
            let busy: Vec<(u64, u64)> = tasks
                .iter()
                .filter_map(|t| Some((t.assigned_ms?, t.ended_ms.unwrap_or(now))))
                .collect();
            let states = self.states_between(&name, from, to)?;
            for slot in &slots {
                let (start, end) = (slot.start_ms, slot.end_ms.min(to));
                let mut row = AgentRow {
                    agent: name.clone(),
                    interval_start: slot.label.clone(),
                    start_ms: slot.start_ms,
                    handled: 0,
                    aht_secs: None,
                    busy_secs: 0.0,
                    occupancy_percent: None,
                    states: BTreeMap::new(),
                };
                let mut handle = 0;
                for t in &tasks {
                    if let (Some(ended), Some(h)) = (t.ended_ms, t.agent_handle_ms())
                        && ended >= start
                        && ended < end
                    {
                        row.handled += 1;
                        handle += h;
                    }
                }
                row.aht_secs = mean_secs(handle, row.handled);
                let mut available = Vec::new();
                if start < end {
                    for (activity, a, b) in &states {
                        let part = covered(&[(*a, *b)], start, end);
                        if part > 0 {
                            *row.states.entry(activity.clone()).or_default() += secs(part);
                        }
                        if activity == "available" {
                            available.push((*a, *b));
                        }
                    }
                    let busy_ms = covered(&busy, start, end);
                    available.extend(busy.iter().copied());
                    row.busy_secs = secs(busy_ms);
                    row.occupancy_percent = percent(busy_ms, covered(&available, start, end));
                }
                rows.push(row);
            }
        }
        Ok(rows)
    }

    /// The finished tasks that arrived in `[from, to)`, from the task log (a bounded scan).
    fn task_log(&self, from: u64, to: u64) -> Result<Vec<Finished>, RouterError> {
        const PAGE: usize = 2048;
        let mut cursor = keys::task_log_since(from).into_bytes();
        let mut found = Vec::new();
        loop {
            let page = self
                .store
                .scan(Tree::TaskLog, &Scan::prefix(b"", PAGE).after(&cursor))?;
            for (key, value) in &page {
                let facts: Finished = crate::store::decode(Tree::TaskLog, key, value)?;
                if facts.created_ms >= to {
                    return Ok(found);
                }
                found.push(facts);
            }
            match page.last() {
                Some((last, _)) if page.len() == PAGE => cursor = last.clone(),
                _ => return Ok(found),
            }
        }
    }

    /// The tasks `agent` handled that ended at `from` or later (their history, then one read
    /// per task).
    fn handled_since(&self, agent: &str, from: u64) -> Result<Vec<Finished>, RouterError> {
        const PAGE: usize = 1024;
        let prefix = keys::agent_history_of(agent);
        let mut cursor = keys::agent_history(agent, from, "").into_bytes();
        cursor.pop();
        let mut found = Vec::new();
        loop {
            let page = self.store.scan(
                Tree::AgentHistory,
                &Scan::prefix(prefix.as_bytes(), PAGE).after(&cursor),
            )?;
            for (key, value) in &page {
                let id: String = crate::store::decode(Tree::AgentHistory, key, value)?;
                if let Some(task) = self.store.get_json::<Task>(Tree::Tasks, &id)? {
                    found.push(Finished::of(&task));
                }
            }
            match page.last() {
                Some((last, _)) if page.len() == PAGE => cursor = last.clone(),
                _ => return Ok(found),
            }
        }
    }

    /// `agent`'s activities over `[from, to)` as `(activity, start, end)`: the one they had
    /// at `from` (`offline` before any), then each change.
    fn states_between(
        &self,
        agent: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<(String, u64, u64)>, RouterError> {
        const PAGE: usize = 1024;
        let prefix = keys::agent_states_of(agent);
        let upto = keys::agent_state(agent, from + 1);
        let before = self.store.scan(
            Tree::AgentStates,
            &Scan::prefix(prefix.as_bytes(), 1)
                .reversed()
                .after(upto.as_bytes()),
        )?;
        let mut current = match before.first() {
            Some((key, value)) => crate::store::decode::<String>(Tree::AgentStates, key, value)?,
            None => "offline".to_string(),
        };
        let mut since = from;
        let mut spans = Vec::new();
        let mut cursor = keys::agent_state(agent, from).into_bytes();
        'pages: loop {
            let page = self.store.scan(
                Tree::AgentStates,
                &Scan::prefix(prefix.as_bytes(), PAGE).after(&cursor),
            )?;
            for (key, value) in &page {
                let at = keys::agent_state_time(key);
                if at >= to {
                    break 'pages;
                }
                let activity: String = crate::store::decode(Tree::AgentStates, key, value)?;
                spans.push((std::mem::replace(&mut current, activity), since, at));
                since = at;
            }
            match page.last() {
                Some((last, _)) if page.len() == PAGE => cursor = last.clone(),
                _ => break,
            }
        }
        spans.push((current, since, to));
        spans.retain(|(_, a, b)| a < b);
        Ok(spans)
    }
}

/// The zone a report's intervals start in.
pub use chrono_tz::Tz as Zone;

/// A zone by its IANA name (`Europe/Paris`), `UTC` when empty.
pub fn parse_zone(name: &str) -> Result<Zone, RouterError> {
    if name.is_empty() {
        return Ok(chrono_tz::UTC);
    }
    name.parse::<Zone>().map_err(|_| {
        RouterError::Invalid(format!(
            "{name:?} is not a time zone: give an IANA name such as Europe/Paris or America/New_York"
        ))
    })
}

/// A time as ms since the epoch: RFC 3339 (`2026-06-01T08:00:00Z`), a local date and time in
/// `zone` (`2026-06-01T08:00`, as a browser's date-time field gives it), a local date (its
/// midnight) or ms since the epoch.
pub fn parse_time(text: &str, zone: Zone) -> Result<u64, RouterError> {
    let text = text.trim();
    let local = |t: NaiveDateTime| {
        zone.from_local_datetime(&t)
            .earliest()
            .map(|t| t.timestamp_millis())
    };
    let ms = if let Ok(ms) = text.parse::<u64>() {
        Some(ms as i64)
    } else if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        Some(t.timestamp_millis())
    } else if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S") {
        local(t)
    } else if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M") {
        local(t)
    } else if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        d.and_hms_opt(0, 0, 0).and_then(local)
    } else {
        None
    };
    ms.filter(|ms| *ms >= 0).map(|ms| ms as u64).ok_or_else(|| {
        RouterError::Invalid(format!(
            "{text:?} is not a time: give 2026-06-01, 2026-06-01T08:00 (in the report's zone) or 2026-06-01T08:00:00Z"
        ))
    })
}

/// The start of today in `zone`, as ms (the default start of a report).
pub fn start_of_day(now_ms: u64, zone: Zone) -> u64 {
    DateTime::<Utc>::from_timestamp_millis(now_ms as i64)
        .map(|t| t.with_timezone(&zone).date_naive())
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|t| zone.from_local_datetime(&t).earliest())
        .map_or(0, |t| t.timestamp_millis().max(0) as u64)
}

/// A figure for CSV: empty when there is none.
fn cell(value: Option<f64>) -> String {
    value.map(|v| format!("{v:.3}")).unwrap_or_default()
}

/// Queue rows as CSV, one line per queue and interval.
pub fn queue_csv(rows: &[QueueRow]) -> Result<String, RouterError> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| RouterError::Invalid(format!("cannot write the CSV: {e}"));
    out.write_record([
        "queue",
        "interval_start",
        "offered",
        "answered",
        "abandoned",
        "short_abandoned",
        "waiting",
        "answered_in_sl",
        "service_level_percent",
        "abandon_rate_percent",
        "asa_secs",
        "longest_wait_secs",
        "handled",
        "aht_secs",
        "talk_secs",
        "hold_secs",
        "wrapup_secs",
    ])
    .map_err(fail)?;
    for r in rows {
        out.write_record([
            r.queue.clone(),
            r.interval_start.clone(),
            r.offered.to_string(),
            r.answered.to_string(),
            r.abandoned.to_string(),
            r.short_abandoned.to_string(),
            r.waiting.to_string(),
            r.answered_in_sl.to_string(),
            cell(r.service_level_percent),
            cell(r.abandon_rate_percent),
            cell(r.asa_secs),
            cell(Some(r.longest_wait_secs)),
            r.handled.to_string(),
            cell(r.aht_secs),
            cell(r.talk_secs),
            cell(r.hold_secs),
            cell(r.wrapup_secs),
        ])
        .map_err(fail)?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| RouterError::Invalid(format!("cannot write the CSV: {e}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Agent rows as CSV, one line per agent and interval, a `<activity>_secs` column for each
/// activity any of them took.
pub fn agent_csv(rows: &[AgentRow]) -> Result<String, RouterError> {
    let activities: BTreeSet<&String> = rows.iter().flat_map(|r| r.states.keys()).collect();
    let mut out = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| RouterError::Invalid(format!("cannot write the CSV: {e}"));
    let mut header: Vec<String> = [
        "agent",
        "interval_start",
        "handled",
        "aht_secs",
        "busy_secs",
        "occupancy_percent",
    ]
    .map(String::from)
    .to_vec();
    header.extend(activities.iter().map(|a| format!("{a}_secs")));
    out.write_record(&header).map_err(fail)?;
    for r in rows {
        let mut line = vec![
            r.agent.clone(),
            r.interval_start.clone(),
            r.handled.to_string(),
            cell(r.aht_secs),
            cell(Some(r.busy_secs)),
            cell(r.occupancy_percent),
        ];
        line.extend(
            activities
                .iter()
                .map(|a| cell(Some(r.states.get(*a).copied().unwrap_or(0.0)))),
        );
        out.write_record(&line).map_err(fail)?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| RouterError::Invalid(format!("cannot write the CSV: {e}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(from: &str, to: &str, interval: Interval) -> Vec<Slot> {
        let zone = parse_zone("Europe/Paris").unwrap();
        ReportQuery {
            from_ms: parse_time(from, zone).unwrap(),
            to_ms: parse_time(to, zone).unwrap(),
            interval,
            zone,
            short_abandon_secs: None,
            only: None,
        }
        .slots()
        .unwrap()
    }

    #[test]
    fn intervals_follow_the_zones_clock_through_both_changes_of_the_hour() {
        // Spring: 02:00 does not exist in Paris; the day has 23 hours.
        let hours = slots("2026-03-29T00:00", "2026-03-29T06:00", Interval::Hour);
        let labels: Vec<&str> = hours.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "2026-03-29T00:00:00+01:00",
                "2026-03-29T01:00:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T04:00:00+02:00",
                "2026-03-29T05:00:00+02:00",
            ]
        );
        assert!(hours.windows(2).all(|w| w[0].end_ms == w[1].start_ms));
        let days = slots("2026-03-29", "2026-03-30", Interval::Day);
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].end_ms - days[0].start_ms, 23 * 3_600_000);
        // Autumn: 02:00 comes twice; the day has 25 hours and no interval is doubled.
        let hours = slots("2026-10-25T00:00", "2026-10-25T04:00", Interval::Hour);
        let labels: Vec<&str> = hours.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "2026-10-25T00:00:00+02:00",
                "2026-10-25T01:00:00+02:00",
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T03:00:00+01:00",
            ]
        );
        let days = slots("2026-10-25", "2026-10-27", Interval::Day);
        assert_eq!(days[0].end_ms - days[0].start_ms, 25 * 3_600_000);
        assert_eq!(days[1].end_ms - days[1].start_ms, 24 * 3_600_000);
        let quarters = slots("2026-03-29T01:30", "2026-03-29T03:30", Interval::Quarter);
        assert_eq!(quarters.len(), 4, "01:30, 01:45, 03:00, 03:15");
    }
}
