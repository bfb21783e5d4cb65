//! RTP (RFC 3550) for calls: one UDP socket per call leg, prompts sent at 20 ms pacing by one
//! pacer thread for every leg, packets received by one task per leg. Received RFC 4733
//! telephone-events become digits; while two legs are bridged, each relays what it receives
//! to the other (transcoded between G.711 laws and with telephone-events renumbered when the
//! legs negotiated differently). Audio is pre-encoded when a prompt is rendered: the pacer
//! only copies bytes.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::sdp::{Codec, Media as Remote};
pub use switchboard_sip::rtp::{DtmfDetector, Packet, event_digit, header as rtp_header, parse};

/// Samples per 20 ms frame at 8 kHz.
pub const FRAME: usize = 160;

/// Audio ready to send: the same sound in both G.711 laws.
#[derive(Debug)]
pub struct Audio {
    /// u-law bytes.
    pub pcmu: Vec<u8>,
    /// A-law bytes.
    pub pcma: Vec<u8>,
}

impl Audio {
    /// From 8 kHz 16-bit samples.
    pub fn from_pcm(samples: &[i16]) -> Audio {
        Audio {
            pcmu: samples
                .iter()
                .map(|&s| super::g711::ulaw_encode(s))
                .collect(),
            pcma: samples
                .iter()
                .map(|&s| super::g711::alaw_encode(s))
                .collect(),
        }
    }

    fn bytes(&self, codec: Codec) -> &[u8] {
        match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        }
    }

    /// Length in milliseconds.
    pub fn millis(&self) -> u64 {
        self.pcmu.len() as u64 / 8
    }
}

/// What a leg's receive task reports to its call.
#[derive(Debug, Clone, PartialEq)]
pub enum Heard {
    /// A digit (RFC 4733), once per press.
    Digit(char),
    /// The prompt queue ran empty (token of the last item played).
    Played(u64),
}

struct Playout {
    items: VecDeque<(Arc<Audio>, u64)>,
    /// Byte offset into the front item.
    offset: usize,
    /// Loop this audio when nothing else is queued (hold music).
    idle: Option<Arc<Audio>>,
    idle_offset: usize,
    seq: u16,
    timestamp: u32,
    /// The next packet starts a talkspurt.
    marker: bool,
}

/// Counters the whole server shares (metrics).
#[derive(Default)]
pub struct MediaStats {
    /// Legs with an open socket.
    pub open_legs: AtomicU64,
    /// RTP packets sent.
    pub sent: AtomicU64,
    /// RTP packets received and accepted.
    pub received: AtomicU64,
    /// Packets dropped: from an unexpected address, or not RTP.
    pub dropped: AtomicU64,
    /// DTMF digits detected from RTP.
    pub digits: AtomicU64,
    /// Pacer lateness, microseconds (how late each 20 ms tick ran).
    pub lateness: Mutex<Option<hdrhistogram::Histogram<u64>>>,
}

/// The far end of a leg, as negotiated, and the bridged leg if any.
#[derive(Default)]
struct PeerState {
    remote: Option<Remote>,
    relay: Weak<Leg>,
}

/// One call leg's media.
pub struct Leg {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    /// Where media goes and which leg it is relayed to: read together on every packet and
    /// tick, so one lock.
    peer: Mutex<PeerState>,
    ssrc: u32,
    playout: Mutex<Playout>,
    heard: mpsc::UnboundedSender<Heard>,
    closed: AtomicBool,
    stats: Arc<MediaStats>,
    receiver: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Leg {
    /// The local address (for SDP).
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// Where media goes, as negotiated.
    pub fn set_remote(&self, media: Remote) {
        self.peer_state().remote = Some(media);
    }

    /// The negotiated codec.
    pub fn codec(&self) -> Codec {
        self.peer_state().remote.map_or(Codec::Pcmu, |m| m.codec)
    }

    /// What the peer negotiated, once it has.
    pub fn remote(&self) -> Option<Remote> {
        self.peer_state().remote
    }

    /// The peer's telephone-event payload type, when it has one.
    pub fn dtmf(&self) -> Option<u8> {
        self.peer_state().remote.and_then(|m| m.dtmf)
    }

    /// Whether the peer asked not to receive (it put us on hold).
    pub fn on_hold(&self) -> bool {
        self.peer_state().remote.is_some_and(|m| m.on_hold)
    }

    /// Queues audio; `token` is reported (as [`Heard::Played`]) when the queue has played out
    /// after it.
    pub fn play(&self, audio: Arc<Audio>, token: u64) {
        let mut p = self.playout.lock().unwrap_or_else(|p| p.into_inner());
        if p.items.is_empty() {
            p.marker = true;
        }
        p.items.push_back((audio, token));
    }

    /// Stops whatever is playing (barge-in, a new step).
    pub fn stop(&self) {
        let mut p = self.playout.lock().unwrap_or_else(|p| p.into_inner());
        p.items.clear();
        p.offset = 0;
    }

    /// Loops `audio` whenever nothing else plays (hold music); `None` for silence.
    pub fn set_idle(&self, audio: Option<Arc<Audio>>) {
        let mut p = self.playout.lock().unwrap_or_else(|p| p.into_inner());
        p.idle = audio;
        p.idle_offset = 0;
    }

    /// Relays what this leg receives to `other` (both directions are set by the caller).
    pub fn relay_to(&self, other: Option<&Arc<Leg>>) {
        self.peer_state().relay = other.map(Arc::downgrade).unwrap_or_default();
        self.stop();
        self.set_idle(None);
    }

    fn peer_state(&self) -> std::sync::MutexGuard<'_, PeerState> {
        self.peer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where media goes, and the leg it is relayed to while bridged.
    fn peer(&self) -> (Option<Remote>, Option<Arc<Leg>>) {
        let state = self.peer_state();
        (state.remote, state.relay.upgrade())
    }

    /// Closes the socket: the receive task ends and the pacer forgets the leg.
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            if let Some(task) = self
                .receiver
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
            {
                task.abort();
            }
            self.stats.open_legs.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// One 20 ms tick: sends the next frame, if any.
    fn tick(&self) {
        let (remote, relay) = self.peer();
        let (Some(media), None) = (remote, relay) else {
            return;
        };
        let mut frame = [0u8; 12 + FRAME];
        let mut finished = None;
        let marker;
        {
            let mut p = self.playout.lock().unwrap_or_else(|p| p.into_inner());
            let silence = match media.codec {
                Codec::Pcmu => 0xff,
                Codec::Pcma => 0xd5,
            };
            let mut filled = 0;
            let mut any = false;
            while filled < FRAME {
                let offset = p.offset;
                let Some((audio, token)) = p.items.front() else {
                    break;
                };
                let (audio, token) = (audio.clone(), *token);
                any = true;
                let bytes = audio.bytes(media.codec);
                let n = (bytes.len() - offset.min(bytes.len())).min(FRAME - filled);
                frame[12 + filled..12 + filled + n].copy_from_slice(&bytes[offset..offset + n]);
                filled += n;
                p.offset += n;
                if p.offset >= bytes.len() {
                    p.items.pop_front();
                    p.offset = 0;
                    if p.items.is_empty() {
                        finished = Some(token);
                    }
                }
            }
            if !any {
                let Some(idle) = p.idle.clone() else {
                    return;
                };
                let bytes = idle.bytes(media.codec);
                if bytes.is_empty() {
                    return;
                }
                while filled < FRAME {
                    let offset = p.idle_offset % bytes.len();
                    let n = (bytes.len() - offset).min(FRAME - filled);
                    frame[12 + filled..12 + filled + n].copy_from_slice(&bytes[offset..offset + n]);
                    filled += n;
                    p.idle_offset = (offset + n) % bytes.len();
                }
            }
            frame[12 + filled..].fill(silence);
            marker = std::mem::take(&mut p.marker);
            let header = rtp_header(
                media.codec.payload_type(),
                marker,
                p.seq,
                p.timestamp,
                self.ssrc,
            );
            frame[..12].copy_from_slice(&header);
            p.seq = p.seq.wrapping_add(1);
            p.timestamp = p.timestamp.wrapping_add(FRAME as u32);
        }
        // On hold the prompt still advances (the flow's timing does not stop), unheard.
        if !media.on_hold && self.socket.send_to(&frame, media.addr).is_ok() {
            self.stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(token) = finished {
            let _ = self.heard.send(Heard::Played(token));
        }
    }
}

impl Drop for Leg {
    fn drop(&mut self) {
        self.close();
    }
}

/// Allocates legs and paces every leg's outgoing audio.
pub struct Media {
    ip: IpAddr,
    advertised: IpAddr,
    ports: (u16, u16),
    next: Mutex<u16>,
    legs: Mutex<Vec<Weak<Leg>>>,
    /// Shared counters.
    pub stats: Arc<MediaStats>,
}

impl Media {
    /// Media bound on `ip` and described in SDP as `advertised`, RTP ports from the inclusive
    /// range `ports` (even ports only). Starts the pacer thread.
    pub fn start(ip: IpAddr, advertised: IpAddr, ports: (u16, u16)) -> Arc<Media> {
        let media = Arc::new(Media {
            ip,
            advertised,
            ports,
            next: Mutex::new(ports.0 & !1),
            legs: Mutex::new(Vec::new()),
            stats: Arc::new(MediaStats {
                lateness: Mutex::new(hdrhistogram::Histogram::new_with_max(10_000_000, 3).ok()),
                ..MediaStats::default()
            }),
        });
        let weak = Arc::downgrade(&media);
        std::thread::Builder::new()
            .name("rtp-pacer".into())
            .spawn(move || pace(weak))
            .expect("a thread can be started");
        media
    }

    /// A new leg with its own socket; what it hears goes to `heard`. `None` when every port of
    /// the range is taken.
    pub fn open(&self, heard: mpsc::UnboundedSender<Heard>) -> std::io::Result<Arc<Leg>> {
        let span = u32::from(self.ports.1.saturating_sub(self.ports.0)) / 2 + 1;
        let mut last_error = None;
        for _ in 0..span {
            let port = {
                let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
                let port = *next;
                *next = if port.saturating_add(2) > self.ports.1 {
                    self.ports.0 & !1
                } else {
                    port + 2
                };
                port
            };
            match UdpSocket::bind(SocketAddr::new(self.ip, port)) {
                Ok(socket) => return self.leg(socket, heard),
                Err(e) => last_error = Some(e),
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "no free RTP port in {}-{} ({}); widen sip.rtp_ports",
                self.ports.0,
                self.ports.1,
                last_error.map(|e| e.to_string()).unwrap_or_default()
            ),
        ))
    }

    fn leg(
        &self,
        socket: UdpSocket,
        heard: mpsc::UnboundedSender<Heard>,
    ) -> std::io::Result<Arc<Leg>> {
        socket.set_nonblocking(true)?;
        let local = SocketAddr::new(self.advertised, socket.local_addr()?.port());
        let socket = Arc::new(socket);
        let receive = tokio::net::UdpSocket::from_std(socket.try_clone()?)?;
        let leg = Arc::new(Leg {
            socket,
            local,
            peer: Mutex::new(PeerState::default()),
            ssrc: rand::random(),
            playout: Mutex::new(Playout {
                items: VecDeque::new(),
                offset: 0,
                idle: None,
                idle_offset: 0,
                seq: rand::random(),
                timestamp: rand::random(),
                marker: true,
            }),
            heard,
            closed: AtomicBool::new(false),
            stats: self.stats.clone(),
            receiver: Mutex::new(None),
        });
        self.stats.open_legs.fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn(receive_loop(Arc::downgrade(&leg), receive));
        *leg.receiver.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        self.legs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(&leg));
        Ok(leg)
    }
}

/// What a packet received on a leg whose peer negotiated `from` becomes on a bridged leg whose
/// peer negotiated `to`, written into `out`: audio in `to`'s law, telephone-events under
/// `to`'s payload type, sequence, timestamp, SSRC and marker kept. `false` for what `to` did
/// not negotiate (comfort noise, another codec, events it cannot receive): not relayed.
fn relayed(packet: &Packet<'_>, raw: &[u8], from: &Remote, to: &Remote, out: &mut Vec<u8>) -> bool {
    let pt = if packet.pt == from.codec.payload_type() {
        to.codec.payload_type()
    } else if Some(packet.pt) == from.dtmf {
        match to.dtmf {
            Some(pt) => pt,
            None => return false,
        }
    } else {
        return false;
    };
    out.clear();
    out.push(0x80);
    out.push(pt | if packet.marker { 0x80 } else { 0 });
    out.extend_from_slice(&raw[2..12]);
    match (packet.pt == from.codec.payload_type(), from.codec, to.codec) {
        (true, Codec::Pcmu, Codec::Pcma) => {
            out.extend(packet.payload.iter().map(|&b| super::g711::ulaw_to_alaw(b)))
        }
        (true, Codec::Pcma, Codec::Pcmu) => {
            out.extend(packet.payload.iter().map(|&b| super::g711::alaw_to_ulaw(b)))
        }
        _ => out.extend_from_slice(packet.payload),
    }
    true
}

async fn receive_loop(weak: Weak<Leg>, socket: tokio::net::UdpSocket) {
    let mut buf = vec![0u8; 2048];
    let mut out = Vec::with_capacity(2048);
    let mut dtmf = DtmfDetector::default();
    loop {
        let received = socket.recv_from(&mut buf).await;
        let Some(leg) = weak.upgrade() else { return };
        let Ok((n, from)) = received else {
            continue;
        };
        let (remote, relay) = leg.peer();
        // Media is accepted from the address the peer signalled (any port: peers often send
        // from another port than they receive on); anything else is dropped.
        let expected = remote.is_some_and(|m| m.addr.ip() == from.ip());
        let Some(packet) = parse(&buf[..n]).filter(|_| expected) else {
            leg.stats.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        leg.stats.received.fetch_add(1, Ordering::Relaxed);
        if let Some(other) = relay {
            if let (Some(from), Some(to)) = (remote, other.peer().0)
                && !to.on_hold
                && relayed(&packet, &buf[..n], &from, &to, &mut out)
                && other.socket.send_to(&out, to.addr).is_ok()
            {
                leg.stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        let dtmf_pt = remote.and_then(|m| m.dtmf);
        if Some(packet.pt) == dtmf_pt
            && let Some(digit) = dtmf.feed(packet.timestamp, packet.payload, Instant::now())
        {
            leg.stats.digits.fetch_add(1, Ordering::Relaxed);
            let _ = leg.heard.send(Heard::Digit(digit));
        }
    }
}

fn pace(media: Weak<Media>) {
    let period = Duration::from_millis(20);
    let mut next = Instant::now() + period;
    loop {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        let Some(media) = media.upgrade() else { return };
        let late = Instant::now().saturating_duration_since(next);
        if let Some(h) = media
            .stats
            .lateness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            let _ = h.record(late.as_micros() as u64);
        }
        let legs: Vec<Arc<Leg>> = {
            let mut legs = media.legs.lock().unwrap_or_else(|p| p.into_inner());
            legs.retain(|l| {
                l.upgrade()
                    .is_some_and(|l| !l.closed.load(Ordering::Relaxed))
            });
            legs.iter().filter_map(Weak::upgrade).collect()
        };
        for leg in &legs {
            leg.tick();
        }
        next += period;
        // After a stall (a suspended process), start again from now rather than bursting.
        if Instant::now() > next + period * 5 {
            next = Instant::now() + period;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rtp_and_refuses_what_is_not() {
        let mut p = rtp_header(101, true, 7, 1234, 9).to_vec();
        p.extend_from_slice(&[1, 0x80, 0, 160]);
        let packet = parse(&p).unwrap();
        assert_eq!(
            (packet.pt, packet.marker, packet.timestamp),
            (101, true, 1234)
        );
        assert_eq!(packet.payload, &[1, 0x80, 0, 160]);
        assert!(parse(b"short").is_none());
        assert!(parse(&[0u8; 20]).is_none());
        // Padding longer than the packet.
        let mut padded = rtp_header(0, false, 1, 1, 1).to_vec();
        padded[0] |= 0x20;
        padded.push(200);
        assert!(parse(&padded).is_none());
    }

    #[test]
    fn a_bridge_transcodes_between_laws_and_renumbers_events() {
        let remote = |codec, dtmf| Remote {
            addr: "127.0.0.1:4000".parse().unwrap(),
            codec,
            dtmf,
            on_hold: false,
            direction: super::super::sdp::Direction::SendRecv,
        };
        let alaw_caller = remote(Codec::Pcma, Some(96));
        let ulaw_phone = remote(Codec::Pcmu, Some(101));
        let plain_phone = remote(Codec::Pcmu, None);
        let mut out = Vec::new();

        let mut audio = rtp_header(8, true, 7, 1600, 42).to_vec();
        audio.extend([0xd5, 0xaa, 0x2a]);
        let packet = parse(&audio).unwrap();
        assert!(relayed(
            &packet,
            &audio,
            &alaw_caller,
            &ulaw_phone,
            &mut out
        ));
        assert_eq!(out[..12], rtp_header(0, true, 7, 1600, 42));
        let expected: Vec<u8> = [0xd5u8, 0xaa, 0x2a]
            .iter()
            .map(|&b| super::super::g711::alaw_to_ulaw(b))
            .collect();
        assert_eq!(out[12..], expected);
        // The same law both sides: the payload is untouched.
        assert!(relayed(
            &packet,
            &audio,
            &alaw_caller,
            &alaw_caller,
            &mut out
        ));
        assert_eq!(out, audio);

        let mut event = rtp_header(96, false, 8, 1760, 42).to_vec();
        event.extend([1, 0x8a, 3, 0]);
        let packet = parse(&event).unwrap();
        assert!(relayed(
            &packet,
            &event,
            &alaw_caller,
            &ulaw_phone,
            &mut out
        ));
        assert_eq!(out[1], 101);
        assert_eq!(out[12..], [1, 0x8a, 3, 0]);
        assert!(!relayed(
            &packet,
            &event,
            &alaw_caller,
            &plain_phone,
            &mut out
        ));

        // Comfort noise (13) was not negotiated: not relayed.
        let mut noise = rtp_header(13, false, 9, 1920, 42).to_vec();
        noise.push(40);
        let packet = parse(&noise).unwrap();
        assert!(!relayed(
            &packet,
            &noise,
            &alaw_caller,
            &ulaw_phone,
            &mut out
        ));
    }

    #[test]
    fn one_press_is_one_digit() {
        let mut d = DtmfDetector::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(d.feed(100, &[2, 0x0a, 0, 80], t0), None);
        assert_eq!(d.feed(100, &[2, 0x8a, 3, 0], t0 + ms(60)), Some('2'));
        assert_eq!(d.feed(100, &[2, 0x8a, 3, 0], t0 + ms(61)), None);
        assert_eq!(d.feed(100, &[2, 0x8a, 3, 0], t0 + ms(62)), None);
        // The same capture replayed a second later is a second press.
        assert_eq!(d.feed(100, &[2, 0x8a, 3, 0], t0 + ms(1200)), Some('2'));
        assert_eq!(d.feed(900, &[11, 0x8a, 3, 0], t0 + ms(1300)), Some('#'));
        assert_eq!(d.feed(901, &[42], t0 + ms(1400)), None);
    }
}
