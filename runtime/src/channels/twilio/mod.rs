//! The Twilio-compatible channel: a CPaaS number's voice and messaging webhooks pointed at
//! Switchboard run its flows. Owns turning webhook parameters into contact events (a call is
//! one contact keyed by its CallSid; an SMS conversation is one contact per sender and number
//! within an idle window) and rendering step actions as TwiML. Signature checks live in
//! [`signature`]. Never runs a flow itself.

pub mod callback;
pub mod rest;
pub mod signature;
pub use switchboard_wire::twiml;

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
    /// The last step whose queue-wait news the waiting caller heard (voice).
    #[serde(default)]
    heard_step: u32,
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
        wait: format!("{base}/twilio/voice/wait"),
        dequeued: format!("{base}/twilio/voice/dequeued"),
        dialed: format!("{base}/twilio/voice/dialed"),
        hold: format!("{base}/twilio/hold.wav"),
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
        heard_step: 0,
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
        heard_step: 0,
    };
    rt.channel_store()
        .put_json(Tree::ChannelKeys, &key, &link)?;
    rt.channel_store().flush()?;
    Ok(twiml::messages(&actions))
}

/// The call's link, or [`WebhookError::UnknownCall`].
fn link_of(rt: &Node, call_sid: &str) -> Result<Link, WebhookError> {
    rt.channel_store()
        .get_json(Tree::ChannelKeys, &call_key(call_sid))?
        .ok_or_else(|| WebhookError::UnknownCall(call_sid.to_string()))
}

/// The `<Enqueue>` wait URL, requested again each time what it answered has played: while the
/// task waits, the flow's newest queue-wait news (once) and hold music; once an agent took
/// the task, or the task is over, `<Leave/>` (Twilio then requests the action URL).
pub fn waiting(rt: &Node, params: &Params, base: &str) -> Result<String, WebhookError> {
    let call_sid = params.need("CallSid")?;
    let mut link = link_of(rt, call_sid)?;
    let urls = urls(base);
    let mut twiml = twiml::TwiML::new();
    let waiting = rt.contacts().task_of(&link.contact).is_some_and(|t| {
        matches!(
            t.status,
            crate::router::TaskStatus::Pending | crate::router::TaskStatus::Reserved
        )
    });
    if !waiting {
        twiml.leave();
        return Ok(twiml.finish());
    }
    let trace = rt.contacts().trace(&link.contact)?;
    let mut asked = false;
    if let Some(news) = trace.last()
        && matches!(news.event, Event::QueueWait { .. })
        && news.step > link.heard_step
    {
        for action in &news.actions {
            match action {
                crate::contract::Action::Say(s) => twiml.say(s),
                crate::contract::Action::Send { text } => twiml.say(&crate::contract::Say {
                    text: text.clone(),
                    voice: None,
                    language: None,
                }),
                crate::contract::Action::Play { prompt } => twiml.play(prompt, &urls),
                // An offer the caller answers while waiting (a callback): the gather's
                // answer goes to the flow as any other.
                crate::contract::Action::Gather(g) => {
                    twiml.gather(g, &[], &urls);
                    asked = true;
                }
                _ => {}
            }
        }
        link.heard_step = news.step;
        rt.channel_store()
            .put_json(Tree::ChannelKeys, &call_key(call_sid), &link)?;
        rt.channel_store().flush()?;
    }
    if !asked {
        twiml.play_url(&urls.hold);
    }
    Ok(twiml.finish())
}

/// Where a Twilio call is connected to reach an agent: the agent's `phone` (a number) or
/// `sip` (a URI) attribute.
pub fn endpoint_of(rt: &Node, agent: &str) -> Option<String> {
    let view = rt.desk().agent(agent).ok()?;
    let attributes = &view["attributes"];
    attributes["phone"]
        .as_str()
        .or_else(|| attributes["sip"].as_str())
        .filter(|e| !e.is_empty())
        .map(str::to_string)
}

/// The `<Enqueue>` action URL: the caller left the queue. To the agent who took the task
/// (`<Dial>` of their endpoint); else what the flow said last (its answer to the task's
/// outcome); a caller who hung up while waiting ends the contact (its task is withdrawn).
pub fn dequeued(rt: &Node, params: &Params, base: &str) -> Result<String, WebhookError> {
    let call_sid = params.need("CallSid")?;
    let link = link_of(rt, call_sid)?;
    if params.get("QueueResult") == Some("redirected") {
        // The REST API already sent the call to the agent.
        return Ok(twiml::TwiML::new().finish());
    }
    if params.get("QueueResult") == Some("hangup") {
        match rt.contacts().send(&link.contact, Event::Hangup) {
            Ok(_) | Err(ContactError::Ended(_)) => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(twiml::TwiML::new().finish());
    }
    if let Some(task) = rt.contacts().task_of(&link.contact)
        && task.status == crate::router::TaskStatus::Assigned
        && let Some(agent) = task.agent.clone()
    {
        match endpoint_of(rt, &agent) {
            Some(endpoint) => {
                let mut twiml = twiml::TwiML::new();
                twiml.dial_agent(&endpoint, &urls(base));
                return Ok(twiml.finish());
            }
            None => {
                tracing::error!(agent, task = %task.id, "the agent has no phone or sip attribute: the Twilio call cannot reach them");
                let _ = rt.desk().cancel(
                    &task.id,
                    "the agent has no phone number or SIP URI to connect the call to (set their phone or sip attribute)",
                );
            }
        }
    }
    last_words(rt, &link.contact, base)
}

/// The `<Dial>` action URL: the call to the agent ended. A conversation that happened ends
/// (wrap-up follows, the flow hears `completed`); an agent who did not answer is made
/// unavailable and the task canceled (the flow hears `canceled`). Then what the flow says.
pub fn dialed(rt: &Node, params: &Params, base: &str) -> Result<String, WebhookError> {
    let call_sid = params.need("CallSid")?;
    let link = link_of(rt, call_sid)?;
    let status = params.get("DialCallStatus").unwrap_or("completed");
    if let Some(task) = rt.contacts().task_of(&link.contact)
        && task.status == crate::router::TaskStatus::Assigned
    {
        if status == "completed" || status == "answered" {
            let _ = rt.desk().conversation_ended(&task.id, "the call ended");
        } else {
            if let Some(agent) = &task.agent {
                let _ = rt.admin().set_activity(agent, "unavailable");
            }
            let _ = rt.desk().cancel(
                &task.id,
                &format!("the agent's phone did not answer ({status})"),
            );
        }
    }
    if params.get("CallStatus") == Some("completed") {
        // The caller is gone too: nothing more to say.
        match rt.contacts().send(&link.contact, Event::Hangup) {
            Ok(_) | Err(ContactError::Ended(_)) => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(twiml::TwiML::new().finish());
    }
    last_words(rt, &link.contact, base)
}

/// The flow's answer to its task's outcome, once the news is delivered: the last recorded
/// step's actions.
fn last_words(rt: &Node, contact: &str, base: &str) -> Result<String, WebhookError> {
    rt.deliver_news();
    let session = rt.contacts().get(contact)?;
    let trace = rt.contacts().trace(contact)?;
    let actions = trace.last().map(|s| s.actions.clone()).unwrap_or_default();
    Ok(twiml::voice(
        &actions,
        &urls(base),
        matches!(session.status, Status::Ended { .. }),
    ))
}
