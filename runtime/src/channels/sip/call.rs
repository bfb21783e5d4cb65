//! One phone call, run by its own task from INVITE to the last BYE: answers with SDP, runs the
//! flow's steps through [`crate::sessions`], plays what they say, collects digits for their
//! gathers (barge-in, per-digit timeouts, finish keys, prompt replays), waits in a queue with
//! hold music, calls the agent's phone and bridges the two legs, transfers, and tells the flow
//! when the caller hangs up. Every SIP message for its legs arrives on its inbox.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::message::{self, Message};
use super::rtp::{Audio, Heard, Leg};
use super::sdp::{self, Codec, Direction, SdpError};
use super::{Endpoint, Input, LegKind, Peer};
use crate::contract::{Action, Channel, Event, Gather, Prompt};
use crate::node::Node;
use crate::sessions::{ContactError, NewContact, Status, StepReport};

/// RFC 3261 timer T1 and T2.
pub(super) const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
/// Payload type we offer for telephone-events.
pub(super) const DTMF_PT: u8 = 101;
/// How often a call bridged to an agent looks for a transfer the agent asked for elsewhere.
const TRANSFER_CHECK: Duration = Duration::from_millis(300);

/// Why a call ends early.
#[derive(Debug)]
enum Gone {
    /// The caller hung up (BYE or CANCEL).
    Caller,
    /// Something failed; the call is ended politely.
    Failed(String),
    /// An agent transferred the call to a number; that leg has ended and the caller was
    /// hung up.
    Transferred,
}

/// What a call does after carrying out a step.
enum Next {
    /// Send this event to the flow.
    Event(Event),
    /// A step taken elsewhere replaced the current one.
    Report(StepReport),
    /// Wait in the queue.
    Hold,
    /// Call this agent and bridge.
    Bridge(String),
    /// Transfer to this target.
    Transfer(String),
    /// Hang up.
    Hangup,
}

/// How a bridge ended.
enum BridgeEnd {
    /// The outbound side hung up.
    HungUp,
    /// The contact ended elsewhere.
    Ended(Box<StepReport>),
    /// The agent transferred the task to a queue or another agent: their leg is gone and
    /// the caller waits again.
    Moved,
    /// The agent asked to transfer the call to this number or SIP URI (from the API, or a
    /// REFER when `refer` says so): their leg is still up.
    ToNumber { target: String, refer: bool },
    /// The agent started a warm transfer to this agent: their leg is still up.
    Consult(String),
}

/// What woke a waiting call.
enum Wake {
    Digit(char),
    Played(u64),
    Report(StepReport),
    Timeout,
    Outbound(Message, Peer),
    ByeAnswered,
    Expired(Timer),
}

/// What a played prompt ended with.
enum Played {
    Done,
    Digit(char),
    Preempted(Box<StepReport>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// Our 2xx to the INVITE (or re-INVITE), until ACK.
    Answer,
    /// Our INVITE to the outbound leg, until a response.
    OutboundInvite,
    /// Our BYE to the caller, until a response.
    Bye,
    /// Our BYE on the outbound leg, until a response.
    OutboundBye,
    /// Our 2xx to a re-INVITE on the outbound leg, until ACK.
    OutboundAnswer,
}

/// A message retransmitted on UDP until answered.
struct Retransmit {
    timer: Timer,
    bytes: Vec<u8>,
    peer: Peer,
    next: Instant,
    interval: Duration,
    until: Instant,
    cap: Duration,
}

/// One dialog we are part of: what requests inside it carry.
pub(super) struct Dialog {
    pub(super) call_id: String,
    pub(super) peer: Peer,
    /// Our From (with our tag).
    pub(super) local: String,
    /// Their To (with their tag).
    pub(super) remote: String,
    /// Request-URI for requests in the dialog.
    pub(super) target: String,
    pub(super) cseq: u32,
}

impl Dialog {
    /// Takes the 2xx that answered our INVITE: the far end's tag, and its Contact as the
    /// target of what follows.
    pub(super) fn confirm(&mut self, ok: &Message) {
        self.remote = ok.header("To").unwrap_or_default().to_string();
        if let Some(contact) = ok.header("Contact") {
            self.target = message::uri_of(contact).to_string();
        }
    }

    /// The ACK of the 2xx to `invite`: a transaction of its own, with the INVITE's CSeq number.
    pub(super) fn ack(&mut self, invite: &Message, advertised: std::net::SocketAddr) -> Message {
        let cseq = invite.cseq().map_or(1, |(n, _)| n);
        let mut ack = self.request("ACK", advertised);
        for (name, value) in &mut ack.headers {
            if name == "CSeq" {
                *value = format!("{cseq} ACK");
            }
        }
        ack
    }

    pub(super) fn request(&mut self, method: &str, advertised: std::net::SocketAddr) -> Message {
        if method != "ACK" && method != "CANCEL" {
            self.cseq += 1;
        }
        Message::request(method, &self.target)
            .with(
                "Via",
                format!(
                    "SIP/2.0/{} {advertised};branch=z9hG4bK{};rport",
                    self.peer.transport(),
                    message::token()
                ),
            )
            .with("Max-Forwards", "70")
            .with("From", self.local.clone())
            .with("To", self.remote.clone())
            .with("Call-ID", self.call_id.clone())
            .with("CSeq", format!("{} {method}", self.cseq))
            .with("User-Agent", "Switchboard")
    }
}

/// The leg we place: to an agent's phone or a transfer target.
struct Outbound {
    dialog: Dialog,
    leg: Arc<Leg>,
    invite: Message,
    up: bool,
    sdp_version: u64,
    _heard: mpsc::UnboundedReceiver<Heard>,
}

/// A new call (an INVITE outside any dialog): refused with a SIP error, or given a task.
pub(super) fn incoming(ep: &Arc<Endpoint>, invite: Message, peer: Peer) {
    ep.send(peer, invite.response(100, "Trying", None).to_bytes());
    let reject = |code: u16, reason: &str, why: String| {
        ep.refuse_call(peer, &invite, code, reason, &why, &message::token());
    };
    let offer = if invite.body.is_empty() {
        Err(SdpError::Malformed(
            "the INVITE carries no SDP offer; send the offer in the INVITE".into(),
        ))
    } else {
        sdp::negotiate(&invite.body)
    };
    let media = match offer {
        Ok(media) => media,
        // No common codec, or no usable offer at all.
        Err(e) => return reject(488, "Not Acceptable Here", e.to_string()),
    };
    let (heard_tx, heard) = mpsc::unbounded_channel();
    let leg = match ep.media.open(heard_tx) {
        Ok(leg) => leg,
        Err(e) => return reject(503, "Service Unavailable", e.to_string()),
    };
    let Some(rt) = ep.node() else { return };
    leg.set_remote(media);
    let (tx, inbox) = mpsc::unbounded_channel();
    ep.route(invite.call_id(), tx.clone(), LegKind::Caller);
    ep.stats.calls.fetch_add(1, Ordering::Relaxed);
    ep.stats.active.fetch_add(1, Ordering::Relaxed);
    let tag = message::token();
    let dialog = Dialog {
        call_id: invite.call_id().to_string(),
        peer,
        local: format!("{};tag={tag}", invite.header("To").unwrap_or_default()),
        remote: invite.header("From").unwrap_or_default().to_string(),
        target: invite
            .header("Contact")
            .map(message::uri_of)
            .unwrap_or_else(|| message::uri_of(invite.header("From").unwrap_or_default()))
            .to_string(),
        cseq: 0,
    };
    let mut call = Call {
        ep: ep.clone(),
        rt,
        invite,
        tag,
        dialog,
        leg,
        heard,
        inbox,
        tx,
        contact: None,
        answered: false,
        last_response: None,
        timers: Vec::new(),
        token: 0,
        ahead: std::collections::VecDeque::new(),
        sdp_version: 1,
        outbound: None,
        bridging: false,
        holding: None,
        desk_hold: false,
        outlives_flow: false,
        hung_up: std::collections::HashSet::new(),
        kept_report: None,
    };
    tokio::spawn(async move {
        let outcome = call.serve().await;
        call.finish(outcome).await;
    });
}

struct Call {
    ep: Arc<Endpoint>,
    rt: Arc<Node>,
    invite: Message,
    tag: String,
    dialog: Dialog,
    leg: Arc<Leg>,
    heard: mpsc::UnboundedReceiver<Heard>,
    inbox: mpsc::UnboundedReceiver<Input>,
    tx: mpsc::UnboundedSender<Input>,
    contact: Option<String>,
    answered: bool,
    last_response: Option<Vec<u8>>,
    timers: Vec<Retransmit>,
    token: u64,
    sdp_version: u64,
    outbound: Option<Outbound>,
    /// The caller and the outbound leg are bridged (media relayed, or music to the side
    /// that was put on hold).
    bridging: bool,
    /// The task and agent of the bridge, while the caller talks to an agent: checked for
    /// transfers the agent asks for (on any node).
    holding: Option<(String, String)>,
    /// The agent put the caller on hold from their desk: music to the caller, nothing
    /// relayed, until they take the caller back.
    desk_hold: bool,
    /// Transferred by an agent to a number: the bridge lasts until either side hangs up,
    /// whatever the flow does once the task is over.
    outlives_flow: bool,
    /// Outbound legs whose BYE was answered while they were set aside.
    hung_up: std::collections::HashSet<String>,
    /// The contact's latest step, heard while a bridge was ending.
    kept_report: Option<StepReport>,
    /// Digits pressed while the prompts before a gather played ("type-ahead", as VoiceXML
    /// keeps them): handed to that gather, which then skips its prompt.
    ahead: std::collections::VecDeque<char>,
}

impl Call {
    async fn serve(&mut self) -> Result<(), Gone> {
        if self.ep.config.ring_ms > 0 {
            self.reply(180, "Ringing", None);
            let until = Instant::now() + Duration::from_millis(self.ep.config.ring_ms);
            while !matches!(self.next(Some(until)).await?, Wake::Timeout) {}
        }
        let to = message::user_of(self.invite.uri()).to_string();
        let to = if to.is_empty() {
            message::user_of(message::uri_of(
                self.invite.header("To").unwrap_or_default(),
            ))
            .to_string()
        } else {
            to
        };
        let from = message::user_of(message::uri_of(
            self.invite.header("From").unwrap_or_default(),
        ))
        .to_string();
        let new = NewContact {
            channel: Some(Channel::Voice),
            from,
            to: to.clone(),
            flow: None,
            attributes: vec![("sip_call_id".into(), self.invite.call_id().to_string())],
            held: true,
        };
        let rt = self.rt.clone();
        let started = tokio::task::spawn_blocking(move || rt.contacts().start(new))
            .await
            .map_err(|e| Gone::Failed(e.to_string()))?;
        let report = match started {
            Ok(report) => report,
            Err(ContactError::NoFlow(_)) => {
                self.refuse(
                    404,
                    "Not Found",
                    &format!("no flow is bound to {to}; bind one with: switchboard bind {to} FLOW"),
                );
                return Ok(());
            }
            Err(e) => {
                self.refuse(500, "Server Internal Error", &e.to_string());
                return Ok(());
            }
        };
        self.contact = Some(report.contact.clone());
        self.ep.follow(&report.contact, Some(self.tx.clone()));
        tracing::info!(contact = %report.contact, call_id = %self.dialog.call_id, to, "call answered");
        self.answer();
        let mut report = report;
        loop {
            report = match self.perform(report).await? {
                Next::Event(event) => self.step(event).await?,
                Next::Report(r) => r,
                Next::Hold => self.hold().await?,
                Next::Bridge(agent) => self.bridge(agent).await?,
                Next::Transfer(target) => {
                    self.transfer(&target).await?;
                    return self.hang_up().await;
                }
                Next::Hangup => return self.hang_up().await,
            };
        }
    }

    fn refuse(&mut self, code: u16, reason: &str, why: &str) {
        self.ep
            .refuse_call(self.dialog.peer, &self.invite, code, reason, why, &self.tag);
    }

    fn contact_header(&self) -> String {
        match self.dialog.peer {
            Peer::Udp(_) => format!("<sip:switchboard@{}>", self.ep.advertised),
            Peer::Tcp(_) => format!("<sip:switchboard@{};transport=tcp>", self.ep.advertised),
        }
    }

    fn reply(&mut self, code: u16, reason: &str, body: Option<Vec<u8>>) {
        let mut response = self.invite.response(code, reason, Some(&self.tag));
        if code < 300 && code > 100 {
            response = response.with("Contact", self.contact_header());
        }
        if let Some(body) = body {
            response = response.with_body("application/sdp", body);
        }
        let bytes = super::stamp(response).to_bytes();
        self.last_response = Some(bytes.clone());
        self.ep.send(self.dialog.peer, bytes);
    }

    fn our_sdp(&mut self) -> Vec<u8> {
        self.sdp_version += 1;
        answer_sdp(&self.leg, self.sdp_version)
    }

    fn answer(&mut self) {
        let sdp = self.our_sdp();
        self.reply(200, "OK", Some(sdp));
        self.answered = true;
        if let (Peer::Udp(_), Some(bytes)) = (self.dialog.peer, self.last_response.clone()) {
            self.retransmit(Timer::Answer, bytes, self.dialog.peer, T2);
        }
    }

    fn retransmit(&mut self, timer: Timer, bytes: Vec<u8>, peer: Peer, cap: Duration) {
        if !matches!(peer, Peer::Udp(_)) {
            return;
        }
        self.timers.retain(|t| t.timer != timer);
        let now = Instant::now();
        self.timers.push(Retransmit {
            timer,
            bytes,
            peer,
            next: now + T1,
            interval: T1,
            until: now + 64 * T1,
            cap,
        });
    }

    fn stop_timer(&mut self, timer: Timer) {
        self.timers.retain(|t| t.timer != timer);
    }

    /// Waits for the next thing that matters to the call, answering in-dialog requests of the
    /// caller (ACK, BYE, CANCEL, INFO, re-INVITE, OPTIONS) and retransmitting on the way.
    async fn next(&mut self, deadline: Option<Instant>) -> Result<Wake, Gone> {
        loop {
            let now = Instant::now();
            let mut expired = None;
            for t in &mut self.timers {
                if t.next <= now {
                    if now >= t.until {
                        expired = Some(t.timer);
                        continue;
                    }
                    self.ep.send(t.peer, t.bytes.clone());
                    t.interval = (t.interval * 2).min(t.cap);
                    t.next = now + t.interval;
                }
            }
            if let Some(timer) = expired {
                self.stop_timer(timer);
                return Ok(Wake::Expired(timer));
            }
            if deadline.is_some_and(|d| now >= d) {
                return Ok(Wake::Timeout);
            }
            let wake_at = self
                .timers
                .iter()
                .map(|t| t.next)
                .chain(deadline)
                .min()
                .unwrap_or(now + Duration::from_secs(3600));
            tokio::select! {
                input = self.inbox.recv() => match input {
                    None => return Err(Gone::Failed("the SIP endpoint stopped".into())),
                    Some(Input::Report(r)) => return Ok(Wake::Report(r)),
                    Some(Input::Sip(m, peer, LegKind::Caller)) => {
                        if let Some(wake) = self.caller_sip(m, peer)? {
                            return Ok(wake);
                        }
                    }
                    Some(Input::Sip(m, peer, LegKind::Outbound)) => return Ok(Wake::Outbound(m, peer)),
                },
                heard = self.heard.recv() => match heard {
                    Some(Heard::Digit(d)) => return Ok(Wake::Digit(d)),
                    Some(Heard::Played(t)) => return Ok(Wake::Played(t)),
                    None => return Err(Gone::Failed("the media leg closed".into())),
                },
                _ = tokio::time::sleep_until(wake_at.into()) => {}
            }
        }
    }

    fn caller_sip(&mut self, m: Message, peer: Peer) -> Result<Option<Wake>, Gone> {
        if !m.is_request() {
            if m.method() == "BYE" && m.code() >= 200 {
                self.stop_timer(Timer::Bye);
                return Ok(Some(Wake::ByeAnswered));
            }
            return Ok(None);
        }
        match m.method() {
            "ACK" => self.stop_timer(Timer::Answer),
            "BYE" => {
                self.ep.respond(peer, &m, m.response(200, "OK", None));
                return Err(Gone::Caller);
            }
            "CANCEL" => {
                self.ep
                    .respond(peer, &m, m.response(200, "OK", Some(&self.tag)));
                if !self.answered {
                    self.reply(487, "Request Terminated", None);
                    return Err(Gone::Caller);
                }
            }
            "INFO" => {
                self.ep.respond(peer, &m, m.response(200, "OK", None));
                if let Some(digit) = info_digit(&m) {
                    return Ok(Some(Wake::Digit(digit)));
                }
            }
            "INVITE" if m.branch() == self.invite.branch() => {
                // A retransmission of the first INVITE: the last response again.
                if let Some(bytes) = self.last_response.clone() {
                    self.ep.send(peer, bytes);
                }
            }
            "INVITE" | "UPDATE" => {
                self.reinvite(m, peer);
                self.update_bridge();
            }
            "OPTIONS" => self.ep.respond(peer, &m, m.response(200, "OK", None)),
            _ => self
                .ep
                .respond(peer, &m, m.response(501, "Not Implemented", None)),
        }
        Ok(None)
    }

    /// A re-INVITE or UPDATE from the caller (hold, a new address, a session refresh): the
    /// call goes on.
    fn reinvite(&mut self, m: Message, peer: Peer) {
        self.sdp_version += 1;
        let contact = self.contact_header();
        if let Some(bytes) = self
            .ep
            .renegotiate(&self.leg, &m, peer, self.sdp_version, &contact)
        {
            self.retransmit(Timer::Answer, bytes, peer, T2);
        }
    }

    /// Who hears whom while bridged (see [`join`]).
    fn update_bridge(&self) {
        let Some(out) = self.outbound.as_ref().filter(|o| o.up && self.bridging) else {
            return;
        };
        // A desk hold belongs to the agent's bridge: gone with it (a transfer to a number).
        if self.desk_hold && self.holding.is_some() {
            self.leg.relay_to(None);
            out.leg.relay_to(None);
            self.leg.set_idle(Some(self.ep.prompts.hold.clone()));
            return;
        }
        if join(&self.leg, &out.leg, &self.ep.prompts.hold) {
            tracing::info!(contact = ?self.contact, "bridge on hold");
        }
    }

    /// An in-dialog request on the answered outbound leg while bridged: hold and unhold
    /// (re-INVITE, UPDATE), INFO, OPTIONS are answered and the call goes on; `true` when it
    /// was one of those.
    fn outbound_request(&mut self, m: &Message, peer: Peer) -> bool {
        let advertised = self.ep.advertised;
        let Some(out) = self.outbound.as_mut().filter(|o| o.up) else {
            return false;
        };
        match m.method() {
            "ACK" => {
                if !m.body.is_empty()
                    && let Ok(media) = sdp::negotiate(&m.body)
                {
                    out.leg.set_remote(media);
                }
                self.stop_timer(Timer::OutboundAnswer);
            }
            "INVITE" | "UPDATE" => {
                out.sdp_version += 1;
                let contact = format!("<sip:switchboard@{advertised}>");
                let answered = self
                    .ep
                    .renegotiate(&out.leg, m, peer, out.sdp_version, &contact);
                if let Some(bytes) = answered {
                    self.retransmit(Timer::OutboundAnswer, bytes, peer, T2);
                }
            }
            "INFO" | "OPTIONS" => self.ep.respond(peer, m, m.response(200, "OK", None)),
            _ => return false,
        }
        self.update_bridge();
        true
    }

    /// Runs a step of the flow.
    async fn step(&mut self, event: Event) -> Result<StepReport, Gone> {
        let Some(contact) = self.contact.clone() else {
            return Err(Gone::Failed("no contact".into()));
        };
        let rt = self.rt.clone();
        match tokio::task::spawn_blocking(move || rt.contacts().send(&contact, event)).await {
            Ok(Ok(report)) => Ok(report),
            Ok(Err(ContactError::Ended(_))) => Err(Gone::Failed("the contact has ended".into())),
            Ok(Err(e)) => Err(Gone::Failed(e.to_string())),
            Err(e) => Err(Gone::Failed(e.to_string())),
        }
    }

    async fn audio(&self, prompt: &Prompt) -> Arc<Audio> {
        let prompts = &self.ep.prompts;
        let result = match prompt {
            Prompt::Say(say) => prompts.say(say).await,
            Prompt::Play { prompt } => prompts.play(prompt).await,
        };
        result.unwrap_or_else(|e| {
            prompts.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(contact = ?self.contact, error = %e, "cannot render a prompt; the caller hears a beep instead");
            prompts.beep.clone()
        })
    }

    /// Plays audio; with `barge`, a digit stops it.
    async fn play(&mut self, audio: Vec<Arc<Audio>>, barge: bool) -> Result<Played, Gone> {
        if audio.is_empty() {
            return Ok(Played::Done);
        }
        self.token += 1;
        let token = self.token;
        for a in audio {
            self.leg.play(a, token);
        }
        loop {
            match self.next(None).await? {
                Wake::Played(t) if t == token => return Ok(Played::Done),
                Wake::Digit(d) if barge => {
                    self.leg.stop();
                    return Ok(Played::Digit(d));
                }
                // A caller who knows the menu presses ahead: kept for the next gather.
                Wake::Digit(d) => self.ahead.push_back(d),
                Wake::Report(r) => {
                    self.leg.stop();
                    return Ok(Played::Preempted(Box::new(r)));
                }
                Wake::Outbound(m, peer) => self.stray(m, peer),
                Wake::Expired(Timer::Answer) => return Err(Gone::Failed("no ACK".into())),
                _ => {}
            }
        }
    }

    /// Carries out a step's actions until one needs the flow again.
    async fn perform(&mut self, report: StepReport) -> Result<Next, Gone> {
        let next = self.perform_actions(report).await;
        if !matches!(next, Ok(Next::Event(Event::Input { .. }))) {
            // Digits pressed ahead belong to the gather of the step they were pressed in.
            self.ahead.clear();
        }
        next
    }

    async fn perform_actions(&mut self, report: StepReport) -> Result<Next, Gone> {
        if !matches!(report.status, Status::Queued { .. }) {
            self.leg.set_idle(None);
        }
        for action in &report.actions {
            let prompt = match action {
                Action::Say(s) => Prompt::Say(s.clone()),
                Action::Play { prompt } => Prompt::Play {
                    prompt: prompt.clone(),
                },
                Action::Gather(g) => return self.gather(g).await,
                Action::Transfer { target } => return Ok(Next::Transfer(target.clone())),
                Action::Hangup | Action::End | Action::Callback { .. } => {
                    return Ok(Next::Hangup);
                }
                Action::Enqueue(_) | Action::SetAttribute { .. } | Action::Send { .. } => {
                    continue;
                }
            };
            let audio = self.audio(&prompt).await;
            if let Played::Preempted(r) = self.play(vec![audio], false).await? {
                return Ok(Next::Report(*r));
            }
        }
        Ok(match report.status {
            Status::Ended { .. } => Next::Hangup,
            Status::Queued { .. } | Status::WithAgent { agent: None, .. } => Next::Hold,
            Status::WithAgent {
                agent: Some(agent), ..
            } => Next::Bridge(agent),
            Status::Active => match report.awaiting {
                Some(crate::sessions::Awaiting::Input(g)) => return self.gather(&g).await,
                _ => Next::Hangup,
            },
        })
    }

    /// A gather: the prompt (digits barge in), then digits until the limit, the finish key
    /// or a silence of `timeout_ms`; silence replays the prompt `retries` times, then the
    /// flow hears no-input.
    async fn gather(&mut self, g: &Gather) -> Result<Next, Gone> {
        let timeout = Duration::from_millis(if g.timeout_ms == 0 {
            5_000
        } else {
            u64::from(g.timeout_ms)
        });
        let mut audio = Vec::new();
        for p in &g.prompt {
            audio.push(self.audio(p).await);
        }
        if g.flush {
            // The flow wants only answers to this question: digits pressed ahead are dropped.
            self.ahead.clear();
        }
        let finish = g.finish_on_key.as_deref().and_then(|k| k.chars().next());
        let mut replays = 0;
        loop {
            let mut digits = String::new();
            // Digits pressed ahead answer at once: the prompt is skipped, as a key pressed
            // during it would have cut it.
            let mut pressed = match self.ahead.pop_front() {
                Some(d) => Some(d),
                None => match self.play(audio.clone(), true).await? {
                    Played::Done => None,
                    Played::Digit(d) => Some(d),
                    Played::Preempted(r) => return Ok(Next::Report(*r)),
                },
            };
            loop {
                let digit = match pressed.take().or_else(|| self.ahead.pop_front()) {
                    Some(d) => d,
                    None => {
                        let deadline = Instant::now() + timeout;
                        let mut got = None;
                        while got.is_none() {
                            match self.next(Some(deadline)).await? {
                                Wake::Digit(d) => got = Some(d),
                                Wake::Timeout => break,
                                Wake::Report(r) => return Ok(Next::Report(r)),
                                Wake::Outbound(m, peer) => self.stray(m, peer),
                                Wake::Expired(Timer::Answer) => {
                                    return Err(Gone::Failed("no ACK".into()));
                                }
                                _ => {}
                            }
                        }
                        match got {
                            Some(d) => d,
                            None => break,
                        }
                    }
                };
                if Some(digit) == finish {
                    break;
                }
                digits.push(digit);
                if g.max_digits > 0 && digits.len() >= g.max_digits as usize {
                    break;
                }
            }
            if !digits.is_empty() {
                return Ok(Next::Event(Event::Input {
                    digits,
                    speech: None,
                }));
            }
            if replays >= g.retries {
                return Ok(Next::Event(Event::NoInput));
            }
            replays += 1;
        }
    }

    /// Waits in the queue with hold music until the contact's next step (queue news, an
    /// agent, a timeout).
    async fn hold(&mut self) -> Result<StepReport, Gone> {
        self.leg.set_idle(Some(self.ep.prompts.hold.clone()));
        loop {
            match self.next(None).await? {
                Wake::Report(r) => return Ok(r),
                Wake::Outbound(m, peer) => self.stray(m, peer),
                Wake::Expired(Timer::Answer) => return Err(Gone::Failed("no ACK".into())),
                _ => {}
            }
        }
    }

    /// A message for an outbound leg we are not waiting on: answer requests, ignore the rest.
    fn stray(&mut self, m: Message, peer: Peer) {
        if m.is_request() && m.method() == "BYE" {
            // A leg set aside (an agent's, while a transfer rings) hung up: remembered, so
            // the caller is not handed back to it.
            self.hung_up.insert(m.call_id().to_string());
        }
        if m.is_request() && m.method() != "ACK" {
            let code = if m.method() == "BYE" { 200 } else { 481 };
            let reason = if code == 200 {
                "OK"
            } else {
                "Call/Transaction Does Not Exist"
            };
            self.ep.respond(peer, &m, m.response(code, reason, None));
        }
    }

    /// Places the outbound leg to `uri` and waits until it answers (`Ok(Ok)`), fails or rings
    /// out (`Ok(Err(why))`), or the caller hangs up.
    async fn dial(&mut self, uri: &str, peer: Option<Peer>) -> Result<Result<(), String>, Gone> {
        let (dialog, leg, invite, heard) = match self.ep.new_leg(uri, peer).await {
            Ok(placed) => placed,
            Err(why) => return Ok(Err(why)),
        };
        let peer = dialog.peer;
        self.ep
            .route(&dialog.call_id, self.tx.clone(), LegKind::Outbound);
        let bytes = invite.to_bytes();
        self.ep.send(peer, bytes.clone());
        self.retransmit(
            Timer::OutboundInvite,
            bytes,
            peer,
            Duration::from_secs(3600),
        );
        self.outbound = Some(Outbound {
            dialog,
            leg,
            invite,
            up: false,
            sdp_version: 1,
            _heard: heard,
        });
        let ring_until = Instant::now() + Duration::from_secs(self.ep.config.agent_ring_secs);
        let mut challenged = false;
        loop {
            let wake = match self.next(Some(ring_until)).await {
                Ok(wake) => wake,
                Err(gone) => {
                    self.cancel_outbound().await;
                    return Err(gone);
                }
            };
            match wake {
                Wake::Timeout => {
                    self.cancel_outbound().await;
                    return Ok(Err(format!(
                        "no answer within {} s",
                        self.ep.config.agent_ring_secs
                    )));
                }
                Wake::Expired(Timer::OutboundInvite) => {
                    self.drop_outbound();
                    return Ok(Err("no response to the INVITE".into()));
                }
                Wake::Expired(Timer::Answer) => {
                    self.cancel_outbound().await;
                    return Err(Gone::Failed("no ACK".into()));
                }
                Wake::Outbound(m, _)
                    if !m.is_request()
                        && m.method() == "INVITE"
                        && self
                            .outbound
                            .as_ref()
                            .is_some_and(|o| o.dialog.call_id == m.call_id()) =>
                {
                    self.stop_timer(Timer::OutboundInvite);
                    let code = m.code();
                    if code < 200 {
                        continue;
                    }
                    if (code == 401 || code == 407) && !challenged {
                        challenged = true;
                        if self.answer_challenge(&m) {
                            continue;
                        }
                    }
                    if code >= 300 {
                        self.ack_failure(&m);
                        self.drop_outbound();
                        return Ok(Err(format!(
                            "{code} {}",
                            match &m.start {
                                message::Start::Response { reason, .. } => reason.as_str(),
                                _ => "",
                            }
                        )));
                    }
                    let media = sdp::negotiate(&m.body);
                    let out = self.outbound.as_mut().expect("dialing");
                    out.dialog.confirm(&m);
                    self.ack_outbound();
                    match media {
                        Ok(media) => {
                            let out = self.outbound.as_mut().expect("dialing");
                            out.leg.set_remote(media);
                            out.up = true;
                            return Ok(Ok(()));
                        }
                        Err(e) => {
                            self.hang_up_outbound().await;
                            return Ok(Err(format!("unusable SDP answer: {e}")));
                        }
                    }
                }
                Wake::Outbound(m, peer) => self.stray(m, peer),
                _ => {}
            }
        }
    }

    /// The trunk challenged our INVITE (401 or 407): ACKs the challenge and sends the INVITE
    /// again, next CSeq, with the trunk's credentials (`sip.trunk_username`). `false` when the
    /// leg does not go through the trunk, no credentials are set, or the challenge cannot be
    /// answered: the failure then stands.
    fn answer_challenge(&mut self, response: &Message) -> bool {
        let config = &self.ep.config;
        let (Some(user), Some(password), Some(trunk)) = (
            config.trunk_username.as_deref(),
            config.trunk_password.as_deref(),
            config.trunk.as_deref(),
        ) else {
            return false;
        };
        let Some(out) = self.outbound.as_ref() else {
            return false;
        };
        if message::host_port_of(&out.dialog.target).as_deref() != Some(trunk) {
            return false;
        }
        let (asked, header) = if response.code() == 407 {
            ("Proxy-Authenticate", "Proxy-Authorization")
        } else {
            ("WWW-Authenticate", "Authorization")
        };
        let uri = out.dialog.target.clone();
        let Some(credentials) = response
            .header(asked)
            .and_then(|c| super::digest::answer(c, "INVITE", &uri, user, password))
        else {
            return false;
        };
        self.ack_failure(response);
        let advertised = self.ep.advertised;
        let out = self.outbound.as_mut().expect("checked above");
        let body = out.invite.body.clone();
        let invite = out
            .dialog
            .request("INVITE", advertised)
            .with("Contact", format!("<sip:switchboard@{advertised}>"))
            .with(header, credentials)
            .with_body("application/sdp", body);
        out.invite = invite;
        let (bytes, peer) = (out.invite.to_bytes(), out.dialog.peer);
        tracing::info!(
            target = uri,
            "the trunk challenged the call; sending it again with credentials"
        );
        self.ep.send(peer, bytes.clone());
        self.retransmit(
            Timer::OutboundInvite,
            bytes,
            peer,
            Duration::from_secs(3600),
        );
        true
    }

    fn ack_outbound(&mut self) {
        let advertised = self.ep.advertised;
        if let Some(out) = self.outbound.as_mut() {
            let ack = out.dialog.ack(&out.invite, advertised);
            self.ep.send(out.dialog.peer, ack.to_bytes());
        }
    }

    /// ACK for a non-2xx final response: same branch as the INVITE.
    fn ack_failure(&self, response: &Message) {
        if let Some(out) = &self.outbound {
            let ack = in_invite_transaction(
                &out.invite,
                "ACK",
                response.header("To").unwrap_or_default(),
            );
            self.ep.send(out.dialog.peer, ack.to_bytes());
        }
    }

    fn drop_outbound(&mut self) {
        self.stop_timer(Timer::OutboundInvite);
        if let Some(out) = self.outbound.take() {
            out.leg.close();
            self.leg.relay_to(None);
            self.ep.unroute(&out.dialog.call_id);
        }
    }

    /// Cancels a ringing outbound leg (and ACKs its 487), or hangs up an answered one.
    async fn cancel_outbound(&mut self) {
        let Some(out) = self.outbound.as_ref() else {
            return;
        };
        if out.up {
            return self.hang_up_outbound().await;
        }
        let cancel = in_invite_transaction(
            &out.invite,
            "CANCEL",
            out.invite.header("To").unwrap_or_default(),
        );
        self.ep.send(out.dialog.peer, cancel.to_bytes());
        self.stop_timer(Timer::OutboundInvite);
        let until = Instant::now() + Duration::from_secs(2);
        while let Ok(wake) = self.next(Some(until)).await {
            match wake {
                Wake::Outbound(m, _) if !m.is_request() && m.method() == "INVITE" => {
                    if m.code() >= 300 {
                        self.ack_failure(&m);
                        break;
                    }
                    if m.code() >= 200 {
                        // Answered as we canceled: hang it up.
                        self.ack_outbound();
                        if let Some(out) = self.outbound.as_mut() {
                            out.up = true;
                        }
                        return self.hang_up_outbound().await;
                    }
                }
                Wake::Timeout => break,
                _ => {}
            }
        }
        self.drop_outbound();
    }

    /// BYE on the outbound leg, waiting briefly for its answer.
    async fn hang_up_outbound(&mut self) {
        let advertised = self.ep.advertised;
        let Some(out) = self.outbound.as_mut() else {
            return;
        };
        let bye = out.dialog.request("BYE", advertised);
        let peer = out.dialog.peer;
        let bytes = bye.to_bytes();
        self.ep.send(peer, bytes.clone());
        self.retransmit(Timer::OutboundBye, bytes, peer, T2);
        self.leg.relay_to(None);
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            match self.next(Some(until)).await {
                Ok(Wake::Outbound(m, _)) if !m.is_request() && m.method() == "BYE" => break,
                Ok(Wake::Outbound(m, peer)) => self.stray(m, peer),
                Ok(Wake::Timeout | Wake::Expired(Timer::OutboundBye)) | Err(_) => break,
                Ok(Wake::Report(r)) => self.kept_report = Some(r),
                Ok(_) => {}
            }
        }
        self.stop_timer(Timer::OutboundBye);
        self.drop_outbound();
    }

    /// Relays media between the caller and the answered outbound leg until one side hangs up,
    /// the contact ends elsewhere, or (bridged to an agent) the agent transfers the call.
    async fn bridged(&mut self) -> Result<BridgeEnd, Gone> {
        self.bridging = true;
        self.update_bridge();
        self.ep.stats.bridged.fetch_add(1, Ordering::Relaxed);
        let ended = self.relay_until_hang_up().await;
        self.bridging = false;
        self.stop_timer(Timer::OutboundAnswer);
        ended
    }

    async fn relay_until_hang_up(&mut self) -> Result<BridgeEnd, Gone> {
        loop {
            let check = self
                .holding
                .as_ref()
                .map(|_| Instant::now() + TRANSFER_CHECK);
            let wake = match self.next(check).await {
                Ok(wake) => wake,
                Err(gone) => {
                    self.hang_up_outbound().await;
                    return Err(gone);
                }
            };
            match wake {
                Wake::Outbound(m, peer) if m.is_request() && m.method() == "BYE" => {
                    self.ep.respond(peer, &m, m.response(200, "OK", None));
                    self.drop_outbound();
                    return Ok(BridgeEnd::HungUp);
                }
                Wake::Outbound(m, _) if !m.is_request() && m.method() == "INVITE" => {
                    // A retransmitted 2xx: our ACK was lost.
                    self.ack_outbound();
                }
                Wake::Outbound(m, peer) if m.is_request() && m.method() == "REFER" => {
                    if let Some(end) = self.refer(m, peer).await {
                        return Ok(end);
                    }
                }
                Wake::Outbound(m, peer) if m.is_request() && self.outbound_request(&m, peer) => {}
                Wake::Outbound(m, peer) => self.stray(m, peer),
                Wake::Report(r)
                    if matches!(r.status, Status::Ended { .. }) && !self.outlives_flow =>
                {
                    self.hang_up_outbound().await;
                    return Ok(BridgeEnd::Ended(Box::new(r)));
                }
                Wake::Timeout => {
                    if let Some(end) = self.transfer_asked().await {
                        return Ok(end);
                    }
                }
                // A step taken meanwhile (the next agent accepted a transfer already): kept
                // for when the bridge ends.
                Wake::Report(r) => self.kept_report = Some(r),
                _ => {}
            }
        }
    }

    /// Whether the agent of the bridge transferred the task (from their desk, on any node):
    /// moved to a queue or another agent, or to be transferred to a number.
    async fn transfer_asked(&mut self) -> Option<BridgeEnd> {
        let (task, agent) = self.holding.clone()?;
        let rt = self.rt.clone();
        let now = tokio::task::spawn_blocking(move || rt.desk().task(&task))
            .await
            .ok()?
            .ok()?;
        use crate::router::TaskStatus;
        let theirs = now.agent.as_deref() == Some(agent.as_str());
        match now.status {
            TaskStatus::Assigned if theirs => {
                let held = now.held_since_ms.is_some();
                if held != self.desk_hold {
                    self.desk_hold = held;
                    self.update_bridge();
                    let what = if held {
                        "put the caller on hold"
                    } else {
                        "took the caller back"
                    };
                    tracing::info!(contact = ?self.contact, agent, "the agent {what}");
                }
                match now.consult {
                    Some(c) if c.stage == crate::router::ConsultStage::Ringing => {
                        Some(BridgeEnd::Consult(c.agent))
                    }
                    _ => now.transfer_to.map(|target| BridgeEnd::ToNumber {
                        target,
                        refer: false,
                    }),
                }
            }
            // The agent ended the conversation from their desk: their leg is hung up and the
            // caller goes back to the flow, which hears the task's outcome.
            TaskStatus::Wrapping | TaskStatus::Completed if theirs => {
                tracing::info!(contact = ?self.contact, agent, "the agent hung up from the desk");
                self.desk_hold = false;
                self.note_leg(
                    &agent,
                    Some(&now.id),
                    format!("{agent} hung up from the desk"),
                )
                .await;
                self.hang_up_outbound().await;
                Some(BridgeEnd::HungUp)
            }
            TaskStatus::Pending | TaskStatus::Reserved | TaskStatus::Assigned => {
                tracing::info!(contact = ?self.contact, agent, queue = now.queue, "the agent transferred the call");
                let to = match &now.only {
                    Some(only) => format!("agent {only}"),
                    None => format!("queue {}", now.queue),
                };
                self.note_leg(
                    &agent,
                    Some(&now.id),
                    format!("{agent} transferred the call to {to}"),
                )
                .await;
                self.hang_up_outbound().await;
                Some(BridgeEnd::Moved)
            }
            _ => None,
        }
    }

    /// A REFER from the agent's phone: a blind transfer to what its Refer-To names — a queue
    /// or an agent (by the user part), else that number or URI. Answered 202 and followed by
    /// a NOTIFY with the outcome (RFC 3515), or refused with the reason, the bridge going on.
    async fn refer(&mut self, m: Message, peer: Peer) -> Option<BridgeEnd> {
        let Some((task, agent)) = self.holding.clone() else {
            let response = m
                .response(403, "Forbidden", None)
                .with_warning("only a call bridged to an agent can be transferred");
            self.ep.respond(peer, &m, response);
            return None;
        };
        let Some(uri) = m
            .header("Refer-To")
            .map(|v| message::uri_of(v).to_string())
            .filter(|u| u.starts_with("sip:") || u.starts_with("sips:") || u.starts_with("tel:"))
        else {
            let response = m
                .response(400, "Bad Request", None)
                .with_warning("a REFER needs a Refer-To with a SIP URI");
            self.ep.respond(peer, &m, response);
            return None;
        };
        let user = message::user_of(&uri).to_string();
        let ours = message::host_port_of(&uri)
            .is_some_and(|h| h == self.ep.advertised.to_string() || h.starts_with("switchboard"));
        let rt = self.rt.clone();
        let (number, named) = (if ours { user.clone() } else { uri.clone() }, user.clone());
        let moved = tokio::task::spawn_blocking(move || {
            use crate::router::{RouterError, TransferTo};
            let desk = rt.desk();
            let attempt = |to: TransferTo| desk.transfer(&agent, &task, &to);
            let result = match attempt(TransferTo::Queue(named.clone())) {
                Err(RouterError::UnknownQueue(_)) => match attempt(TransferTo::Agent(named)) {
                    Err(RouterError::UnknownAgent(_)) => attempt(TransferTo::Number(number)),
                    other => other,
                },
                other => other,
            };
            if result.is_ok() {
                let _ = rt.admin().flush();
            }
            rt.deliver_news();
            result
        })
        .await
        .ok()?;
        match moved {
            Err(e) => {
                let (code, reason) = match &e {
                    crate::router::RouterError::Conflict(_) => (409, "Conflict"),
                    _ => (403, "Forbidden"),
                };
                tracing::info!(contact = ?self.contact, uri, error = %e, "REFER refused");
                let response = m.response(code, reason, None).with_warning(&e.to_string());
                self.ep.respond(peer, &m, response);
                None
            }
            Ok(t) => {
                self.ep.respond(peer, &m, m.response(202, "Accepted", None));
                if let Some(target) = t.transfer_to {
                    // The final NOTIFY follows once that leg answers or fails.
                    return Some(BridgeEnd::ToNumber {
                        target,
                        refer: true,
                    });
                }
                tracing::info!(contact = ?self.contact, uri, queue = t.queue, only = ?t.only, "the agent's phone transferred the call");
                let by = t.attributes["transferred_from"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                self.note_leg(
                    &by,
                    Some(&t.id),
                    format!("{by}'s phone transferred the call to {uri} (REFER)"),
                )
                .await;
                self.notify_refer(200, "OK");
                self.hang_up_outbound().await;
                Some(BridgeEnd::Moved)
            }
        }
    }

    /// Tells the agent's phone how its REFER went (a NOTIFY with a sipfrag status line);
    /// a final status ends the implicit subscription.
    fn notify_refer(&mut self, code: u16, reason: &str) {
        let advertised = self.ep.advertised;
        let Some(out) = self.outbound.as_mut() else {
            return;
        };
        let state = if code >= 200 {
            "terminated;reason=noresource"
        } else {
            "active;expires=60"
        };
        let notify = out
            .dialog
            .request("NOTIFY", advertised)
            .with("Event", "refer")
            .with("Subscription-State", state)
            .with("Contact", format!("<sip:switchboard@{advertised}>"))
            .with_body(
                "message/sipfrag;version=2.0",
                format!("SIP/2.0 {code} {reason}\r\n").into_bytes(),
            );
        self.ep.send(out.dialog.peer, notify.to_bytes());
    }

    /// The agent accepted: call their phone, bridge, and when either side hangs up complete
    /// the task; the flow then decides what the caller hears next.
    async fn bridge(&mut self, mut agent: String) -> Result<StepReport, Gone> {
        let contact = self.contact.clone().unwrap_or_default();
        let task = self.rt.contacts().task_of(&contact).map(|t| t.id);
        let dialed = match self.ep.phone_of(&agent) {
            Some((uri, peer)) => {
                tracing::info!(contact, agent, phone = uri, "calling the agent's phone");
                self.dial(&uri, peer).await
            }
            None => Ok(Err(format!(
                "agent {agent} has no phone: register one (sip:{agent}@{}) or set the agent's sip attribute",
                self.ep.advertised
            ))),
        };
        let dialed = match dialed {
            Ok(dialed) => dialed,
            Err(gone) => {
                self.finish_task(
                    &agent,
                    task.as_deref(),
                    "the caller hung up while the agent's phone rang",
                )
                .await;
                return Err(gone);
            }
        };
        if let Err(why) = dialed {
            tracing::warn!(
                contact,
                agent,
                why,
                "cannot reach the agent's phone; the agent is made unavailable and the task canceled"
            );
            // Their phone would fail the next caller too; the flow decides what follows
            // (queue again, a callback, goodbye).
            if let Some(task) = task.clone() {
                let rt = self.rt.clone();
                let reason = format!("the agent's phone could not be reached: {why}");
                let agent = agent.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let _ = rt.desk().set_activity(&agent, "unavailable");
                    let _ = rt.desk().cancel(&task, &reason);
                    rt.deliver_news();
                })
                .await;
            }
            return self.wait_report().await;
        }
        tracing::info!(contact, agent, "caller bridged to the agent");
        self.kept_report = None;
        self.note_leg(
            &agent,
            task.as_deref(),
            format!("connected to {agent}'s phone"),
        )
        .await;
        self.holding = task.clone().map(|t| (t, agent.clone()));
        self.desk_hold = false;
        loop {
            // The agent's leg hung up while set aside (a transfer that rang out): as if
            // they hung up in the bridge.
            let ended = if self.outbound.is_none() {
                Ok(BridgeEnd::HungUp)
            } else {
                self.bridged().await
            };
            let reason = match &ended {
                Err(Gone::Caller) => "the caller hung up",
                _ => "the call ended",
            };
            match ended {
                Ok(BridgeEnd::Moved) => {
                    self.holding = None;
                    return self.transferred_to_wait().await;
                }
                Ok(BridgeEnd::Consult(target)) => {
                    match self.consult(task.as_deref(), &agent, &target).await {
                        Ok(holder) => {
                            agent = holder;
                            self.holding = task.clone().map(|t| (t, agent.clone()));
                            self.desk_hold = false;
                        }
                        Err(gone) => {
                            self.holding = None;
                            self.finish_task(&agent, task.as_deref(), "the caller hung up")
                                .await;
                            return Err(gone);
                        }
                    }
                }
                Ok(BridgeEnd::ToNumber { target, refer }) => {
                    if self
                        .transfer_to_number(&agent, task.as_deref(), &target, refer)
                        .await?
                    {
                        self.holding = None;
                        return Err(Gone::Transferred);
                    }
                    // Not placed: back to the agent, who may try again.
                }
                ended => {
                    self.holding = None;
                    // What the flow says next follows the task's end, not what came before.
                    self.kept_report = None;
                    self.finish_task(&agent, task.as_deref(), reason).await;
                    return match ended? {
                        BridgeEnd::Ended(report) => Ok(*report),
                        _ => self.wait_report().await,
                    };
                }
            }
        }
    }

    /// A warm transfer: the caller waits with music while `agent`'s leg is bridged to
    /// `target`'s phone; then the agent completes it (or hangs up) and the caller is handed
    /// to `target`, or cancels it (or `target` hangs up, or does not answer) and the agent
    /// has the caller back. Returns the agent who holds the call after it.
    async fn consult(
        &mut self,
        task: Option<&str>,
        agent: &str,
        target: &str,
    ) -> Result<String, Gone> {
        let (Some(task), Some(agent_leg)) = (task.map(str::to_string), self.outbound.take()) else {
            return Ok(agent.to_string());
        };
        let music = self.ep.prompts.hold.clone();
        self.leg.relay_to(None);
        agent_leg.leg.relay_to(None);
        self.leg.set_idle(Some(music.clone()));
        agent_leg.leg.set_idle(Some(music.clone()));
        tracing::info!(contact = ?self.contact, agent, target, "warm transfer: ringing the consulted agent");
        let dialed = match self.ep.phone_of(target) {
            Some((uri, peer)) => self.dial(&uri, peer).await,
            None => Ok(Err(format!("{target} has no phone registered"))),
        };
        let why = match dialed {
            Ok(Ok(())) => None,
            Ok(Err(why)) => Some(format!("{target}'s phone could not be reached: {why}")),
            Err(gone) => {
                self.outbound = Some(agent_leg);
                self.hang_up_outbound().await;
                self.consult_over(&task, Some("the caller hung up")).await;
                return Err(gone);
            }
        };
        if self.hung_up.remove(&agent_leg.dialog.call_id) {
            // The agent hung up while the consulted phone rang: handed over if it answered.
            agent_leg.leg.close();
            self.ep.unroute(&agent_leg.dialog.call_id);
            self.consult_over(&task, why.as_deref()).await;
            return Ok(if why.is_none() {
                target.to_string()
            } else {
                agent.to_string()
            });
        }
        if let Some(why) = why {
            self.outbound = Some(agent_leg);
            self.consult_over(&task, Some(&why)).await;
            return Ok(agent.to_string());
        }
        if let Some(consulted) = &self.outbound {
            join(&agent_leg.leg, &consulted.leg, &music);
        }
        self.set_consult_stage(&task, crate::router::ConsultStage::Talking)
            .await;
        let mut agent_leg = Some(agent_leg);
        let hand_over = loop {
            let check = Instant::now() + TRANSFER_CHECK;
            let wake = match self.next(Some(check)).await {
                Ok(wake) => wake,
                Err(gone) => {
                    self.hang_up_outbound().await;
                    self.outbound = agent_leg.take();
                    self.hang_up_outbound().await;
                    self.consult_over(&task, Some("the caller hung up")).await;
                    return Err(gone);
                }
            };
            match wake {
                Wake::Outbound(m, peer)
                    if agent_leg
                        .as_ref()
                        .is_some_and(|a| a.dialog.call_id == m.call_id()) =>
                {
                    if !m.is_request() {
                        continue;
                    }
                    match m.method() {
                        // The agent hangs up: the call goes to the consulted agent, as with
                        // an attended transfer on a desk phone.
                        "BYE" => {
                            self.ep.respond(peer, &m, m.response(200, "OK", None));
                            if let Some(gone) = agent_leg.take() {
                                gone.leg.close();
                                self.ep.unroute(&gone.dialog.call_id);
                            }
                            break true;
                        }
                        "INVITE" | "UPDATE" => {
                            let leg = agent_leg.as_mut().expect("matched above");
                            leg.sdp_version += 1;
                            let contact = format!("<sip:switchboard@{}>", self.ep.advertised);
                            self.ep
                                .renegotiate(&leg.leg, &m, peer, leg.sdp_version, &contact);
                        }
                        "ACK" => {}
                        _ => self.ep.respond(peer, &m, m.response(200, "OK", None)),
                    }
                }
                // The consulted agent hangs up: the agent has the caller back.
                Wake::Outbound(m, peer) if m.is_request() && m.method() == "BYE" => {
                    self.ep.respond(peer, &m, m.response(200, "OK", None));
                    self.drop_outbound();
                    break false;
                }
                Wake::Outbound(m, _) if !m.is_request() && m.method() == "INVITE" => {
                    self.ack_outbound();
                }
                Wake::Outbound(m, peer) if m.is_request() && self.outbound_request(&m, peer) => {}
                Wake::Outbound(m, peer) => self.stray(m, peer),
                Wake::Timeout => {
                    let (rt, id) = (self.rt.clone(), task.clone());
                    let now = tokio::task::spawn_blocking(move || rt.desk().task(&id)).await;
                    let stage = now.ok().and_then(Result::ok).and_then(|t| t.consult);
                    match stage.map(|c| c.stage) {
                        Some(crate::router::ConsultStage::Completing) => break true,
                        Some(crate::router::ConsultStage::Canceling) => break false,
                        _ => {}
                    }
                }
                _ => {}
            }
        };
        if hand_over && self.outbound.is_some() {
            // The agent's leg goes; the consulted agent's stays, for the caller.
            if let Some(leg) = agent_leg.take() {
                let consulted = self.outbound.replace(leg);
                self.hang_up_outbound().await;
                self.outbound = consulted;
            }
            self.consult_over(&task, None).await;
            tracing::info!(contact = ?self.contact, from = agent, to = target, "warm transfer completed");
            self.note_leg(
                target,
                Some(&task),
                format!("{agent} handed the call over to {target}"),
            )
            .await;
            return Ok(target.to_string());
        }
        // Taken back (or the consulted agent is gone).
        self.hang_up_outbound().await;
        self.outbound = agent_leg;
        let why = if hand_over {
            "the consulted agent hung up"
        } else {
            "taken back by the agent"
        };
        self.consult_over(&task, Some(why)).await;
        tracing::info!(contact = ?self.contact, agent, target, why, "warm transfer not completed");
        self.note_leg(
            agent,
            Some(&task),
            format!("{agent} consulted {target}; the call stayed with {agent} ({why})"),
        )
        .await;
        Ok(agent.to_string())
    }

    /// Tells the router where a warm transfer stands.
    async fn set_consult_stage(&self, task: &str, stage: crate::router::ConsultStage) {
        let (rt, task) = (self.rt.clone(), task.to_string());
        let _ =
            tokio::task::spawn_blocking(move || rt.desk().consult_stage(None, &task, stage)).await;
    }

    /// Tells the router a warm transfer ended: handed over (`None`) or not (why).
    async fn consult_over(&self, task: &str, failed: Option<&str>) {
        let (rt, task, failed) = (
            self.rt.clone(),
            task.to_string(),
            failed.map(str::to_string),
        );
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = rt.desk().consult_done(&task, failed.as_deref()) {
                tracing::warn!(task, error = %e, "cannot record the end of a warm transfer");
            }
            let _ = rt.admin().flush();
            rt.deliver_news();
        })
        .await;
    }

    /// The agent moved the task to a queue or another agent: the caller is told and waits
    /// with music for the next agent (the flow hears `assigned` again when they accept).
    async fn transferred_to_wait(&mut self) -> Result<StepReport, Gone> {
        if let Some(report) = self.kept_report.take() {
            // The next agent accepted before this call noticed the transfer.
            return Ok(report);
        }
        let say = crate::contract::Say {
            text: "Please hold while we transfer your call.".into(),
            voice: None,
            language: None,
        };
        let audio = self.audio(&Prompt::Say(say)).await;
        if let Played::Preempted(report) = self.play(vec![audio], false).await? {
            return Ok(*report);
        }
        self.hold().await
    }

    /// The agent asked to transfer the call to `target` (blind): the caller hears music while
    /// it rings, the agent's leg waits unheard. Answered: the caller is bridged to it, the
    /// agent's leg hung up and the task's conversation ended (`Ok(true)`, the bridge having
    /// ended too). Not answered: the agent's leg is bridged back (`Ok(false)`).
    async fn transfer_to_number(
        &mut self,
        agent: &str,
        task: Option<&str>,
        target: &str,
        refer: bool,
    ) -> Result<bool, Gone> {
        let uri = self.ep.target_uri(target);
        let Some(agent_leg) = self.outbound.take() else {
            return Ok(false);
        };
        agent_leg.leg.relay_to(None);
        self.leg.relay_to(None);
        self.leg.set_idle(Some(self.ep.prompts.hold.clone()));
        tracing::info!(contact = ?self.contact, agent, target, "transferring the call to a number");
        let placed = match uri {
            Ok(uri) => self.dial(&uri, None).await,
            Err(why) => Ok(Err(why)),
        };
        if let Some(task) = task.map(str::to_string) {
            let rt = self.rt.clone();
            let failed = match &placed {
                Ok(Err(why)) => Some(format!("transfer to {target} failed: {why}")),
                _ => None,
            };
            let _ = tokio::task::spawn_blocking(move || {
                rt.desk().transfer_placed(&task, failed.as_deref())
            })
            .await;
        }
        let placed = match placed {
            Ok(placed) => placed,
            Err(gone) => {
                // The caller hung up while it rang: the agent's leg goes too.
                self.outbound = Some(agent_leg);
                self.hang_up_outbound().await;
                return Err(gone);
            }
        };
        // Whichever leg is not kept is hung up; the kept one ends up in `outbound`.
        let agent_gone = self.hung_up.remove(&agent_leg.dialog.call_id);
        let new_leg = self.outbound.replace(agent_leg);
        if agent_gone {
            self.drop_outbound();
        }
        if let Err(why) = placed {
            tracing::warn!(contact = ?self.contact, target, why, "transfer to a number failed; back to the agent");
            self.note_leg(agent, task, format!("transfer to {target} failed ({why})"))
                .await;
            if refer {
                self.notify_refer(503, "Service Unavailable");
            }
            return Ok(false);
        }
        if refer {
            self.notify_refer(200, "OK");
        }
        self.hang_up_outbound().await;
        self.outbound = new_leg;
        self.holding = None;
        self.outlives_flow = true;
        self.note_leg(
            agent,
            task,
            format!("{agent} transferred the call to {target}"),
        )
        .await;
        self.finish_task(agent, task, &format!("transferred to {target}"))
            .await;
        // No agent holds the call now: it lasts until either side hangs up.
        self.bridged().await?;
        self.hang_up().await?;
        Ok(true)
    }

    /// Writes a leg of the call into the contact's transcript (from `switchboard`), so its
    /// trace shows who the caller talked to, in order.
    async fn note_leg(&self, agent: &str, task: Option<&str>, text: String) {
        let Some(contact) = self.contact.clone() else {
            return;
        };
        let (rt, agent, task) = (self.rt.clone(), agent.to_string(), task.map(str::to_string));
        let _ = tokio::task::spawn_blocking(move || {
            let agent = (!agent.is_empty()).then_some(agent.as_str());
            if let Err(e) =
                rt.contacts()
                    .record_said(&contact, "switchboard", agent, task.as_deref(), &text)
            {
                tracing::debug!(contact, error = %e, "cannot note a leg of the call");
            }
        })
        .await;
    }

    async fn finish_task(&self, agent: &str, task: Option<&str>, wrapup: &str) {
        let Some(task) = task.map(str::to_string) else {
            return;
        };
        let rt = self.rt.clone();
        let agent = agent.to_string();
        let wrapup = wrapup.to_string();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = rt.desk().conversation_ended(&task, &wrapup) {
                tracing::debug!(task, agent, error = %e, "task not wrapped up by the call");
            }
            rt.deliver_news();
        })
        .await;
    }

    /// The flow's next step after a task outcome it was told about.
    async fn wait_report(&mut self) -> Result<StepReport, Gone> {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match self.next(Some(until)).await? {
                Wake::Report(r) => return Ok(r),
                Wake::Timeout => {
                    return Err(Gone::Failed(
                        "the flow did not answer the task outcome".into(),
                    ));
                }
                Wake::Outbound(m, peer) => self.stray(m, peer),
                _ => {}
            }
        }
    }

    /// `transfer`: a new outbound leg to the target, bridged until either side hangs up.
    async fn transfer(&mut self, target: &str) -> Result<(), Gone> {
        let result = match self.ep.target_uri(target) {
            Ok(uri) => self.dial(&uri, None).await?,
            Err(why) => Err(why),
        };
        match result {
            Ok(()) => {
                tracing::info!(contact = ?self.contact, target, "call transferred");
                self.bridged().await?;
            }
            Err(why) => {
                tracing::warn!(contact = ?self.contact, target, why, "transfer failed");
                let say = crate::contract::Say {
                    text: "We could not transfer your call. Please try again later. Goodbye."
                        .into(),
                    voice: None,
                    language: None,
                };
                let audio = self.audio(&Prompt::Say(say)).await;
                self.play(vec![audio], false).await?;
            }
        }
        Ok(())
    }

    /// BYE to the caller, waiting briefly for the answer.
    async fn hang_up(&mut self) -> Result<(), Gone> {
        if !self.answered {
            return Ok(());
        }
        let bye = self.dialog.request("BYE", self.ep.advertised).to_bytes();
        self.ep.send(self.dialog.peer, bye.clone());
        self.retransmit(Timer::Bye, bye, self.dialog.peer, T2);
        let until = Instant::now() + Duration::from_secs(4);
        loop {
            match self.next(Some(until)).await {
                Ok(Wake::ByeAnswered | Wake::Timeout | Wake::Expired(Timer::Bye)) | Err(_) => {
                    break;
                }
                Ok(Wake::Outbound(m, peer)) => self.stray(m, peer),
                Ok(_) => {}
            }
        }
        self.stop_timer(Timer::Bye);
        Ok(())
    }

    /// Cleans up: the flow hears a hang-up it did not cause, legs close, routes go.
    async fn finish(&mut self, outcome: Result<(), Gone>) {
        match &outcome {
            Err(Gone::Caller) => {
                tracing::info!(contact = ?self.contact, call_id = %self.dialog.call_id, "caller hung up")
            }
            Err(Gone::Failed(why)) => {
                tracing::warn!(contact = ?self.contact, call_id = %self.dialog.call_id, why, "call ended on an error");
                if self.answered {
                    let _ = self.hang_up().await;
                } else {
                    self.refuse(500, "Server Internal Error", why);
                }
            }
            Err(Gone::Transferred) => {
                tracing::info!(contact = ?self.contact, call_id = %self.dialog.call_id, "the transferred call ended")
            }
            Ok(()) => {}
        }
        if self.outbound.is_some() {
            self.cancel_outbound().await;
        }
        if let Some(contact) = self.contact.clone() {
            let rt = self.rt.clone();
            self.ep.follow(&contact, None);
            let _ = tokio::task::spawn_blocking(move || {
                let open = rt
                    .contacts()
                    .get(&contact)
                    .is_ok_and(|s| !matches!(s.status, Status::Ended { .. }));
                if open {
                    match rt.contacts().send(&contact, Event::Hangup) {
                        Ok(_) | Err(ContactError::Ended(_)) => {}
                        Err(e) => {
                            tracing::error!(contact, error = %e, "cannot tell the flow the caller hung up")
                        }
                    }
                }
            })
            .await;
        }
        self.leg.close();
        self.ep.unroute(&self.dialog.call_id);
        self.ep.stats.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Who hears whom between two bridged legs: each the other, or, when one side put the call
/// on hold, nothing relayed and hold music to the side left waiting. `true` when on hold.
pub(super) fn join(a: &Arc<Leg>, b: &Arc<Leg>, music: &Arc<Audio>) -> bool {
    let (a_held, b_held) = (a.on_hold(), b.on_hold());
    if !a_held && !b_held {
        a.relay_to(Some(b));
        b.relay_to(Some(a));
        return false;
    }
    a.relay_to(None);
    b.relay_to(None);
    if b_held && !a_held {
        a.set_idle(Some(music.clone()));
    }
    if a_held && !b_held {
        b.set_idle(Some(music.clone()));
    }
    true
}

/// Our answer to what a leg's peer negotiated: its law, its telephone-event payload type (ours
/// when it offered none), and the direction that answers its own.
pub(super) fn answer_sdp(leg: &Leg, version: u64) -> Vec<u8> {
    let remote = leg.remote();
    sdp::describe(
        leg.local(),
        &[leg.codec()],
        leg.dtmf().unwrap_or(DTMF_PT),
        version,
        remote.map_or(Direction::SendRecv, |m| m.direction.answer()),
    )
}

/// A leg we are about to place, with its media, its INVITE and what its media hears.
pub(super) type NewLeg = (Dialog, Arc<Leg>, Message, mpsc::UnboundedReceiver<Heard>);

impl Endpoint {
    /// Prepares a leg to `uri` (sent to `peer`, else to the URI's host): its dialog, an RTP
    /// leg, and the INVITE offering both G.711 laws and telephone-events. Nothing is sent.
    pub(super) async fn new_leg(&self, uri: &str, peer: Option<Peer>) -> Result<NewLeg, String> {
        let peer = match peer {
            Some(peer) => peer,
            None => {
                let host = message::host_port_of(uri)
                    .ok_or_else(|| format!("{uri:?} is not a SIP URI"))?;
                match tokio::net::lookup_host(host.as_str())
                    .await
                    .map(|mut a| a.next())
                {
                    Ok(Some(addr)) => Peer::Udp(addr),
                    _ => return Err(format!("cannot resolve {host}")),
                }
            }
        };
        let (heard_tx, heard) = mpsc::unbounded_channel();
        let leg = self.media.open(heard_tx).map_err(|e| e.to_string())?;
        let advertised = self.advertised;
        let mut dialog = Dialog {
            call_id: format!("{}@switchboard", message::token()),
            peer,
            local: format!("<sip:switchboard@{advertised}>;tag={}", message::token()),
            remote: format!("<{uri}>"),
            target: uri.to_string(),
            cseq: 0,
        };
        let offer = sdp::describe(
            leg.local(),
            &[Codec::Pcmu, Codec::Pcma],
            DTMF_PT,
            1,
            Direction::SendRecv,
        );
        let invite = dialog
            .request("INVITE", advertised)
            .with("Contact", format!("<sip:switchboard@{advertised}>"))
            .with_body("application/sdp", offer);
        Ok((dialog, leg, invite, heard))
    }

    /// A SIP URI for a transfer target: itself if it is one, else the number through the trunk.
    pub(super) fn target_uri(&self, target: &str) -> Result<String, String> {
        if target.starts_with("sip:") || target.starts_with("sips:") {
            return Ok(target.to_string());
        }
        let number = target.strip_prefix("tel:").unwrap_or(target);
        self.config
            .trunk
            .as_ref()
            .map(|trunk| format!("sip:{number}@{trunk}"))
            .ok_or_else(|| format!("a call to the number {number} needs a trunk: set sip.trunk"))
    }

    /// Answers a re-INVITE or UPDATE on `leg`'s dialog: the new offer (if any) is applied and
    /// answered, a broken one gets 488 and changes nothing. The 2xx of a re-INVITE is returned
    /// to be retransmitted until ACK.
    pub(super) fn renegotiate(
        &self,
        leg: &Leg,
        m: &Message,
        peer: Peer,
        version: u64,
        contact: &str,
    ) -> Option<Vec<u8>> {
        if !m.body.is_empty() {
            match sdp::negotiate(&m.body) {
                Ok(media) => leg.set_remote(media),
                Err(e) => {
                    let response = m
                        .response(488, "Not Acceptable Here", None)
                        .with_warning(&e.to_string());
                    self.respond(peer, m, response);
                    return None;
                }
            }
        }
        let response = m
            .response(200, "OK", None)
            .with("Contact", contact.to_string());
        // An UPDATE without an offer is a session refresh: no SDP in the answer.
        let response = if m.method() == "UPDATE" && m.body.is_empty() {
            response
        } else {
            response.with_body("application/sdp", answer_sdp(leg, version))
        };
        if m.method() != "INVITE" {
            self.respond(peer, m, response);
            return None;
        }
        let bytes = super::stamp(response).to_bytes();
        self.send(peer, bytes.clone());
        Some(bytes)
    }
}

/// A request in the transaction of our `invite` (CANCEL, or the ACK of a failure response):
/// its Via, From, Call-ID and CSeq number, with `to` as To.
pub(super) fn in_invite_transaction(invite: &Message, method: &str, to: &str) -> Message {
    let cseq = invite.cseq().map_or(1, |(n, _)| n);
    Message::request(method, invite.uri())
        .with("Via", invite.header("Via").unwrap_or_default())
        .with("Max-Forwards", "70")
        .with("From", invite.header("From").unwrap_or_default())
        .with("To", to)
        .with("Call-ID", invite.call_id())
        .with("CSeq", format!("{cseq} {method}"))
}

/// The digit of a SIP INFO (application/dtmf-relay or application/dtmf).
fn info_digit(m: &Message) -> Option<char> {
    let kind = m.header("Content-Type")?.to_ascii_lowercase();
    let body = std::str::from_utf8(&m.body).ok()?;
    let signal = if kind.starts_with("application/dtmf-relay") {
        body.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then(|| v.trim())
        })?
    } else if kind.starts_with("application/dtmf") {
        body.trim()
    } else {
        return None;
    };
    let mut chars = signal.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D') => Some(c),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_digits() {
        let info = |ct: &str, body: &str| {
            Message::request("INFO", "sip:a@b").with_body(ct, body.as_bytes().to_vec())
        };
        assert_eq!(
            info_digit(&info(
                "application/dtmf-relay",
                "Signal=2\r\nDuration=160\r\n"
            )),
            Some('2')
        );
        assert_eq!(info_digit(&info("application/dtmf", "#")), Some('#'));
        assert_eq!(
            info_digit(&info("application/dtmf-relay", "Signal=22")),
            None
        );
        assert_eq!(info_digit(&info("text/plain", "1")), None);
    }
}
