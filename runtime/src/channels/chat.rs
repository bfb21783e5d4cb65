//! Web chat: visitors talk to a flow over a WebSocket (the widget), and to an agent once the
//! flow hands them over. Owns the live connections: which visitor sockets belong to which
//! contact, and the stream of customer messages for agents. In a cluster a visitor and the
//! agent may be connected to different nodes: what is sent to a visitor or an agent goes to
//! this node's sockets at once and to the other nodes' over the bus. The wire protocol is
//! documented in README, section Web chat. Never runs a flow itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::bus::Bus;
use crate::contract::{Action, Prompt};
use crate::sessions::{Status, StepReport};

/// A message for an agent's desktop: a customer wrote in a task the agent holds.
#[derive(Debug, Clone)]
pub struct ForAgent {
    /// The agent.
    pub agent: String,
    /// The message, as sent on the agent's socket.
    pub message: Value,
}

/// Live chat connections.
pub struct ChatHub {
    visitors: Mutex<HashMap<String, Vec<mpsc::UnboundedSender<Value>>>>,
    agents: broadcast::Sender<ForAgent>,
    bus: Arc<Bus>,
}

/// The bus topic of a message for a visitor's sockets: `{"contact", "message"}`.
const TO_VISITOR: &str = "chat.visitor";
/// The bus topic of a message for an agent's desks: `{"agent", "message"}`.
const TO_AGENT: &str = "chat.agent";

impl ChatHub {
    /// The connections of this node; in a cluster it also hands on what other nodes send to
    /// the sockets held here (from a thread of its own, until the hub is dropped).
    pub fn new(bus: Arc<Bus>) -> Arc<ChatHub> {
        let hub = Arc::new(ChatHub {
            visitors: Mutex::new(HashMap::new()),
            agents: broadcast::channel(1024).0,
            bus,
        });
        let weak = Arc::downgrade(&hub);
        hub.bus.follow("chat-relay", move |message| {
            let Some(hub) = weak.upgrade() else {
                return false;
            };
            let body = message.body;
            match message.topic.as_str() {
                TO_VISITOR => {
                    if let Some(contact) = body["contact"].as_str() {
                        hub.to_visitor_here(contact, body["message"].clone());
                    }
                }
                TO_AGENT => {
                    if let Some(agent) = body["agent"].as_str() {
                        hub.to_agent_here(agent, body["message"].clone());
                    }
                }
                _ => {}
            }
            true
        });
        hub
    }

    /// Registers a visitor socket for `contact`; messages for the contact arrive on the
    /// returned receiver (every open tab of a resumed chat gets them).
    pub fn attach(&self, contact: &str) -> mpsc::UnboundedReceiver<Value> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.visitors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(contact.to_string())
            .or_default()
            .push(tx);
        rx
    }

    /// Sends a message to every socket of `contact`, on this node and the others.
    pub fn to_visitor(&self, contact: &str, message: Value) {
        self.bus.tell_others(
            TO_VISITOR,
            || json!({"contact": contact, "message": message.clone()}),
        );
        self.to_visitor_here(contact, message);
    }

    /// Sends a message to every socket of `contact` on this node; closed ones are dropped.
    fn to_visitor_here(&self, contact: &str, message: Value) {
        let mut visitors = self.visitors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sockets) = visitors.get_mut(contact) {
            sockets.retain(|tx| tx.send(message.clone()).is_ok());
            if sockets.is_empty() {
                visitors.remove(contact);
            }
        }
    }

    /// Sends what a step said (and any change of who the visitor talks to) to the visitor.
    pub fn deliver(&self, report: &StepReport) {
        for (i, text) in texts(&report.actions).into_iter().enumerate() {
            self.to_visitor(
                &report.contact,
                json!({"type": "message", "from": "bot", "text": text, "id": step_line(report.step, i)}),
            );
        }
        match &report.status {
            Status::WithAgent { agent, .. } => {
                self.to_visitor(
                    &report.contact,
                    json!({"type": "agent-joined", "agent": agent}),
                );
            }
            Status::Queued { queue, .. } => {
                self.to_visitor(&report.contact, json!({"type": "queued", "queue": queue}));
            }
            Status::Ended { reason } => {
                self.to_visitor(&report.contact, json!({"type": "closed", "reason": reason}));
            }
            Status::Active => {}
        }
    }

    /// A customer message for the agent holding their task, on whichever node their desk
    /// is connected to.
    pub fn to_agent(&self, agent: &str, message: Value) {
        self.bus.tell_others(
            TO_AGENT,
            || json!({"agent": agent, "message": message.clone()}),
        );
        self.to_agent_here(agent, message);
    }

    fn to_agent_here(&self, agent: &str, message: Value) {
        let _ = self.agents.send(ForAgent {
            agent: agent.to_string(),
            message,
        });
    }

    /// Customer messages for agents, as they come.
    pub fn agent_messages(&self) -> broadcast::Receiver<ForAgent> {
        self.agents.subscribe()
    }
}

/// The id of a chat line a flow's step said (its `i`th text): the same in the history and
/// live, so a line that reaches a resumed socket after its history is shown once.
pub fn step_line(step: u32, i: usize) -> String {
    format!("s{step}.{i}")
}

/// The id of a line of the transcript (see [`step_line`]).
pub fn said_line(said: &crate::sessions::Said) -> String {
    format!("t{}", said.at)
}

/// What a visitor sees of their conversation, in order, for a widget that resumes it (after
/// a reload, or on another node): what they wrote to the flow and the flow's answers (from
/// the trace), and what they and the agents wrote to each other (the transcript). Each line
/// is `{"id", "from": "you" | "bot" | "agent", "text", "at"}`, with `agent` on an agent's.
pub fn history(
    trace: &[crate::sessions::TraceEntry],
    said: &[crate::sessions::Said],
) -> Vec<Value> {
    use crate::contract::Event;
    let when = |at: &str| chrono::DateTime::parse_from_rfc3339(at).ok();
    let mut lines: Vec<(Option<chrono::DateTime<chrono::FixedOffset>>, Value)> = Vec::new();
    for step in trace {
        let at = when(&step.at);
        if let Event::Message { text } = &step.event {
            lines.push((
                at,
                json!({"id": format!("s{}.in", step.step), "from": "you", "text": text, "at": step.at}),
            ));
        }
        for (i, text) in texts(&step.actions).into_iter().enumerate() {
            lines.push((
                at,
                json!({"id": step_line(step.step, i), "from": "bot", "text": text, "at": step.at}),
            ));
        }
    }
    for line in said {
        let id = said_line(line);
        let value = if line.from == "agent" {
            json!({"id": id, "from": "agent", "agent": line.agent, "text": line.text, "at": line.at})
        } else {
            json!({"id": id, "from": "you", "text": line.text, "at": line.at})
        };
        lines.push((when(&line.at), value));
    }
    // Stable: a step's lines keep their order, and a step comes before what was said at the
    // same instant.
    lines.sort_by_key(|(at, _)| *at);
    lines.into_iter().map(|(_, v)| v).collect()
}

/// The texts a step shows a chat visitor, in order.
pub fn texts(actions: &[Action]) -> Vec<String> {
    let mut out = Vec::new();
    for action in actions {
        match action {
            Action::Say(s) => out.push(s.text.clone()),
            Action::Send { text } => out.push(text.clone()),
            Action::Gather(g) => {
                for p in &g.prompt {
                    if let Prompt::Say(s) = p {
                        out.push(s.text.clone());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Event, Say};
    use crate::sessions::{Said, TraceEntry};

    fn step(at: &str, event: Event, says: &[&str]) -> TraceEntry {
        TraceEntry {
            step: 1,
            at: at.into(),
            version: 1,
            attributes: Vec::new(),
            event,
            actions: says
                .iter()
                .map(|t| {
                    Action::Say(Say {
                        text: (*t).into(),
                        voice: None,
                        language: None,
                    })
                })
                .collect(),
            fault: None,
            host_calls: Vec::new(),
            state: Vec::new(),
            elapsed_us: 0,
        }
    }

    fn said(at: &str, from: &str, text: &str) -> Said {
        Said {
            at: at.into(),
            from: from.into(),
            agent: (from == "agent").then(|| "sara".to_string()),
            task: None,
            text: text.into(),
        }
    }

    #[test]
    fn a_resumed_chat_shows_the_flow_and_the_agent_in_the_order_they_were_said() {
        let trace = [
            step(
                "2026-12-05T10:00:00.5+00:00",
                Event::Started,
                &["Hi, this is Acme."],
            ),
            step(
                "2026-12-05T10:00:01.25Z",
                Event::Message {
                    text: "agent please".into(),
                },
                &["Connecting you.", "Please wait."],
            ),
        ];
        // Written with another precision: ordered by time, not by text.
        let transcript = [
            said("2026-12-05T10:00:03Z", "customer", "where is my order?"),
            said("2026-12-05T10:00:02.999999+00:00", "agent", "Hello!"),
        ];
        let lines = history(&trace, &transcript);
        let shown: Vec<(String, String)> = lines
            .iter()
            .map(|l| {
                (
                    l["from"].as_str().unwrap().to_string(),
                    l["text"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let want = [
            ("bot", "Hi, this is Acme."),
            ("you", "agent please"),
            ("bot", "Connecting you."),
            ("bot", "Please wait."),
            ("agent", "Hello!"),
            ("you", "where is my order?"),
        ];
        assert_eq!(
            shown,
            want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
        );
        assert_eq!(lines[4]["agent"], "sara");
    }
}
