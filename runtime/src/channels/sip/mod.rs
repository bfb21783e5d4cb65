//! Voice over SIP: Switchboard is a SIP endpoint a trunk or a PBX sends calls to. Owns the
//! transports (UDP and TCP on one port), the registrar for agents' phones, and the routing
//! of messages to calls by Call-ID; each call is run by its own task ([`call`]). Media is in
//! [`rtp`], prompt audio in [`prompts`], wire formats in [`message`] and [`sdp`]. Flows run in
//! [`crate::sessions`], never here.

pub mod access;
pub mod call;
pub mod callback;
pub mod digest;
pub use switchboard_sip::{g711, message, sdp};
pub mod prompts;
pub mod rtp;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

use crate::config::SipConfig;
use crate::node::Node;
use crate::sessions::StepReport;
use message::{Message, ParseError};

/// How long a digest nonce may be answered.
const NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// Methods we answer.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, REFER, REGISTER";

/// Where a message came from, and how to answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A UDP source address.
    Udp(SocketAddr),
    /// A TCP connection, by its remote address.
    Tcp(SocketAddr),
}

impl Peer {
    /// The remote address.
    pub fn addr(self) -> SocketAddr {
        match self {
            Peer::Udp(a) | Peer::Tcp(a) => a,
        }
    }

    /// The Via transport token.
    pub fn transport(self) -> &'static str {
        match self {
            Peer::Udp(_) => "UDP",
            Peer::Tcp(_) => "TCP",
        }
    }
}

/// Which leg of a call a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegKind {
    /// The customer's call (we are the UAS).
    Caller,
    /// The call we placed to an agent or a transfer target (we are the UAC).
    Outbound,
}

/// What a call's task is told.
#[derive(Debug)]
pub enum Input {
    /// A SIP message for one of its legs.
    Sip(Message, Peer, LegKind),
    /// Its contact took a step outside the call (a task outcome, queue news).
    Report(StepReport),
}

/// A non-INVITE server transaction: Call-ID, CSeq number, method.
type TransactionKey = (String, u32, String);

#[derive(Clone)]
struct Route {
    tx: mpsc::UnboundedSender<Input>,
    kind: LegKind,
}

/// A phone registered for an agent.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The Contact URI it registered.
    pub uri: String,
    /// Where REGISTER came from (requests go there).
    pub peer: Peer,
    expires: Instant,
}

/// SIP counters.
#[derive(Default)]
pub struct SipStats {
    /// Calls offered (INVITEs that started a call).
    pub calls: AtomicU64,
    /// Calls in progress.
    pub active: AtomicU64,
    /// Calls refused (no flow, no codec, no port...).
    pub rejected: AtomicU64,
    /// Datagrams or stream messages that were not SIP.
    pub malformed: AtomicU64,
    /// Calls bridged to an agent or a transfer target.
    pub bridged: AtomicU64,
    /// New calls refused: from an address not in `sip.trusted`.
    pub untrusted: AtomicU64,
    /// New calls refused: over a source's rate.
    pub limited: AtomicU64,
}

/// The SIP endpoint.
pub struct Endpoint {
    rt: Weak<Node>,
    /// Prompt audio: rendered speech, uploaded recordings, hold music.
    pub prompts: Arc<prompts::Prompts>,
    /// Its configuration.
    pub config: SipConfig,
    udp: Arc<tokio::net::UdpSocket>,
    /// The address put in Via and Contact headers.
    pub advertised: SocketAddr,
    /// Media legs and the pacer.
    pub media: Arc<rtp::Media>,
    routes: Mutex<HashMap<String, Route>>,
    contacts: Mutex<HashMap<String, mpsc::UnboundedSender<Input>>>,
    /// Live registrations: a cache of the store's (`switchboard_core::phones`), written
    /// through, loaded at start.
    registrations: Mutex<HashMap<String, Registration>>,
    streams: Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>>>,
    /// Signs digest nonces: a nonce carries its time and signature, so none is kept here and
    /// one handed out before a restart (or by another node) is still checked.
    nonce_key: Vec<u8>,
    /// Final responses to non-INVITE requests, resent when the request is retransmitted.
    answered: Mutex<HashMap<TransactionKey, (Vec<u8>, Instant)>>,
    /// Counters.
    pub stats: SipStats,
    /// Set when the node drains: new calls are turned away, calls up go on.
    pub(super) draining: std::sync::atomic::AtomicBool,
    /// Who may start a call, and how often.
    access: access::Access,
    /// The user and HA1 every new call must prove, when inbound digest is on.
    inbound: Option<(String, String)>,
}

/// UDP and TCP sockets on the same port of `listen`. With port 0, the port UDP was given may
/// be taken for TCP by some other socket: then another port is tried.
async fn bind_both(
    listen: SocketAddr,
) -> anyhow::Result<(tokio::net::UdpSocket, tokio::net::TcpListener, SocketAddr)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let udp = tokio::net::UdpSocket::bind(listen)
            .await
            .with_context(|| format!("cannot listen for SIP on udp {listen}: is another SIP server using it? pass --sip 0.0.0.0:PORT"))?;
        let bound = udp.local_addr()?;
        match tokio::net::TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp, bound)),
            Err(e)
                if listen.port() == 0
                    && attempt < 20
                    && e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot listen for SIP on tcp {bound}: is another program using that port? pass --sip 0.0.0.0:PORT"
                )));
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The registrations kept in the store that have not lapsed.
fn restore_registrations(rt: &Node) -> anyhow::Result<HashMap<String, Registration>> {
    let now = now_ms();
    let mut out = HashMap::new();
    for (agent, phone) in crate::phones::live(rt.channel_store(), now)? {
        let Ok(addr) = phone.addr.parse() else {
            tracing::warn!(
                agent,
                addr = phone.addr,
                "a stored phone address does not parse; ignored"
            );
            continue;
        };
        // A TCP phone's connection did not survive the restart, and calls cannot reach it
        // until it registers again (then its `sip` attribute, if any, is used meanwhile).
        if phone.transport != "udp" {
            continue;
        }
        let peer = Peer::Udp(addr);
        let left = Duration::from_millis(phone.expires_ms.saturating_sub(now));
        out.insert(
            agent,
            Registration {
                uri: phone.uri,
                peer,
                expires: Instant::now() + left,
            },
        );
    }
    if !out.is_empty() {
        tracing::info!(
            phones = out.len(),
            "agent phones registered before the restart are reachable"
        );
    }
    Ok(out)
}

impl Endpoint {
    /// Binds UDP and TCP on `config.listen` and starts serving. Needs a Tokio runtime.
    pub async fn start(
        rt: &Arc<Node>,
        prompts: Arc<prompts::Prompts>,
    ) -> anyhow::Result<Arc<Endpoint>> {
        let config = rt.config().sip.clone();
        let listen = config
            .listen
            .context("SIP is off: set sip.listen (or --sip ADDRESS)")?;
        let (udp, tcp, bound) = bind_both(listen).await?;
        let ip = match (config.public_ip, bound.ip()) {
            (Some(ip), _) => ip,
            (None, ip) if ip.is_unspecified() => {
                tracing::warn!(
                    "sip.listen is a wildcard address and sip.public_ip is unset: advertising 127.0.0.1, which only local peers can reach"
                );
                IpAddr::from([127, 0, 0, 1])
            }
            (None, ip) => ip,
        };
        let access = access::Access::new(&config.trusted, config.invites_per_second)?;
        let inbound = match (&config.inbound_username, &config.inbound_password) {
            (Some(user), Some(password)) => Some((user.clone(), digest::ha1(user, password))),
            (None, None) => None,
            _ => anyhow::bail!(
                "sip.inbound_username and sip.inbound_password go together: set both to ask callers for digest credentials, or neither"
            ),
        };
        if !access.restricted() && !bound.ip().is_loopback() {
            tracing::warn!(
                "sip.trusted is empty: anyone who reaches {bound} may start a call; list your trunks' addresses"
            );
        }
        let media = rtp::Media::start(bound.ip(), ip, config.rtp_ports);
        let nonce_key = rt.desk().phone_nonce_key()?;
        let registrations = restore_registrations(rt)?;
        let endpoint = Arc::new(Endpoint {
            rt: Arc::downgrade(rt),
            prompts,
            config,
            udp: Arc::new(udp),
            advertised: SocketAddr::new(ip, bound.port()),
            media,
            routes: Mutex::new(HashMap::new()),
            contacts: Mutex::new(HashMap::new()),
            registrations: Mutex::new(registrations),
            nonce_key,
            streams: Mutex::new(HashMap::new()),
            answered: Mutex::new(HashMap::new()),
            stats: SipStats::default(),
            draining: std::sync::atomic::AtomicBool::new(false),
            access,
            inbound,
        });
        let following = Arc::downgrade(&endpoint);
        super::follow_reports(rt.contacts().subscribe(), move |report| {
            if let Some(endpoint) = following.upgrade() {
                endpoint.deliver(report);
            }
        });
        let sampled = Arc::downgrade(&endpoint);
        rt.metrics().sample(move |samples| {
            if let Some(endpoint) = sampled.upgrade() {
                endpoint.sample_metrics(samples);
            }
        });
        tokio::spawn(udp_loop(Arc::downgrade(&endpoint), endpoint.udp.clone()));
        tokio::spawn(tcp_loop(Arc::downgrade(&endpoint), tcp));
        callback::start(&endpoint);
        tracing::info!(address = %bound, advertised = %endpoint.advertised, "SIP listening (UDP and TCP)");
        Ok(endpoint)
    }

    /// The address SIP is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.udp.local_addr().unwrap_or(self.advertised)
    }

    /// Sends bytes to a peer (never blocks: a full socket buffer drops the datagram, which
    /// SIP retransmission covers).
    pub fn send(&self, peer: Peer, bytes: Vec<u8>) {
        match peer {
            Peer::Udp(addr) => {
                if let Err(e) = self.udp.try_send_to(&bytes, addr) {
                    tracing::debug!(%addr, error = %e, "SIP datagram not sent");
                }
            }
            Peer::Tcp(addr) => {
                let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
                match streams.get(&addr) {
                    Some(tx) => {
                        let _ = tx.send(bytes);
                    }
                    None => tracing::debug!(%addr, "SIP connection closed; message not sent"),
                }
            }
        }
    }

    /// Sends a response to `request`, remembering it for retransmissions of a non-INVITE.
    pub fn respond(&self, peer: Peer, request: &Message, response: Message) {
        let final_response = response.code() >= 200;
        let bytes = stamp(response).to_bytes();
        if request.method() != "INVITE" && final_response {
            let (cseq, method) = request.cseq().unwrap_or((0, ""));
            let mut answered = self.answered.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            answered.retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(32));
            answered.insert(
                (request.call_id().to_string(), cseq, method.to_string()),
                (bytes.clone(), now),
            );
        }
        self.send(peer, bytes);
    }

    /// Refuses a call with `code` and why (counted and logged).
    pub fn refuse_call(
        &self,
        peer: Peer,
        invite: &Message,
        code: u16,
        reason: &str,
        why: &str,
        tag: &str,
    ) {
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::info!(call_id = invite.call_id(), code, why, "call refused");
        self.respond(
            peer,
            invite,
            invite.response(code, reason, Some(tag)).with_warning(why),
        );
    }

    /// Turns new calls away (503 with Retry-After, so a trunk tries another node) while the
    /// calls up go on.
    pub fn drain(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Calls up on this node, ringing ones included (from INVITE to their end).
    pub fn active_calls(&self) -> usize {
        self.stats.active.load(Ordering::SeqCst) as usize
    }

    /// Tells a call that its contact took a step elsewhere (task outcomes, queue news).
    pub fn deliver(&self, report: &StepReport) {
        let contacts = self.contacts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = contacts.get(&report.contact) {
            let _ = tx.send(Input::Report(report.clone()));
        }
    }

    /// Routes messages with this Call-ID to a call task.
    pub fn route(&self, call_id: &str, tx: mpsc::UnboundedSender<Input>, kind: LegKind) {
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(call_id.to_string(), Route { tx, kind });
    }

    /// Stops routing a Call-ID.
    pub fn unroute(&self, call_id: &str) {
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(call_id);
    }

    /// Sends this contact's outside steps to a call task.
    pub fn follow(&self, contact: &str, tx: Option<mpsc::UnboundedSender<Input>>) {
        let mut contacts = self.contacts.lock().unwrap_or_else(|p| p.into_inner());
        match tx {
            Some(tx) => contacts.insert(contact.to_string(), tx),
            None => contacts.remove(contact),
        };
    }

    /// The phone of `agent`: a live registration, else the agent's `sip` attribute (a SIP URI).
    pub fn phone_of(&self, agent: &str) -> Option<(String, Option<Peer>)> {
        let registered = self
            .registrations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(agent)
            .filter(|r| r.expires > Instant::now())
            .cloned();
        if let Some(r) = registered {
            return Some((r.uri, Some(r.peer)));
        }
        let rt = self.rt.upgrade()?;
        let worker = rt.desk().agent(agent).ok()?;
        let uri = worker.pointer("/attributes/sip").and_then(|v| v.as_str())?;
        Some((uri.to_string(), None))
    }

    fn handle(self: &Arc<Self>, message: Message, peer: Peer) {
        tracing::trace!(peer = %peer.addr(), method = message.method(), code = message.code(), call_id = message.call_id(), "SIP in");
        let call_id = message.call_id().to_string();
        let route = self
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&call_id)
            .cloned();
        if !message.is_request() {
            match route {
                Some(route) => {
                    let _ = route.tx.send(Input::Sip(message, peer, route.kind));
                }
                None => tracing::debug!(call_id, "response for no known call; dropped"),
            }
            return;
        }
        if let Some((cseq, method)) = message.cseq()
            && method != "INVITE"
            && method != "ACK"
        {
            let key = (call_id.clone(), cseq, method.to_string());
            let resent = self
                .answered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .map(|(bytes, _)| bytes.clone());
            if let Some(bytes) = resent {
                self.send(peer, bytes);
                return;
            }
        }
        if let Some(route) = route {
            let _ = route.tx.send(Input::Sip(message, peer, route.kind));
            return;
        }
        match message.method() {
            "INVITE"
                if message.to_tag().is_none()
                    && self.draining.load(std::sync::atomic::Ordering::SeqCst) =>
            {
                let why = "this node is shutting down; try another";
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::info!(call_id = message.call_id(), code = 503, why, "call refused");
                self.respond(
                    peer,
                    &message,
                    message
                        .response(503, "Service Unavailable", Some(&message::token()))
                        .with("Retry-After", "5")
                        .with_warning(why),
                )
            }
            "INVITE" if message.to_tag().is_none() => {
                match self.access.admit(peer.addr().ip(), Instant::now()) {
                    Ok(()) if self.invite_authenticated(&message, peer) => {
                        call::incoming(self, message, peer)
                    }
                    Ok(()) => {}
                    Err(access::Refusal::Untrusted) => {
                        self.stats.untrusted.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(call_id = message.call_id(), peer = %peer.addr(), code = 403, "call refused: not a trusted source");
                        let response = message
                            .response(403, "Forbidden", Some(&message::token()))
                            .with_warning("this address may not start calls here (sip.trusted)");
                        self.respond(peer, &message, response);
                    }
                    Err(access::Refusal::TooMany) => {
                        if self
                            .stats
                            .limited
                            .fetch_add(1, Ordering::Relaxed)
                            .is_multiple_of(1000)
                        {
                            tracing::warn!(peer = %peer.addr(), "too many new calls from one address; turned away (sip.invites_per_second)");
                        }
                        let response = message
                            .response(503, "Service Unavailable", Some(&message::token()))
                            .with("Retry-After", "1")
                            .with_warning("too many new calls from this address");
                        self.respond(peer, &message, response);
                    }
                }
            }
            "INVITE" => self.respond(
                peer,
                &message,
                message.response(481, "Call/Transaction Does Not Exist", None),
            ),
            "OPTIONS" => self.respond(
                peer,
                &message,
                message
                    .response(200, "OK", Some(&message::token()))
                    .with("Accept", "application/sdp"),
            ),
            "REGISTER" => {
                // It writes the registration durably (an fsync): not on the receive loop.
                let endpoint = self.clone();
                tokio::task::spawn_blocking(move || endpoint.register(&message, peer));
            }
            "ACK" => {}
            "BYE" | "CANCEL" | "INFO" | "UPDATE" | "PRACK" | "REFER" | "NOTIFY" => self.respond(
                peer,
                &message,
                message.response(481, "Call/Transaction Does Not Exist", None),
            ),
            _ => self.respond(
                peer,
                &message,
                message.response(405, "Method Not Allowed", None),
            ),
        }
    }

    /// The registrar: an agent's phone registers under the agent's name
    /// (`sip:alice@switchboard`), and agent calls go to its Contact.
    fn register(&self, request: &Message, peer: Peer) {
        let aor = message::uri_of(request.header("To").unwrap_or_default());
        let agent = message::user_of(aor).to_string();
        let known = self
            .rt
            .upgrade()
            .is_some_and(|rt| rt.desk().agent(&agent).is_ok());
        if !known {
            let reason = "Not Found";
            self.respond(
                peer,
                request,
                request
                    .response(404, reason, Some(&message::token()))
                    .with_warning(&format!("no agent named {agent}: create the agent first (switchboard agent {agent} ...)")),
            );
            return;
        }
        if !self.authenticated(request, peer, &agent) {
            return;
        }
        let contact = request.header("Contact").unwrap_or_default();
        let expires = message::param(contact, "expires")
            .or_else(|| request.header("Expires"))
            .and_then(|e| e.trim().parse::<u64>().ok())
            .unwrap_or(3600);
        let Some(rt) = self.rt.upgrade() else { return };
        let unstored = |what: &str, e: crate::store::StoreError| {
            tracing::error!(agent, error = %e, "cannot {what} the agent's phone");
            let response = request.response(500, "Server Error", Some(&message::token()));
            self.respond(peer, request, response.with_warning(&e.to_string()));
        };
        let mut registrations = self.registrations.lock().unwrap_or_else(|p| p.into_inner());
        let mut response = request.response(200, "OK", Some(&message::token()));
        if contact.trim() == "*" || expires == 0 || contact.is_empty() {
            if !contact.is_empty() {
                if let Err(e) = crate::phones::remove(rt.channel_store(), &agent) {
                    return unstored("forget", e);
                }
                registrations.remove(&agent);
                tracing::info!(agent, "agent phone unregistered");
            } else if let Some(r) = registrations.get(&agent) {
                // A query: the current binding.
                response = response.with("Contact", format!("<{}>", r.uri));
            }
        } else {
            let expires = expires.clamp(60, 3600);
            let uri = message::uri_of(contact).to_string();
            let phone = crate::phones::Phone {
                uri: uri.clone(),
                transport: peer.transport().to_ascii_lowercase(),
                addr: peer.addr().to_string(),
                expires_ms: now_ms() + expires * 1000,
            };
            if let Err(e) = crate::phones::save(rt.channel_store(), &agent, &phone) {
                return unstored("keep", e);
            }
            registrations.insert(
                agent.clone(),
                Registration {
                    uri: uri.clone(),
                    peer,
                    expires: Instant::now() + Duration::from_secs(expires),
                },
            );
            tracing::info!(agent, contact = uri, expires, "agent phone registered");
            response = response
                .with("Contact", format!("<{uri}>;expires={expires}"))
                .with("Expires", expires.to_string());
        }
        drop(registrations);
        self.respond(peer, request, response);
    }

    /// Whether a REGISTER carries the agent's digest credentials (user: the agent's name,
    /// password: the agent's token); answers the challenge or the refusal itself when not.
    fn authenticated(&self, request: &Message, peer: Peer, agent: &str) -> bool {
        let ha1 = self
            .rt
            .upgrade()
            .and_then(|rt| rt.desk().sip_ha1(agent))
            .unwrap_or_default();
        let refuse = |why: &str| {
            tracing::warn!(agent, peer = %peer.addr(), why, "agent phone registration refused");
            self.respond(
                peer,
                request,
                request
                    .response(403, "Forbidden", Some(&message::token()))
                    .with_warning(why),
            );
            false
        };
        if ha1.is_empty() {
            return refuse(
                "this agent has no SIP credentials (created before SIP was enabled): recreate the agent to get a new token",
            );
        }
        match self.digest_answer(request, peer, agent, &ha1) {
            Some(true) => true,
            Some(false) => refuse(
                "wrong credentials: register with the agent's name as user and the agent's token as password",
            ),
            None => false,
        }
    }

    /// The request's answer to our digest challenge, checked against `user` and `ha1`:
    /// `Some(right)`, or `None` when it carried none or an expired nonce (then challenged,
    /// anew).
    fn digest_answer(&self, request: &Message, peer: Peer, user: &str, ha1: &str) -> Option<bool> {
        let credentials = request
            .header("Authorization")
            .or_else(|| request.header("Proxy-Authorization"))
            .and_then(digest::parse);
        let Some(credentials) = credentials else {
            self.challenge(request, peer, false);
            return None;
        };
        if !digest::nonce_is_fresh(
            &self.nonce_key,
            &credentials.nonce,
            now_ms() / 1000,
            NONCE_LIFETIME,
        ) {
            self.challenge(request, peer, true);
            return None;
        }
        Some(credentials.username == user && digest::verify(&credentials, request.method(), ha1))
    }

    /// Whether a new call carries the inbound digest credentials (always, when inbound digest
    /// is off); answers the challenge or the refusal itself when not.
    fn invite_authenticated(&self, request: &Message, peer: Peer) -> bool {
        let Some((user, ha1)) = &self.inbound else {
            return true;
        };
        match self.digest_answer(request, peer, user, ha1) {
            Some(true) => true,
            None => false,
            Some(false) => {
                self.stats.untrusted.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %peer.addr(), "call refused: wrong digest credentials");
                self.respond(
                    peer,
                    request,
                    request
                        .response(403, "Forbidden", Some(&message::token()))
                        .with_warning(
                            "wrong credentials: use the user and password of sip.inbound_username",
                        ),
                );
                false
            }
        }
    }

    /// 401 with a fresh nonce (`stale` when the phone answered an expired one).
    fn challenge(&self, request: &Message, peer: Peer, stale: bool) {
        let nonce = digest::nonce(&self.nonce_key, now_ms() / 1000);
        let stale = if stale { ", stale=true" } else { "" };
        self.respond(
            peer,
            request,
            request
                .response(401, "Unauthorized", Some(&message::token()))
                .with(
                    "WWW-Authenticate",
                    format!(
                        "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"{stale}",
                        digest::REALM
                    ),
                ),
        );
    }

    /// Registered agent phones: agent, contact URI, seconds left.
    pub fn registrations(&self) -> Vec<(String, String, u64)> {
        let now = Instant::now();
        let mut out: Vec<_> = self
            .registrations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, r)| r.expires > now)
            .map(|(a, r)| (a.clone(), r.uri.clone(), (r.expires - now).as_secs()))
            .collect();
        out.sort();
        out
    }

    /// Calls, registrations and media, read when metrics are scraped.
    fn sample_metrics(&self, samples: &mut crate::metrics::Samples) {
        let s = &self.stats;
        let m = &self.media.stats;
        let (p50, p99, max) = m
            .lateness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or((0, 0, 0), |h| {
                (h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max())
            });
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        samples.counter(
            "switchboard_sip_calls",
            "Calls offered over SIP",
            load(&s.calls),
        );
        samples.gauge(
            "switchboard_sip_calls_active",
            "Calls in progress",
            load(&s.active) as f64,
        );
        samples.counter(
            "switchboard_sip_calls_rejected",
            "Calls refused (no flow, no common codec, no RTP port)",
            load(&s.rejected),
        );
        samples.counter(
            "switchboard_sip_calls_bridged",
            "Calls bridged to an agent or a transfer target",
            load(&s.bridged),
        );
        samples.counter(
            "switchboard_sip_calls_untrusted",
            "New calls refused (403): the source is not in sip.trusted",
            load(&s.untrusted),
        );
        samples.counter(
            "switchboard_sip_calls_limited",
            "New calls refused (503): over sip.invites_per_second from one address",
            load(&s.limited),
        );
        samples.counter(
            "switchboard_sip_malformed",
            "Messages on the SIP port that were not SIP",
            load(&s.malformed),
        );
        samples.gauge(
            "switchboard_sip_registrations",
            "Agent phones registered",
            self.registrations().len() as f64,
        );
        samples.counter(
            "switchboard_prompt_failures",
            "Prompts that could not be rendered (the caller heard a beep)",
            self.prompts.failures.load(Ordering::Relaxed),
        );
        samples.gauge(
            "switchboard_rtp_legs_open",
            "Media legs with an open RTP socket",
            load(&m.open_legs) as f64,
        );
        samples.counter(
            "switchboard_rtp_packets_sent",
            "RTP packets sent (prompts and relayed)",
            load(&m.sent),
        );
        samples.counter(
            "switchboard_rtp_packets_received",
            "RTP packets accepted",
            load(&m.received),
        );
        samples.counter(
            "switchboard_rtp_packets_dropped",
            "Packets dropped: not RTP, or not from the signalled address",
            load(&m.dropped),
        );
        samples.counter(
            "switchboard_rtp_dtmf_digits",
            "Digits detected in RFC 4733 events",
            load(&m.digits),
        );
        samples.gauges(
            "switchboard_rtp_pacer_lateness_us",
            "How late the 20 ms media clock ticked, by quantile",
            vec![
                (crate::metrics::labels(&[("quantile", "0.5")]), p50 as f64),
                (crate::metrics::labels(&[("quantile", "0.99")]), p99 as f64),
            ],
        );
        samples.gauge(
            "switchboard_rtp_pacer_lateness_us_max",
            "The latest the 20 ms media clock ticked",
            max as f64,
        );
    }

    /// The node it serves, while the server runs.
    pub fn node(&self) -> Option<Arc<Node>> {
        self.rt.upgrade()
    }

    /// Hangs up the calls whose contacts have ended elsewhere: the cluster ends a node's
    /// calls (`node-lost`) when the node stays unreachable past its heartbeat, and a node that
    /// comes back after that must not keep talking on them. Returns how many.
    pub fn hang_up_ended(&self) -> usize {
        let Some(node) = self.node() else { return 0 };
        let contacts: Vec<String> = self
            .contacts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        let mut ended = 0;
        for contact in contacts {
            let Ok(session) = node.contacts().get(&contact) else {
                continue;
            };
            if matches!(session.status, crate::sessions::Status::Ended { .. }) {
                self.deliver(&StepReport {
                    contact: session.id,
                    flow: session.flow,
                    version: session.version,
                    step: session.steps,
                    actions: Vec::new(),
                    status: session.status,
                    awaiting: None,
                    fault: None,
                });
                ended += 1;
            }
        }
        ended
    }
}

/// What every response of ours carries.
pub fn stamp(response: Message) -> Message {
    response.with("Server", "Switchboard").with("Allow", ALLOW)
}

fn malformed(endpoint: &Endpoint, peer: Peer, error: &ParseError) {
    if *error != ParseError::Empty {
        endpoint.stats.malformed.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(peer = %peer.addr(), %error, "not a SIP message; dropped");
    }
}

async fn udp_loop(endpoint: Weak<Endpoint>, socket: Arc<tokio::net::UdpSocket>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let received = socket.recv_from(&mut buf).await;
        let Some(endpoint) = endpoint.upgrade() else {
            return;
        };
        let Ok((n, from)) = received else { continue };
        let peer = Peer::Udp(from);
        match Message::parse(&buf[..n]) {
            Ok(message) => endpoint.handle(message, peer),
            Err(e) => malformed(&endpoint, peer, &e),
        }
    }
}

async fn tcp_loop(endpoint: Weak<Endpoint>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            continue;
        };
        let Some(ep) = endpoint.upgrade() else { return };
        let (tx, rx) = mpsc::unbounded_channel();
        ep.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(from, tx);
        tokio::spawn(tcp_connection(endpoint.clone(), stream, from, rx));
    }
}

/// Most a SIP message over TCP may be.
const MAX_STREAM_MESSAGE: usize = 64 * 1024;

async fn tcp_connection(
    endpoint: Weak<Endpoint>,
    stream: tokio::net::TcpStream,
    from: SocketAddr,
    mut outgoing: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let (mut reader, mut writer) = stream.into_split();
    let write = tokio::spawn(async move {
        while let Some(bytes) = outgoing.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let peer = Peer::Tcp(from);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    'read: loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            // Keep-alive CRLFs between messages.
            let skip = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
            buf.drain(..skip);
            if buf.is_empty() {
                break;
            }
            let Some(endpoint) = endpoint.upgrade() else {
                break 'read;
            };
            match Message::parse(&buf) {
                Ok(message) => {
                    let used = message::head_end(&buf).unwrap_or(buf.len()) + message.body.len();
                    buf.drain(..used.min(buf.len()));
                    endpoint.handle(message, peer);
                }
                Err(ParseError::Incomplete) => break,
                Err(ParseError::Malformed(_)) if message::head_end(&buf).is_none() => {
                    if buf.len() > MAX_STREAM_MESSAGE {
                        malformed(&endpoint, peer, &ParseError::Malformed("too long".into()));
                        break 'read;
                    }
                    break;
                }
                Err(e) => {
                    // Framing is lost on a stream: close it.
                    malformed(&endpoint, peer, &e);
                    break 'read;
                }
            }
        }
    }
    if let Some(endpoint) = endpoint.upgrade() {
        endpoint
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&from);
    }
    write.abort();
}
