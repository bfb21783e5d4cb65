//! Web chat: visitors talk to a flow over a WebSocket (the widget), and to an agent once the
//! flow hands them over. Owns the live connections: which visitor sockets belong to which
//! contact, and the stream of customer messages for agents. The wire protocol is documented in
//! README, section Web chat. Never runs a flow itself.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

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
}

impl Default for ChatHub {
    fn default() -> Self {
        ChatHub {
            visitors: Mutex::new(HashMap::new()),
            agents: broadcast::channel(1024).0,
        }
    }
}

impl ChatHub {
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

    /// Sends a message to every socket of `contact`; closed ones are dropped.
    pub fn to_visitor(&self, contact: &str, message: Value) {
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
        for text in texts(&report.actions) {
            self.to_visitor(
                &report.contact,
                json!({"type": "message", "from": "bot", "text": text}),
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

    /// A customer message for the agent holding their task.
    pub fn to_agent(&self, agent: &str, message: Value) {
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
