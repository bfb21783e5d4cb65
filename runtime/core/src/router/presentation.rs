//! What the router shows: queue statistics (live numbers over the stored statistics
//! window), metrics, agents as the API and desks see them. Never changes anything.

use super::*;

impl Router {
    /// All agents with what they hold.
    pub fn agents(&self) -> Vec<Value> {
        let state = self.lock();
        let mut out: Vec<Value> = state
            .agents
            .values()
            .map(|w| agent_view(&state, w))
            .collect();
        out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        out
    }

    /// One agent with its reservation and tasks.
    pub fn agent(&self, name: &str) -> Result<Value, RouterError> {
        let state = self.lock();
        let w = state
            .agents
            .get(name)
            .ok_or_else(|| RouterError::UnknownAgent(name.into()))?;
        Ok(agent_view(&state, w))
    }

    /// The tasks not yet finished (waiting, offered, with an agent, wrapping), oldest first.
    pub fn open_tasks(&self) -> Vec<Task> {
        let mut tasks: Vec<Task> = self.lock().tasks.values().cloned().collect();
        tasks.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        tasks
    }

    /// Open reservations of an agent.
    pub fn reservations_of(&self, worker: &str) -> Vec<Reservation> {
        self.lock()
            .reservations
            .values()
            .filter(|r| r.agent == worker)
            .cloned()
            .collect()
    }

    /// Live numbers of a queue.
    pub fn stats(&self, queue: &str) -> Result<QueueStats, RouterError> {
        let now = (self.clock)();
        let mut state = self.lock();
        let q = state
            .queues
            .get_mut(queue)
            .ok_or_else(|| RouterError::UnknownQueue(queue.into()))?;
        while q
            .answered
            .front()
            .is_some_and(|(at, _)| *at + STATS_WINDOW_MS < now)
        {
            q.answered.pop_front();
        }
        while q
            .canceled
            .front()
            .is_some_and(|at| *at + STATS_WINDOW_MS < now)
        {
            q.canceled.pop_front();
        }
        let sla_ms = q.config.sla_secs * 1000;
        let answered = q.answered.len() as u64;
        let within = q
            .answered
            .iter()
            .filter(|(_, waited)| *waited <= sla_ms)
            .count() as u64;
        let average_wait_secs = if answered == 0 {
            0.0
        } else {
            q.answered.iter().map(|(_, w)| *w).sum::<u64>() as f64 / answered as f64 / 1000.0
        };
        let canceled = q.canceled.len() as u64;
        let members = q.members.clone();
        let config = q.config.clone();
        let mut tasks = std::collections::BTreeMap::new();
        let mut longest = 0u64;
        for t in state.tasks.values().filter(|t| t.queue == queue) {
            *tasks
                .entry(format!("{:?}", t.status).to_lowercase())
                .or_insert(0u64) += 1;
            if t.status == TaskStatus::Pending {
                longest = longest.max(now.saturating_sub(t.created_ms));
            }
        }
        tasks.insert("answered-in-window".into(), answered);
        tasks.insert("canceled-in-window".into(), canceled);
        let available = members
            .iter()
            .filter_map(|m| state.agents.get(m))
            .filter(|w| w.available() && w.has_any_room())
            .count() as u64;
        let _ = config;
        Ok(QueueStats {
            queue: queue.to_string(),
            tasks,
            longest_wait_secs: longest as f64 / 1000.0,
            average_wait_secs,
            available_agents: available,
            eligible_agents: members.len() as u64,
            sla_percent: if answered + canceled == 0 {
                100.0
            } else {
                within as f64 * 100.0 / (answered + canceled) as f64
            },
        })
    }

    /// Every queue's live numbers.
    pub fn all_stats(&self) -> Vec<QueueStats> {
        let names: Vec<String> = {
            let mut names: Vec<String> = self.lock().queues.keys().cloned().collect();
            names.sort();
            names
        };
        names.iter().filter_map(|q| self.stats(q).ok()).collect()
    }

    /// The router's numbers, read when metrics are scraped.
    pub fn sample_metrics(&self, samples: &mut crate::metrics::Samples) {
        use crate::metrics::labels;
        let stats = self.all_stats();
        let mut tasks = Vec::new();
        for s in &stats {
            for status in ["pending", "reserved", "assigned"] {
                let n = s.tasks.get(status).copied().unwrap_or(0);
                tasks.push((labels(&[("queue", &s.queue), ("status", status)]), n as f64));
            }
        }
        samples.gauges(
            "switchboard_queue_tasks",
            "Open tasks by queue and status",
            tasks,
        );
        let per_queue = |value: fn(&QueueStats) -> f64| -> Vec<(Vec<(String, String)>, f64)> {
            stats
                .iter()
                .map(|s| (labels(&[("queue", &s.queue)]), value(s)))
                .collect()
        };
        samples.gauges(
            "switchboard_queue_longest_wait_seconds",
            "Longest wait of a waiting task",
            per_queue(|s| s.longest_wait_secs),
        );
        samples.gauges(
            "switchboard_queue_available_agents",
            "Members available with free capacity",
            per_queue(|s| s.available_agents as f64),
        );
        samples.gauges(
            "switchboard_queue_sla_percent",
            "Share of tasks answered within the SLA over the last 15 minutes",
            per_queue(|s| s.sla_percent),
        );
    }
}

pub(super) fn agent_view(state: &State, w: &Agent) -> Value {
    let tasks: Vec<&Task> = state
        .tasks
        .values()
        .filter(|t| {
            t.agent.as_deref() == Some(w.record.name.as_str())
                && matches!(t.status, TaskStatus::Assigned | TaskStatus::Wrapping)
        })
        .collect();
    let reservation = w
        .reservation
        .as_ref()
        .and_then(|r| state.reservations.get(r));
    serde_json::json!({
        "name": w.record.name,
        "attributes": w.record.attributes,
        "activity": w.record.activity,
        "capacity": w.record.capacity,
        "busy": w.busy,
        "reservation": reservation,
        "tasks": tasks,
        "missed_in_a_row": w.record.missed_in_a_row,
    })
}
