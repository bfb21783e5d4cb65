//! Callbacks that dial. When an agent holds a callback task (a caller who chose to be called
//! back keeps their place in line; an agent accepts it), Switchboard rings the agent's phone,
//! then dials the customer's number (through `sip.trunk`, or the SIP URI the flow gave),
//! greets them and bridges the two until either hangs up.
//!
//! Each attempt is written on the task before anything is dialed, and its result after; a
//! busy line, no answer or a failure waits for the queue's `callback_retry_secs`, and after its
//! `callback_attempts` the task is canceled with why. A node that stops in the middle of an
//! attempt records it as interrupted when it starts again and never dials that attempt again.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::call::{Dialog, T1, in_invite_transaction};
use super::message::{self, Message};
use super::rtp::{Heard, Leg};
use super::sdp;
use super::{Endpoint, Input, Peer};
use crate::contract::Say;
use crate::node::Node;
use crate::router::{AttemptEnd, Task};

/// How often the dialer looks for callbacks that are due.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// What the customer hears when they answer, before the agent.
const GREETING: &str =
    "Hello. This is the call back you asked for. Connecting you to an agent now.";

/// Starts the dialer of `ep`: first it closes the attempts this node left under way, then it
/// looks for due callbacks for as long as the endpoint lives.
pub(super) fn start(ep: &Arc<Endpoint>) {
    let weak = Arc::downgrade(ep);
    tokio::spawn(async move {
        let Some(node) = weak.upgrade().and_then(|ep| ep.node()) else {
            return;
        };
        let me = match switchboard_core::cluster::node_id(&node.config().data_dir) {
            Ok(me) => me,
            Err(e) => {
                tracing::error!(error = %e, "callbacks will not be dialed: this node has no id");
                return;
            }
        };
        let closing = node.clone();
        let who = me.clone();
        match tokio::task::spawn_blocking(move || closing.desk().interrupted_callbacks(&who)).await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                tracing::warn!(
                    attempts = n,
                    "callback attempts under way when this node stopped are recorded as interrupted; none is dialed again"
                )
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot close the callback attempts this node left; it dials no callback");
                return;
            }
            Err(_) => return,
        }
        drop(node);
        let dialing: Arc<Mutex<HashSet<String>>> = Arc::default();
        loop {
            tokio::time::sleep(LOOK_EVERY).await;
            let Some(ep) = weak.upgrade() else { return };
            // A node shutting down starts no new call; attempts under way finish.
            if ep.draining.load(Ordering::SeqCst) {
                continue;
            }
            let Some(node) = ep.node() else { return };
            let due = {
                let node = node.clone();
                tokio::task::spawn_blocking(move || node.desk().callbacks_due())
                    .await
                    .unwrap_or_default()
            };
            for task in due {
                // A customer who called a Twilio number is called back through Twilio.
                if crate::channels::twilio::callback::by_twilio(&node, &task) {
                    continue;
                }
                if !dialing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(task.id.clone())
                {
                    continue;
                }
                let (ep, node, me, dialing) =
                    (ep.clone(), node.clone(), me.clone(), dialing.clone());
                tokio::spawn(async move {
                    let id = task.id.clone();
                    attempt(ep, node, &me, task).await;
                    dialing
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                });
            }
        }
    });
}

/// One attempt of `task`'s callback, if it is still due when claimed.
async fn attempt(ep: Arc<Endpoint>, node: Arc<Node>, me: &str, task: Task) {
    let claiming = node.clone();
    let (id, who) = (task.id.clone(), me.to_string());
    let claimed =
        tokio::task::spawn_blocking(move || claiming.desk().begin_callback_attempt(&id, &who))
            .await;
    let (task, n) = match claimed {
        Ok(Ok(Some(claimed))) => claimed,
        Ok(Ok(None)) | Err(_) => return,
        Ok(Err(e)) => {
            tracing::warn!(task = task.id, error = %e, "cannot start a callback attempt; trying again shortly");
            return;
        }
    };
    // A call up on this node: a draining node waits for it to end.
    ep.stats.active.fetch_add(1, Ordering::Relaxed);
    let _up = ActiveCall(ep.clone());
    let agent = task.agent.clone().unwrap_or_default();
    let number = task
        .callback
        .as_ref()
        .map(|c| c.number.clone())
        .unwrap_or_default();
    tracing::info!(
        task = task.id,
        agent,
        number,
        attempt = n,
        "callback: ringing the agent's phone"
    );
    let (tx, inbox) = mpsc::unbounded_channel();
    let mut dialer = Dialer {
        ep: ep.clone(),
        tx,
        inbox,
        legs: Vec::new(),
        resend: None,
        talking: false,
    };
    let end = match dialer.run(&agent, &number).await {
        Ok(()) => AttemptEnd::Answered,
        Err(Missed::Agent(why)) => AttemptEnd::AgentMissed(why),
        Err(Missed::Customer(why)) => AttemptEnd::Missed(why),
    };
    let reached = end == AttemptEnd::Answered;
    // Answered or not, the attempt's result is written before anything else happens.
    let recording = node.clone();
    let (id, result) = (task.id.clone(), end.clone());
    let recorded =
        tokio::task::spawn_blocking(move || recording.desk().end_callback_attempt(&id, n, result))
            .await;
    match (&end, recorded) {
        (AttemptEnd::Answered, Ok(Ok(_))) => {}
        (why, Ok(Ok(t))) => {
            tracing::info!(task = t.id, attempt = n, ?why, status = ?t.status, "callback attempt failed")
        }
        (_, Ok(Err(e))) => {
            tracing::error!(task = task.id, attempt = n, error = %e, "cannot record a callback attempt")
        }
        _ => {}
    }
    if reached {
        ep.stats.bridged.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            task = task.id,
            agent,
            number,
            attempt = n,
            "callback: the customer answered; bridged to the agent"
        );
        dialer.talk().await;
        let ending = node.clone();
        let id = task.id.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = ending.desk().conversation_ended(&id, "the callback ended") {
                tracing::debug!(task = id, error = %e, "callback task not wrapped up by the call");
            }
            ending.deliver_news();
        })
        .await;
    }
    dialer.hang_up_all().await;
}

/// Counts a callback's call among the node's active calls while it lives.
struct ActiveCall(Arc<Endpoint>);

impl Drop for ActiveCall {
    fn drop(&mut self) {
        self.0.stats.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A leg we placed and that answered.
struct Placed {
    dialog: Dialog,
    leg: Arc<Leg>,
    /// Our ACK of its 2xx, sent again if the 2xx is (our ACK was lost).
    ack: Vec<u8>,
    sdp_version: u64,
    _heard: mpsc::UnboundedReceiver<Heard>,
}

/// What woke the dialer.
enum Wake {
    /// A final or provisional response to an INVITE we sent.
    Answer(Message),
    /// An answered leg hung up.
    HungUp,
    /// The deadline passed.
    Timeout,
}

/// The two legs of one attempt, and the messages for them.
struct Dialer {
    ep: Arc<Endpoint>,
    tx: mpsc::UnboundedSender<Input>,
    inbox: mpsc::UnboundedReceiver<Input>,
    legs: Vec<Placed>,
    /// Our INVITE, resent on UDP until a response.
    resend: Option<(Vec<u8>, Peer, Instant, Duration)>,
    /// The two are bridged (not while the customer is greeted).
    talking: bool,
}

/// Why an attempt did not reach the customer: the agent's side or the customer's.
enum Missed {
    Agent(String),
    Customer(String),
}

impl Dialer {
    /// Rings the agent's phone, then the customer; `Ok` once both are up and the customer
    /// was greeted, else why not (the agent's phone, or the customer: busy, no answer, ...).
    async fn run(&mut self, agent: &str, number: &str) -> Result<(), Missed> {
        let Some((phone, peer)) = self.ep.phone_of(agent) else {
            return Err(Missed::Agent(format!(
                "agent {agent} has no phone: register one (sip:{agent}@{}) or set the agent's sip attribute",
                self.ep.advertised
            )));
        };
        let ring = Duration::from_secs(self.ep.config.agent_ring_secs);
        self.place(&phone, peer, ring)
            .await
            .map_err(|why| Missed::Agent(format!("the agent's phone did not answer: {why}")))?;
        // The agent hears music while the customer's phone rings.
        self.legs[0]
            .leg
            .set_idle(Some(self.ep.prompts.hold.clone()));
        let customer = self.ep.target_uri(number).map_err(Missed::Customer)?;
        self.place(&customer, None, ring)
            .await
            .map_err(Missed::Customer)?;
        let say = Say {
            text: GREETING.into(),
            voice: None,
            language: None,
        };
        let greeting = self.ep.prompts.say(&say).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot render the callback greeting; a beep instead");
            self.ep.prompts.beep.clone()
        });
        // The customer answered: the attempt reached them, whatever happens next.
        let until = Instant::now() + Duration::from_millis(greeting.millis() + 200);
        self.legs[1].leg.play(greeting, 1);
        while let Wake::Answer(_) = self.next(Some(until)).await {}
        Ok(())
    }

    /// Bridges the agent and the customer until either hangs up.
    async fn talk(&mut self) {
        if self.legs.len() < 2 {
            return;
        }
        self.talking = true;
        self.relay();
        while !matches!(self.next(None).await, Wake::HungUp) {}
    }

    /// Who hears whom: each the other, or music for the one left while the other holds.
    fn relay(&self) {
        if let [agent, customer] = &self.legs[..] {
            super::call::join(&agent.leg, &customer.leg, &self.ep.prompts.hold);
        }
    }

    /// Places a leg to `uri` and waits for it to answer (it is then pushed on `legs`), fail,
    /// or ring out.
    async fn place(&mut self, uri: &str, peer: Option<Peer>, ring: Duration) -> Result<(), String> {
        let (mut dialog, leg, invite, heard) = self.ep.new_leg(uri, peer).await?;
        let (peer, advertised) = (dialog.peer, self.ep.advertised);
        self.ep
            .route(&dialog.call_id, self.tx.clone(), super::LegKind::Outbound);
        let bytes = invite.to_bytes();
        self.ep.send(peer, bytes.clone());
        if matches!(peer, Peer::Udp(_)) {
            self.resend = Some((bytes, peer, Instant::now() + T1, T1));
        }
        let until = Instant::now() + ring;
        let failed = loop {
            let m = match self.next(Some(until)).await {
                Wake::Answer(m) if m.call_id() == dialog.call_id => m,
                Wake::Answer(_) => continue,
                Wake::HungUp => {
                    self.cancel(&invite, &mut dialog).await;
                    break "the agent hung up while the customer's phone rang".to_string();
                }
                Wake::Timeout => {
                    self.cancel(&invite, &mut dialog).await;
                    break format!("no answer within {} s", ring.as_secs());
                }
            };
            self.resend = None;
            let code = m.code();
            if code < 200 {
                continue;
            }
            if code >= 300 {
                let ack = in_invite_transaction(&invite, "ACK", m.header("To").unwrap_or_default());
                self.ep.send(peer, ack.to_bytes());
                let reason = match &m.start {
                    message::Start::Response { reason, .. } => reason.clone(),
                    _ => String::new(),
                };
                break match code {
                    486 | 600 => format!("busy ({code} {reason})"),
                    408 | 480 => format!("no answer ({code} {reason})"),
                    _ => format!("{code} {reason}"),
                };
            }
            dialog.confirm(&m);
            let ack = dialog.ack(&invite, advertised);
            let ack = ack.to_bytes();
            self.ep.send(peer, ack.clone());
            match sdp::negotiate(&m.body) {
                Ok(media) => {
                    leg.set_remote(media);
                    self.legs.push(Placed {
                        dialog,
                        leg,
                        ack,
                        sdp_version: 1,
                        _heard: heard,
                    });
                    return Ok(());
                }
                Err(e) => {
                    let bye = dialog.request("BYE", advertised);
                    self.ep.send(peer, bye.to_bytes());
                    break format!("unusable SDP answer: {e}");
                }
            }
        };
        self.resend = None;
        leg.close();
        self.ep.unroute(&dialog.call_id);
        Err(failed)
    }

    /// Cancels a ringing INVITE, and ACKs its final response (or hangs up a late 2xx).
    async fn cancel(&mut self, invite: &Message, dialog: &mut Dialog) {
        self.resend = None;
        let peer = dialog.peer;
        let to = invite.header("To").unwrap_or_default();
        self.ep
            .send(peer, in_invite_transaction(invite, "CANCEL", to).to_bytes());
        let until = Instant::now() + Duration::from_secs(2);
        while let Wake::Answer(m) = self.next(Some(until)).await {
            if m.call_id() != invite.call_id() || m.code() < 200 {
                continue;
            }
            if m.code() >= 300 {
                let to = m.header("To").unwrap_or_default();
                self.ep
                    .send(peer, in_invite_transaction(invite, "ACK", to).to_bytes());
                break;
            }
            // Answered as we canceled: ACK it in its dialog, then hang it up there.
            let advertised = self.ep.advertised;
            dialog.confirm(&m);
            let ack = dialog.ack(invite, advertised);
            self.ep.send(peer, ack.to_bytes());
            let bye = dialog.request("BYE", advertised).to_bytes();
            self.ep.send(peer, bye.clone());
            if matches!(peer, Peer::Udp(_)) {
                // Sent again until answered (or the wait below ends).
                self.resend = Some((bye, peer, Instant::now() + T1, T1));
                let until = Instant::now() + Duration::from_secs(4);
                while !matches!(self.next(Some(until)).await, Wake::Timeout | Wake::HungUp) {}
                self.resend = None;
            }
            break;
        }
    }

    /// Waits for what matters: a response to our INVITE, an answered leg hanging up, the
    /// deadline. In-dialog requests of the answered legs are answered on the way.
    async fn next(&mut self, deadline: Option<Instant>) -> Wake {
        loop {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Wake::Timeout;
            }
            if let Some((bytes, peer, at, interval)) = self.resend.as_mut()
                && *at <= now
            {
                self.ep.send(*peer, bytes.clone());
                *interval = (*interval * 2).min(Duration::from_secs(4));
                *at = now + *interval;
            }
            let wake_at = self
                .resend
                .as_ref()
                .map(|r| r.2)
                .into_iter()
                .chain(deadline)
                .min()
                .unwrap_or(now + Duration::from_secs(3600));
            tokio::select! {
                input = self.inbox.recv() => match input {
                    Some(Input::Sip(m, peer, _)) => {
                        if let Some(wake) = self.sip(m, peer) {
                            return wake;
                        }
                    }
                    Some(Input::Report(_)) => {}
                    None => return Wake::HungUp,
                },
                _ = tokio::time::sleep_until(wake_at.into()) => {}
            }
        }
    }

    fn sip(&mut self, m: Message, peer: Peer) -> Option<Wake> {
        if !m.is_request() {
            if m.method() == "BYE" && m.code() >= 200 {
                // The answer to our BYE: that leg is done.
                let Some(i) = self
                    .legs
                    .iter()
                    .position(|p| p.dialog.call_id == m.call_id())
                else {
                    // The BYE of a leg answered as we canceled it: no more to resend.
                    self.resend = None;
                    return Some(Wake::HungUp);
                };
                let gone = self.legs.remove(i);
                gone.leg.close();
                self.ep.unroute(&gone.dialog.call_id);
                return Some(Wake::HungUp);
            }
            if m.method() == "INVITE"
                && m.code() >= 200
                && let Some(up) = self.legs.iter().find(|p| p.dialog.call_id == m.call_id())
            {
                // A 2xx sent again: our ACK was lost.
                self.ep.send(up.dialog.peer, up.ack.clone());
                return None;
            }
            return (m.method() == "INVITE").then_some(Wake::Answer(m));
        }
        let Some(i) = self
            .legs
            .iter()
            .position(|p| p.dialog.call_id == m.call_id())
        else {
            if m.method() != "ACK" {
                let response = m.response(481, "Call/Transaction Does Not Exist", None);
                self.ep.respond(peer, &m, response);
            }
            return None;
        };
        match m.method() {
            "BYE" => {
                self.ep.respond(peer, &m, m.response(200, "OK", None));
                let gone = self.legs.remove(i);
                gone.leg.close();
                self.ep.unroute(&gone.dialog.call_id);
                return Some(Wake::HungUp);
            }
            "INVITE" | "UPDATE" => {
                let contact = format!("<sip:switchboard@{}>", self.ep.advertised);
                let placed = &mut self.legs[i];
                placed.sdp_version += 1;
                self.ep
                    .renegotiate(&placed.leg, &m, peer, placed.sdp_version, &contact);
                if self.talking {
                    self.relay();
                }
            }
            "ACK" => {}
            "INFO" | "OPTIONS" => self.ep.respond(peer, &m, m.response(200, "OK", None)),
            _ => self
                .ep
                .respond(peer, &m, m.response(501, "Not Implemented", None)),
        }
        None
    }

    /// Hangs up every answered leg, waiting briefly for the answers.
    async fn hang_up_all(&mut self) {
        let advertised = self.ep.advertised;
        for placed in &mut self.legs {
            placed.leg.relay_to(None);
            let bye = placed.dialog.request("BYE", advertised);
            self.ep.send(placed.dialog.peer, bye.to_bytes());
        }
        let until = Instant::now() + Duration::from_secs(2);
        while !self.legs.is_empty() {
            if let Wake::Timeout = self.next(Some(until)).await {
                break;
            }
        }
        for placed in self.legs.drain(..) {
            placed.leg.close();
            self.ep.unroute(&placed.dialog.call_id);
        }
    }
}
