//! The Twilio-compatible channel: a CPaaS number's voice and messaging webhooks pointed at
//! Switchboard run its flows. Owns turning webhook parameters into contact events (a call is
//! one contact keyed by its CallSid; an SMS conversation is one contact per sender and number
//! within an idle window) and rendering step actions as TwiML. Signature checks live in
//! [`signature`]. Never runs a flow itself.

pub mod rest;
pub mod signature;
pub mod twiml;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::contract::{Channel, Event};
use crate::node::Node;
use crate::sessions::{Awaiting, ContactError, NewContact, Status, StepReport};
use crate::store::{Store as _, StoreError, StoreExt, Tree};

/// Why a webhook could not be served.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A required parameter is missing or empty.
    #[error(
        "the webhook is missing the {0} parameter (is this a Twilio voice or messaging webhook?)"
    )]
    Missing(&'static str),
    /// A continuation for a call this server does not know.
    #[error("no call {0:?} is known here: it ended, or the webhook was sent to the wrong server")]
    UnknownCall(String),
    /// The contact could not be run.
    #[error(transparent)]
    Contact(#[from] ContactError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Webhook parameters by name.
pub struct Params(HashMap<String, String>);

impl Params {
    /// From the decoded form body.
    pub fn new(pairs: &[(String, String)]) -> Params {
        Params(pairs.iter().cloned().collect())
    }

    fn get(&self, name: &'static str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn need(&self, name: &'static str) -> Result<&str, WebhookError> {
        self.get(name).ok_or(WebhookError::Missing(name))
    }
}

/// The contact behind a channel key, and what the channel tracks about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Link {
    contact: String,
    /// Prompts replayed so far for the current gather (voice).
    #[serde(default)]
    replays: u32,
    /// Last activity, ms since the epoch (SMS idle window).
    #[serde(default)]
    last_ms: u64,
}

fn call_key(call_sid: &str) -> String {
    format!("twilio-call/{call_sid}")
}

fn sms_key(to: &str, from: &str) -> String {
    format!("twilio-sms/{to}/{from}")
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis().max(0) as u64
}

/// URLs TwiML sends the caller back to, under `base` (the public URL).
pub fn urls(base: &str) -> twiml::Urls {
    let base = base.trim_end_matches('/');
    twiml::Urls {
        gather: format!("{base}/twilio/voice/gather"),
        no_input: format!("{base}/twilio/voice/gather?no_input=1"),
        prompts: format!("{base}/prompts"),
    }
}

fn render_voice(report: &StepReport, base: &str) -> String {
    let ended = matches!(report.status, Status::Ended { .. });
    twiml::voice(&report.actions, &urls(base), ended)
}

/// A new call (the number's voice webhook): starts the contact on the number's flow.
pub fn incoming_call(rt: &Node, params: &Params, base: &str) -> Result<String, WebhookError> {
    let call_sid = params.need("CallSid")?;
    let from = params.need("From")?;
    let to = params.need("To")?;
    if let Some(link) = rt
        .channel_store()
        .get_json::<Link>(Tree::ChannelKeys, &call_key(call_sid))?
    {
        // Twilio retried the first webhook: answer with where the call stands.
        let session = rt.contacts().get(&link.contact)?;
        return Ok(match session.awaiting {
            Some(Awaiting::Input(g)) => {
                twiml::voice(&[crate::contract::Action::Gather(g)], &urls(base), false)
            }
            _ => twiml::voice(
                &[],
                &urls(base),
                matches!(session.status, Status::Ended { .. }),
            ),
        });
    }
    let mut attributes = vec![("twilio_call_sid".to_string(), call_sid.to_string())];
    if let Some(direction) = params.get("Direction") {
        attributes.push(("twilio_direction".into(), direction.to_string()));
    }
    let report = rt.contacts().start(NewContact {
        channel: Some(Channel::Voice),
        from: from.to_string(),
        to: to.to_string(),
        flow: None,
        attributes,
        held: false,
    })?;
    let link = Link {
        contact: report.contact.clone(),
        replays: 0,
        last_ms: now_ms(),
    };
    rt.channel_store()
        .put_json(Tree::ChannelKeys, &call_key(call_sid), &link)?;
    rt.channel_store().flush()?;
    Ok(render_voice(&report, base))
}

/// A gather's answer (`Digits`, `SpeechResult`) or its timeout (`no_input`): the next step.
pub fn gathered(
    rt: &Node,
    params: &Params,
    no_input: bool,
    base: &str,
) -> Result<String, WebhookError> {
    let call_sid = params.need("CallSid")?;
    let key = call_key(call_sid);
    let mut link: Link = rt
        .channel_store()
        .get_json(Tree::ChannelKeys, &key)?
        .ok_or_else(|| WebhookError::UnknownCall(call_sid.to_string()))?;
    let session = rt.contacts().get(&link.contact)?;
    let digits = params.get("Digits").unwrap_or_default().to_string();
    let speech = params.get("SpeechResult").map(str::to_string);
    if no_input || (digits.is_empty() && speech.is_none()) {
        // Replay the prompt as many times as the gather asked before telling the flow.
        if let Some(Awaiting::Input(gather)) = &session.awaiting
            && link.replays < gather.retries
        {
            link.replays += 1;
            rt.channel_store()
                .put_json(Tree::ChannelKeys, &key, &link)?;
            rt.channel_store().flush()?;
            return Ok(twiml::voice(
                &[crate::contract::Action::Gather(gather.clone())],
                &urls(base),
                false,
            ));
        }
        link.replays = 0;
        rt.channel_store()
            .put_json(Tree::ChannelKeys, &key, &link)?;
        let report = rt.contacts().send(&link.contact, Event::NoInput)?;
        return Ok(render_voice(&report, base));
    }
    link.replays = 0;
    rt.channel_store()
        .put_json(Tree::ChannelKeys, &key, &link)?;
    let report = rt
        .contacts()
        .send(&link.contact, Event::Input { digits, speech })?;
    Ok(render_voice(&report, base))
}

/// A call status callback: a call that ended (completed, busy, no-answer, failed, canceled)
/// ends its contact; the flow hears `hangup`.
pub fn call_status(rt: &Node, params: &Params) -> Result<(), WebhookError> {
    let call_sid = params.need("CallSid")?;
    let status = params.need("CallStatus")?;
    if !matches!(
        status,
        "completed" | "busy" | "no-answer" | "failed" | "canceled"
    ) {
        return Ok(());
    }
    let key = call_key(call_sid);
    let Some(link) = rt
        .channel_store()
        .get_json::<Link>(Tree::ChannelKeys, &key)?
    else {
        return Ok(());
    };
    match rt.contacts().send(&link.contact, Event::Hangup) {
        Ok(_) | Err(ContactError::Ended(_)) => {}
        Err(e) => return Err(e.into()),
    }
    rt.channel_store()
        .delete(Tree::ChannelKeys, key.as_bytes())?;
    rt.channel_store().flush()?;
    Ok(())
}

/// An inbound SMS: continues the sender's conversation with the number (within the idle
/// window), or starts a new one; replies are `<Message>`s. While an agent holds the
/// conversation, the message goes to them (`to_agent(contact, agent, text)`), not to the
/// flow, and the answer is empty.
pub fn incoming_sms(
    rt: &Node,
    params: &Params,
    to_agent: &dyn Fn(&str, &str, &str) -> Result<(), WebhookError>,
) -> Result<String, WebhookError> {
    let from = params.need("From")?;
    let to = params.need("To")?;
    let body = params.get("Body").unwrap_or_default().to_string();
    params.need("MessageSid")?;
    let key = sms_key(to, from);
    let idle_ms = rt.config().twilio.sms_idle_minutes.unwrap_or(30) * 60_000;
    let now = now_ms();
    let live = rt
        .channel_store()
        .get_json::<Link>(Tree::ChannelKeys, &key)?
        .filter(|link| now.saturating_sub(link.last_ms) <= idle_ms)
        .filter(|link| {
            rt.contacts()
                .get(&link.contact)
                .is_ok_and(|s| !matches!(s.status, Status::Ended { .. }))
        });
    let mut actions = Vec::new();
    let contact = match live {
        Some(link) => link.contact,
        None => {
            let started = rt.contacts().start(NewContact {
                channel: Some(Channel::Sms),
                from: from.to_string(),
                to: to.to_string(),
                flow: None,
                attributes: Vec::new(),
                held: false,
            })?;
            actions.extend(started.actions.clone());
            started.contact
        }
    };
    let session = rt.contacts().get(&contact)?;
    match &session.status {
        Status::Ended { .. } => {}
        Status::WithAgent {
            agent: Some(agent), ..
        } => to_agent(&contact, agent, &body)?,
        _ => {
            let report = rt
                .contacts()
                .send(&contact, Event::Message { text: body })?;
            actions.extend(report.actions);
        }
    }
    let link = Link {
        contact,
        replays: 0,
        last_ms: now,
    };
    rt.channel_store()
        .put_json(Tree::ChannelKeys, &key, &link)?;
    rt.channel_store().flush()?;
    Ok(twiml::messages(&actions))
}
