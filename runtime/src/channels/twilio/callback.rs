//! Callbacks through Twilio's Calls API, for customers who called a Twilio number: the agent's
//! phone (their `phone` or `sip` attribute) is called first; when they answer, its TwiML
//! dials the customer from the number they called, greets them when they answer (the
//! `<Number url>`) and connects the two. Twilio reports back by webhook: the greeting request
//! is the moment the customer answered, the `<Dial>` action how it ended (`busy`,
//! `no-answer`...), the agent call's status callback a phone that did not answer.
//!
//! Attempts are kept on the task as for SIP ([`crate::router::Callback`]), written before the
//! call is created; their node is `twilio` (the call lives at Twilio, not on this node), so a
//! restart does not end them: Twilio's webhooks do.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::twiml::TwiML;
use super::{Params, WebhookError, endpoint_of};
use crate::contract::Say;
use crate::node::Node;
use crate::router::{AttemptEnd, Task};
use crate::runtime::Runtime;

/// The `node` of Twilio attempts.
const TWILIO: &str = "twilio";

/// What the customer hears when they answer, before the agent.
const GREETING: &str =
    "Hello. This is the call back you asked for. Connecting you to an agent now.";

/// How long each phone rings.
const RING_SECS: u64 = 30;

/// Whether `task`'s callback goes out through Twilio's Calls API: the customer called a
/// Twilio number (the contact that asked came by the Twilio webhooks) and this node has the
/// account configured. Otherwise SIP dials it.
pub fn by_twilio(node: &Node, task: &Task) -> bool {
    let twilio = &node.config().twilio;
    if twilio.account_sid.is_none() || twilio.auth_token.is_none() {
        return false;
    }
    let Some(contact) = task.callback.as_ref().and_then(|c| c.contact.as_deref()) else {
        return false;
    };
    node.contacts().get(contact).is_ok_and(|s| {
        s.attributes
            .iter()
            .any(|(name, _)| name == "twilio_call_sid")
    })
}

/// Dials due Twilio callbacks from a thread of its own, for as long as `rt` lives.
pub fn start(rt: &Arc<Runtime>) {
    let Some(base) = rt.config().twilio.public_url.clone() else {
        tracing::warn!(
            "twilio.public_url is unset: callbacks through Twilio cannot be dialed (Twilio needs a URL to ask for the call's TwiML)"
        );
        return;
    };
    let weak: Weak<Runtime> = Arc::downgrade(rt);
    let _ = std::thread::Builder::new()
        .name("twilio-callbacks".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(500));
                let Some(rt) = weak.upgrade() else { return };
                for task in rt.desk().callbacks_due() {
                    if by_twilio(&rt, &task) {
                        attempt(&rt, &task, base.trim_end_matches('/'));
                    }
                }
            }
        });
}

/// Query of the callback webhooks: which task and attempt.
fn webhook_query(task: &str, n: u32) -> String {
    serde_urlencoded::to_string([("task", task), ("attempt", &n.to_string())]).unwrap_or_default()
}

/// One attempt: written on the task, then the agent's call created.
fn attempt(rt: &Runtime, task: &Task, base: &str) {
    let Some(rest) = rt.twilio.clone() else {
        return;
    };
    let (task, n) = match rt.desk().begin_callback_attempt(&task.id, TWILIO) {
        Ok(Some(claimed)) => claimed,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(task = task.id, error = %e, "cannot start a callback attempt; trying again shortly");
            return;
        }
    };
    let agent = task.agent.clone().unwrap_or_default();
    let end = |how: AttemptEnd| {
        if let Err(e) = rt.desk().end_callback_attempt(&task.id, n, how) {
            tracing::error!(task = task.id, error = %e, "cannot record a callback attempt");
        }
    };
    let Some(endpoint) = endpoint_of(rt, &agent) else {
        return end(AttemptEnd::AgentMissed(format!(
            "agent {agent} has no phone or sip attribute for Twilio to call"
        )));
    };
    let Some(from) = caller_id(rt, &task) else {
        return end(AttemptEnd::Missed(
            "the number the customer called is unknown: nothing to call from".into(),
        ));
    };
    let q = webhook_query(&task.id, n);
    let url = format!("{base}/twilio/callback/answered?{q}");
    let status = format!("{base}/twilio/callback/status?{q}");
    match rest.create_call(&endpoint, &from, &url, &status, RING_SECS) {
        Ok(sid) => {
            tracing::info!(
                task = task.id,
                agent,
                attempt = n,
                call_sid = sid,
                "callback: Twilio is calling the agent's phone"
            )
        }
        Err(e) => end(AttemptEnd::Missed(format!(
            "Twilio did not place the agent's call: {e}"
        ))),
    }
}

/// The number the customer called (what the callback comes from).
fn caller_id(rt: &Node, task: &Task) -> Option<String> {
    let contact = task.callback.as_ref()?.contact.as_deref()?;
    rt.contacts().get(contact).ok().map(|s| s.to)
}

/// The task and attempt a callback webhook is about.
fn which(rt: &Node, query: Option<&str>) -> Result<(Task, u32), WebhookError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|_| WebhookError::Missing("task"))?;
    let get = |name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let id = get("task").ok_or(WebhookError::Missing("task"))?;
    let n = get("attempt")
        .and_then(|n| n.parse().ok())
        .ok_or(WebhookError::Missing("attempt"))?;
    let task = rt
        .desk()
        .task(&id)
        .map_err(|_| WebhookError::UnknownCall(format!("callback task {id}")))?;
    Ok((task, n))
}

/// The agent answered: dial the customer from the number they called.
pub fn answered(
    rt: &Node,
    _: &Params,
    base: &str,
    query: Option<&str>,
) -> Result<String, WebhookError> {
    let (task, n) = which(rt, query)?;
    let mut twiml = TwiML::new();
    let (Some(callback), Some(from)) = (task.callback.as_ref(), caller_id(rt, &task)) else {
        twiml.hangup();
        return Ok(twiml.finish());
    };
    let q = webhook_query(&task.id, n);
    twiml.say(&say("Calling the customer back."));
    twiml.dial_customer(
        &callback.number,
        &from,
        &format!("{base}/twilio/callback/dialed?{q}"),
        &format!("{base}/twilio/callback/greet?{q}"),
        RING_SECS,
    );
    Ok(twiml.finish())
}

fn say(text: &str) -> Say {
    Say {
        text: text.into(),
        voice: None,
        language: None,
    }
}

/// The customer answered (Twilio asks for the `<Number url>`'s TwiML): the attempt reached
/// them; they are greeted, then connected.
pub fn greet(rt: &Node, _: &Params, _: &str, query: Option<&str>) -> Result<String, WebhookError> {
    let (task, n) = which(rt, query)?;
    if let Err(e) = rt
        .desk()
        .end_callback_attempt(&task.id, n, AttemptEnd::Answered)
    {
        tracing::error!(task = task.id, error = %e, "cannot record a callback attempt");
    }
    let mut twiml = TwiML::new();
    twiml.say(&say(GREETING));
    Ok(twiml.finish())
}

/// The `<Dial>` of the customer ended: a conversation that happened ends the task's
/// conversation; a busy line, no answer or a failure is the attempt's result.
pub fn dialed(
    rt: &Node,
    params: &Params,
    _: &str,
    query: Option<&str>,
) -> Result<String, WebhookError> {
    let (task, n) = which(rt, query)?;
    let status = params.get("DialCallStatus").unwrap_or("failed");
    let mut twiml = TwiML::new();
    match status {
        "completed" | "answered" => {
            let _ = rt
                .desk()
                .end_callback_attempt(&task.id, n, AttemptEnd::Answered);
            if let Err(e) = rt.desk().conversation_ended(&task.id, "the callback ended") {
                tracing::debug!(task = task.id, error = %e, "callback task not wrapped up by the call");
            }
            rt.deliver_news();
        }
        other => {
            let why = match other {
                "busy" => "busy".to_string(),
                "no-answer" => format!("no answer within {RING_SECS} s"),
                other => format!("the call to the customer failed ({other})"),
            };
            if let Err(e) =
                rt.desk()
                    .end_callback_attempt(&task.id, n, AttemptEnd::Missed(why.clone()))
            {
                tracing::error!(task = task.id, error = %e, "cannot record a callback attempt");
            }
            twiml.say(&say(&format!(
                "The customer could not be reached: {why}. We will try again later."
            )));
        }
    }
    twiml.hangup();
    Ok(twiml.finish())
}

/// How the agent's call ended (its status callback): a phone that was busy, did not answer
/// or failed ends the attempt; after the `<Dial>` action this changes nothing.
pub fn status(rt: &Node, params: &Params, query: Option<&str>) -> Result<(), WebhookError> {
    let (task, n) = which(rt, query)?;
    let end = match params.get("CallStatus").unwrap_or_default() {
        "completed" => {
            AttemptEnd::Missed("the agent's call ended before the customer answered".to_string())
        }
        // The customer was never dialed: another agent takes it, the customer loses nothing.
        "busy" | "no-answer" | "failed" | "canceled" => AttemptEnd::AgentMissed(format!(
            "the agent's phone did not answer ({})",
            params.get("CallStatus").unwrap_or_default()
        )),
        _ => return Ok(()),
    };
    // Only an attempt still open is ended here (the first report of an end stands).
    rt.desk()
        .end_callback_attempt(&task.id, n, end)
        .map(|_| ())
        .or_else(|e| {
            tracing::debug!(task = task.id, error = %e, "callback attempt not ended by the status");
            Ok(())
        })
}
