//! Replay: re-runs a recorded contact's events through another version of its flow, with every
//! host call (CRM, kv, settings, clock) answered from the recording, and compares what the two
//! versions did, step by step. A recorded contact saved to a file is a golden contact: a
//! regression test a flow author can run in CI with `switchboard test`.
//! Never changes a session, a flow or the store.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::contract::{Action, Channel, Contact, Event};
use crate::engine::{Clock, Engine, FlowComponent, StepTarget};
use crate::sessions::{Session, TraceEntry};

/// A recorded contact, as saved for tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Golden {
    /// The flow it ran.
    pub flow: String,
    /// The version it ran on.
    pub recorded_version: u64,
    /// The contact id.
    pub contact: String,
    /// Channel.
    pub channel: Channel,
    /// Customer address.
    pub from: String,
    /// Address reached.
    pub to: String,
    /// Every step as recorded.
    pub steps: Vec<TraceEntry>,
}

impl Golden {
    /// The golden form of a session and its trace.
    pub fn of(session: &Session, trace: Vec<TraceEntry>) -> Golden {
        Golden {
            flow: session.flow.clone(),
            recorded_version: session.version,
            contact: session.id.clone(),
            channel: session.channel,
            from: session.from.clone(),
            to: session.to.clone(),
            steps: trace,
        }
    }
}

/// What a flow did in one step: its actions, or the kind of fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The flow's own actions.
    Actions(Vec<Action>),
    /// It faulted (the contact got the fallback).
    Fault(String),
}

/// One step, recorded and replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepDiff {
    /// Step number.
    pub step: u32,
    /// The event.
    pub event: Event,
    /// What the recorded version did.
    pub recorded: Outcome,
    /// What the replayed version did.
    pub replayed: Outcome,
    /// Host calls the replayed version made that the recording does not have.
    pub unrecorded_calls: Vec<String>,
    /// Whether both did the same.
    pub same: bool,
}

/// A whole contact, recorded and replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplayReport {
    /// The flow.
    pub flow: String,
    /// The contact.
    pub contact: String,
    /// The version it was recorded on.
    pub recorded_version: u64,
    /// What it was replayed against (`version 3`, or a file name).
    pub against: String,
    /// Whether every step did the same.
    pub identical: bool,
    /// Step by step.
    pub steps: Vec<StepDiff>,
}

/// Replays `golden` through `component`.
pub fn replay(
    engine: &Engine,
    golden: &Golden,
    component: &FlowComponent,
    version: u64,
    against: &str,
) -> ReplayReport {
    let flow: Arc<str> = golden.flow.as_str().into();
    let target = StepTarget {
        flow: &flow,
        version,
        component,
    };
    let mut state = Vec::new();
    let mut steps = Vec::new();
    for entry in &golden.steps {
        let contact = Contact {
            id: golden.contact.clone(),
            channel: golden.channel,
            from: golden.from.clone(),
            to: golden.to.clone(),
            attributes: entry.attributes.clone(),
        };
        let at = chrono::DateTime::parse_from_rfc3339(&entry.at)
            .map(|t| t.to_utc())
            .unwrap_or_else(|_| chrono::Utc::now());
        let services = engine.scratch_services(Clock::Fixed(at));
        let result = engine.replay_step(
            &services,
            &target,
            &contact,
            &state,
            &entry.event,
            entry.host_calls.clone(),
        );
        let replayed = match result.outcome {
            Ok((actions, new_state)) => {
                state = new_state;
                Outcome::Actions(actions)
            }
            Err(fault) => Outcome::Fault(fault.to_string()),
        };
        let recorded = match &entry.fault {
            Some(fault) => Outcome::Fault(fault.to_string()),
            None => Outcome::Actions(entry.actions.clone()),
        };
        let same = match (&recorded, &replayed) {
            (Outcome::Actions(a), Outcome::Actions(b)) => a == b,
            // Faults compare by kind: a message may name addresses that differ per build.
            (Outcome::Fault(a), Outcome::Fault(b)) => fault_kind(a) == fault_kind(b),
            _ => false,
        };
        steps.push(StepDiff {
            step: entry.step,
            event: entry.event.clone(),
            recorded,
            replayed,
            unrecorded_calls: result.unrecorded,
            same,
        });
    }
    ReplayReport {
        flow: golden.flow.clone(),
        contact: golden.contact.clone(),
        recorded_version: golden.recorded_version,
        against: against.to_string(),
        identical: steps.iter().all(|s| s.same),
        steps,
    }
}

fn fault_kind(message: &str) -> &str {
    message.split(':').next().unwrap_or(message)
}

fn describe_event(event: &Event) -> String {
    match event {
        Event::Started => "started".into(),
        Event::Input { digits, .. } => format!("input {digits:?}"),
        Event::NoInput => "no input".into(),
        Event::Message { text } => format!("message {text:?}"),
        Event::Mail(mail) => format!("mail from {} {:?}", mail.from, mail.subject),
        Event::TaskOutcome { queue, status, .. } => format!("task {status:?} in {queue}"),
        Event::QueueWait {
            queue,
            waited_secs,
            position,
        } => format!("waiting {waited_secs} s in {queue}, place {position}"),
        Event::Hangup => "hangup".into(),
    }
}

fn lines(outcome: &Outcome) -> Vec<String> {
    match outcome {
        Outcome::Actions(actions) => actions
            .iter()
            .map(|a| serde_json::to_string(a).unwrap_or_default())
            .collect(),
        Outcome::Fault(f) => vec![format!("fault: {f}")],
    }
}

/// A readable step-by-step diff: unchanged steps in one line, changed ones with `-` (recorded)
/// and `+` (replayed) lines for the actions that differ.
pub fn render(report: &ReplayReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "contact {} of flow {}, recorded on version {}, replayed against {}:",
        report.contact, report.flow, report.recorded_version, report.against
    );
    for step in &report.steps {
        let event = describe_event(&step.event);
        if step.same {
            let _ = writeln!(out, "  step {} ({event}): same", step.step);
            continue;
        }
        let _ = writeln!(out, "  step {} ({event}): CHANGED", step.step);
        let (before, after) = (lines(&step.recorded), lines(&step.replayed));
        for line in &before {
            if !after.contains(line) {
                let _ = writeln!(out, "    - {line}");
            }
        }
        for line in &after {
            if !before.contains(line) {
                let _ = writeln!(out, "    + {line}");
            }
        }
        for call in &step.unrecorded_calls {
            let _ = writeln!(
                out,
                "    ! asked {call}, which the recorded contact never did (answered: nothing)"
            );
        }
    }
    let verdict = if report.identical {
        "identical"
    } else {
        "behaviour changed"
    };
    let _ = writeln!(out, "{verdict}");
    out
}
