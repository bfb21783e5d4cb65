//! The JSON messages of the web chat widget's socket (`/chat/v1/ws`) and of the agent desk's
//! (`/agent/v1/ws`). Each reads into a typed message, or a refusal with its code and what to
//! send instead, never a panic.

use serde::Deserialize;

/// Why a message was refused: a code (`invalid_json`, `unknown_message`) and what to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The error code.
    pub code: &'static str,
    /// What was wrong and what to send instead.
    pub message: String,
}

/// What a visitor sends once joined.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum VisitorMessage {
    /// Text for the flow, or for the agent holding the conversation.
    Message {
        /// Missing or null is an empty message, ignored (as before messages were typed).
        #[serde(default)]
        text: Option<String>,
    },
    /// The visitor is typing (shown to the agent).
    Typing,
    /// The visitor left.
    Close,
}

/// Reads a visitor's message.
pub fn visitor_message(text: &str) -> Result<VisitorMessage, Refusal> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| Refusal {
        code: "invalid_json",
        message: "messages are JSON: {\"type\": \"message\", \"text\": \"...\"}".into(),
    })?;
    serde_json::from_value(value).map_err(|e| Refusal {
        code: "unknown_message",
        message: format!("{e}: send {{\"type\": \"message\", \"text\": \"...\"}}, typing or close"),
    })
}

/// What an agent's desk sends over its socket.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum DeskMessage {
    /// Take the offered task.
    Accept {
        /// Missing is no reservation: refused as unknown, as before messages were typed.
        #[serde(default)]
        reservation: String,
    },
    /// Turn the offer down.
    Reject {
        /// The reservation.
        #[serde(default)]
        reservation: String,
    },
    /// The conversation is over: wrap-up begins.
    Wrap {
        /// The task.
        #[serde(default)]
        task: String,
    },
    /// The task is done, with wrap-up notes and a disposition.
    Complete {
        /// The task.
        #[serde(default)]
        task: String,
        /// Notes; anything but a string is no notes.
        #[serde(default)]
        wrapup: Option<serde_json::Value>,
        /// One of the queue's disposition codes.
        #[serde(default)]
        disposition: Option<String>,
    },
    /// Text for the customer of a conversation the agent holds.
    Message {
        /// The task.
        #[serde(default)]
        task: String,
        /// The text.
        #[serde(default)]
        text: Option<String>,
    },
    /// The agent is typing to the customer of a chat they hold (the widget shows it).
    Typing {
        /// The task.
        #[serde(default)]
        task: String,
    },
}

/// Reads a desk's message.
pub fn desk_message(text: &str) -> Result<DeskMessage, Refusal> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| Refusal {
        code: "invalid_json",
        message: format!("not JSON: {e}"),
    })?;
    serde_json::from_value(value).map_err(|e| Refusal {
        code: "unknown_message",
        message: format!("{e}: send accept or reject (with the reservation), wrap (with the task), complete (with the task, wrapup and disposition), message (with the task and text) or typing (with the task)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visitors_and_desks_are_read_or_refused_with_a_code() {
        assert_eq!(
            visitor_message(r#"{"type":"message","text":"hi"}"#),
            Ok(VisitorMessage::Message {
                text: Some("hi".into())
            })
        );
        assert_eq!(
            visitor_message(r#"{"type":"typing"}"#),
            Ok(VisitorMessage::Typing)
        );
        assert_eq!(visitor_message("{").unwrap_err().code, "invalid_json");
        assert_eq!(
            visitor_message(r#"{"type":"dance"}"#).unwrap_err().code,
            "unknown_message"
        );
        assert_eq!(
            desk_message(r#"{"type":"accept","reservation":"r1"}"#),
            Ok(DeskMessage::Accept {
                reservation: "r1".into()
            })
        );
        assert_eq!(
            desk_message(r#"{"type":"accept"}"#),
            Ok(DeskMessage::Accept {
                reservation: String::new()
            })
        );
        assert_eq!(desk_message("[]").unwrap_err().code, "unknown_message");
        assert_eq!(desk_message("nope").unwrap_err().code, "invalid_json");
    }
}
