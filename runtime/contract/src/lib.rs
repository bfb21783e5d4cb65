//! The contract's values as the host keeps them: in sessions, traces, the HTTP API and the
//! CLI. They mirror `wit/flow.wit` one to one; the core's `engine::bindings` converts at the
//! Wasm boundary. JSON shapes here are part of the public HTTP API.
//!
//! Owns only the values and their serde and OpenAPI shapes; must never depend on the engine,
//! the store or a channel, so that channels' renderers and the fuzz targets can use it alone.

use serde::{Deserialize, Serialize};

/// The channel a contact arrived on.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// A phone call.
    Voice,
    /// Text messages.
    Sms,
    /// Web chat.
    Chat,
    /// E-mail.
    Email,
}

impl Channel {
    /// Whether the customer types rather than speaks.
    pub fn is_text(self) -> bool {
        !matches!(self, Channel::Voice)
    }
}

/// The contact as a flow sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Contact {
    /// Session id.
    pub id: String,
    /// Channel.
    pub channel: Channel,
    /// Customer address.
    pub from: String,
    /// Address reached.
    pub to: String,
    /// Attributes, keys unique.
    /// `[key, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub attributes: Vec<(String, String)>,
}

/// A task's status, as reported to the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum TaskStatus {
    /// An agent accepted it.
    Assigned,
    /// The agent finished it.
    Completed,
    /// Nobody took it in time.
    TimedOut,
    /// It was canceled.
    Canceled,
}

/// An event that starts a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    /// First event of every contact.
    Started,
    /// The answer to a gather.
    Input {
        /// Digits pressed.
        #[serde(default)]
        digits: String,
        /// Recognised speech.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        speech: Option<String>,
    },
    /// The gather got nothing.
    NoInput,
    /// A text message.
    Message {
        /// Its text.
        text: String,
    },
    /// An e-mail.
    Mail(Mail),
    /// A task changed status.
    TaskOutcome {
        /// The queue.
        queue: String,
        /// The status.
        status: TaskStatus,
        /// The agent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
    },
    /// Still waiting in a queue.
    QueueWait {
        /// The queue.
        queue: String,
        /// Seconds waited.
        waited_secs: u32,
        /// Place in line, from 1.
        position: u32,
    },
    /// The customer hung up or left.
    Hangup,
}

/// An e-mail a contact received (`mail` in the contract).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Mail {
    /// Subject line.
    pub subject: String,
    /// Sender's address.
    pub from: String,
    /// Sender's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_name: Option<String>,
    /// Plain-text body.
    pub text: String,
    /// Attached files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// A file attached to an e-mail, as flows see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Attachment {
    /// File name.
    pub name: String,
    /// MIME type.
    pub content_type: String,
    /// Size in bytes.
    pub size: u32,
}

/// Text to speak or show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Say {
    /// The text.
    pub text: String,
    /// Voice name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    /// BCP 47 language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// Part of a gather's prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Prompt {
    /// Text to speech.
    Say(Say),
    /// A recorded prompt.
    Play {
        /// Prompt id or URL.
        prompt: String,
    },
}

/// Ask for input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Gather {
    /// What to ask.
    pub prompt: Vec<Prompt>,
    /// Digit limit, 0 for none.
    pub max_digits: u32,
    /// Wait per digit.
    pub timeout_ms: u32,
    /// Key ending the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_on_key: Option<String>,
    /// Prompt replays before no-input.
    pub retries: u32,
    /// Throw away digits pressed ahead of the gather (type-ahead) instead of using them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flush: bool,
}

/// Queue the contact for an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Enqueue {
    /// Queue name.
    pub queue: String,
    /// Higher first.
    pub priority: i32,
    /// Task attributes.
    /// `[key, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub attributes: Vec<(String, String)>,
    /// Seconds before giving up, 0 for the queue default.
    pub timeout_secs: u32,
}

/// One action of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Action {
    /// Speak or show text.
    Say(Say),
    /// Play a recorded prompt.
    Play {
        /// Prompt id or URL.
        prompt: String,
    },
    /// Ask for input.
    Gather(Gather),
    /// Send a text message.
    Send {
        /// Its text.
        text: String,
    },
    /// Queue for an agent.
    Enqueue(Enqueue),
    /// Transfer elsewhere; ends the flow.
    Transfer {
        /// Number or SIP URI.
        target: String,
    },
    /// Keep the place in the queue and call back this number; ends the call.
    Callback {
        /// The number to call back.
        number: String,
    },
    /// Set an attribute.
    SetAttribute {
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
    /// Hang up; ends the flow.
    Hangup,
    /// End the flow.
    End,
}

impl Action {
    /// Why this action cannot be carried out, if it cannot: the host refuses a step that
    /// contains one, as it would a trap.
    pub fn defect(&self) -> Option<String> {
        match self {
            Action::Enqueue(e) if e.queue.trim().is_empty() => {
                Some("enqueue names no queue".into())
            }
            Action::Transfer { target } if target.trim().is_empty() => {
                Some("transfer names no target".into())
            }
            Action::Callback { number } if number.trim().is_empty() => {
                Some("callback names no number".into())
            }
            Action::SetAttribute { key, .. } if key.trim().is_empty() => {
                Some("set-attribute has an empty key".into())
            }
            Action::Gather(g) if g.finish_on_key.as_deref().is_some_and(|k| !is_dtmf_key(k)) => {
                Some(format!(
                    "gather's finish key {:?} is not a phone key (0-9, * or #)",
                    g.finish_on_key
                ))
            }
            _ => None,
        }
    }
}

fn is_dtmf_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!((chars.next(), chars.next()), (Some(c), None) if c.is_ascii_digit() || c == '*' || c == '#')
}

/// A customer as the built-in CRM stores them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Customer {
    /// CRM id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// E.164 phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// E-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Tier such as `vip`.
    #[serde(default = "standard_tier")]
    pub tier: String,
    /// Other fields.
    #[serde(default)]
    /// `[key, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub attributes: Vec<(String, String)>,
}

fn standard_tier() -> String {
    "standard".into()
}
