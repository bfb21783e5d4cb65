//! Driving real SIP peers: sipp scenarios assembled from parts (a caller who dials, presses
//! keys by RFC 4733 or SIP INFO and hangs up or waits for the hang-up; an agent phone that
//! registers and answers), a private network namespace for the whole test, and an RTP
//! endpoint owned by the test so it can hear (and speak) what crosses Switchboard.
//! Shared by the SIP feature tests and the SIP load benchmark.

#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Moves this test process (and what it starts afterwards) into a private network namespace
/// with only loopback, when it may (root); otherwise stays on the host's loopback. Returns
/// whether it did.
pub fn private_network() -> bool {
    // SAFETY: unshare only changes this thread's namespaces; no memory is touched.
    let moved = unsafe { libc_unshare(0x4000_0000) } == 0; // CLONE_NEWNET
    if moved {
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            up,
            "cannot bring loopback up in the new network namespace (is iproute2 installed?)"
        );
    } else {
        eprintln!("note: not allowed to create a network namespace; using the host's loopback");
    }
    moved
}

unsafe extern "C" {
    #[link_name = "unshare"]
    fn libc_unshare(flags: i32) -> i32;
}

/// A free UDP port on loopback (bound and released; good enough on a private namespace).
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback port for sipp's media: sipp binds it and the three above it (audio RTP and
/// RTCP, video RTP and RTCP), so all four must be free, not only the first (another sipp or
/// the server's call legs in the same test may hold one of them).
fn free_media_port() -> u16 {
    loop {
        let port = free_port();
        if port < 65530 && (1..4).all(|i| UdpSocket::bind(("127.0.0.1", port + i)).is_ok()) {
            return port;
        }
    }
}

/// An SDP body for a sipp message: media at `port` with payload types `formats` (and
/// telephone-event 101), `direction` as an attribute.
fn sdp(owner: &str, port: &str, formats: &str, direction: &str) -> String {
    sdp_with(owner, port, formats, 101, direction)
}

/// The same with telephone-event under payload type `dtmf`.
fn sdp_with(owner: &str, port: &str, formats: &str, dtmf: u8, direction: &str) -> String {
    format!(
        "Content-Type: application/sdp\nContent-Length: [len]\n\nv=0\no={owner} 1 1 IN IP4 [local_ip]\ns=-\nc=IN IP4 [media_ip]\nt=0 0\nm=audio {port} RTP/AVP {formats} {dtmf}\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\na=rtpmap:{dtmf} telephone-event/8000\na=fmtp:{dtmf} 0-15\na={direction}"
    )
}

const INVITE: &str = r#"
  <send retrans="500">
    <![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Caller" <sip:FROM@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:caller@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
SDP
    ]]>
  </send>
"#;

fn in_dialog(method: &str, cseq: u32, extra: &str) -> String {
    format!(
        r#"
  <send{}>
    <![CDATA[
{method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Caller" <sip:FROM@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: {cseq} {method}
Contact: <sip:caller@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
{extra}
    ]]>
  </send>
"#,
        if method == "ACK" {
            ""
        } else {
            " retrans=\"500\""
        }
    )
}

const OK_TO_LAST: &str = r#"
  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:caller@[local_ip]:[local_port];transport=[transport]>
Content-Length: 0
    ]]>
  </send>
"#;

/// A caller scenario, built step by step.
pub struct Caller {
    body: String,
    cseq: u32,
}

impl Caller {
    /// Dials, offering PCMU and telephone-event, receiving RTP on `rtp_port`; from `from`.
    pub fn dial(rtp_port: u16, from: &str) -> Caller {
        Self::dial_with(rtp_port, from, "0")
    }

    /// Dials offering the payload types `codecs` (such as "0", "8" or "18").
    pub fn dial_with(rtp_port: u16, from: &str, codecs: &str) -> Caller {
        Self::dial_offering(rtp_port, from, codecs, 101)
    }

    /// Dials offering `codecs` and telephone-event under payload type `dtmf`.
    pub fn dial_offering(rtp_port: u16, from: &str, codecs: &str, dtmf: u8) -> Caller {
        let offer = sdp_with("caller", &rtp_port.to_string(), codecs, dtmf, "sendrecv");
        let body = INVITE.replace("SDP", &offer).replace("FROM", from);
        Caller { body, cseq: 1 }
    }

    /// Expects the call to be answered, and ACKs.
    pub fn answered(mut self) -> Caller {
        self.body.push_str(
            r#"
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true"/>
"#,
        );
        self.body
            .push_str(&in_dialog("ACK", 1, "Content-Length: 0"));
        self
    }

    /// Expects the call to be refused with `code`, and ACKs.
    pub fn refused(mut self, code: u16) -> Caller {
        self.body.push_str(&format!(
            r#"
  <recv response="100" optional="true"/>
  <recv response="{code}"/>
"#
        ));
        self.body
            .push_str(&in_dialog("ACK", 1, "Content-Length: 0"));
        self
    }

    /// Waits.
    pub fn pause(mut self, ms: u64) -> Caller {
        self.body
            .push_str(&format!("  <pause milliseconds=\"{ms}\"/>\n"));
        self
    }

    /// Presses `digit` (0-9, star, pound) by RFC 4733 events (a capture played from sipp's
    /// media port).
    pub fn press_rfc4733(mut self, digit: &str) -> Caller {
        self.body.push_str(&format!(
            "  <nop><action><exec play_pcap_audio=\"/usr/share/sip-tester/dtmf_2833_{digit}.pcap\"/></action></nop>\n  <pause milliseconds=\"400\"/>\n"
        ));
        self
    }

    /// Presses `digit` by SIP INFO (application/dtmf-relay).
    pub fn press_info(mut self, digit: &str) -> Caller {
        self.cseq += 1;
        self.body.push_str(&in_dialog(
            "INFO",
            self.cseq,
            &format!(
                "Content-Type: application/dtmf-relay\nContent-Length: [len]\n\nSignal={digit}\nDuration=160"
            ),
        ));
        self.body.push_str("  <recv response=\"200\"/>\n");
        self
    }

    /// Re-INVITEs with media on `rtp_port` and direction `direction` (sendonly puts the call
    /// on hold, sendrecv takes it off), expects 200 and ACKs.
    pub fn reinvite(mut self, rtp_port: u16, direction: &str) -> Caller {
        self.cseq += 1;
        let offer = sdp("caller", &rtp_port.to_string(), "0", direction);
        self.body.push_str(&in_dialog("INVITE", self.cseq, &offer));
        self.body
            .push_str("  <recv response=\"100\" optional=\"true\"/>\n  <recv response=\"200\"/>\n");
        self.body
            .push_str(&in_dialog("ACK", self.cseq, "Content-Length: 0"));
        self
    }

    /// Hangs up and expects 200.
    pub fn hang_up(mut self) -> Caller {
        self.cseq += 1;
        self.body
            .push_str(&in_dialog("BYE", self.cseq, "Content-Length: 0"));
        self.body.push_str("  <recv response=\"200\"/>\n");
        self
    }

    /// Expects Switchboard to hang up within `timeout_ms`, and answers 200.
    pub fn expect_bye(mut self, timeout_ms: u64) -> Caller {
        self.body.push_str(&format!(
            "  <recv request=\"BYE\" timeout=\"{timeout_ms}\"/>\n"
        ));
        self.body.push_str(OK_TO_LAST);
        self
    }

    /// Writes the scenario into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.xml"));
        std::fs::write(
            &path,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<scenario name=\"{name}\">\n{}\n</scenario>\n",
                self.body
            ),
        )
        .unwrap();
        path
    }
}

/// What an agent's phone does once a call to it is up.
pub enum PhoneAct<'a> {
    /// Waits (talking, as far as the test's RTP is concerned).
    Talk(u64),
    /// Re-INVITEs with this direction (sendonly holds, sendrecv resumes), expects 200, ACKs.
    Reinvite(&'a str),
    /// An UPDATE without a body (a session refresh), expects 200.
    Update,
    /// A SIP INFO carrying this DTMF key, expects 200.
    Info(&'a str),
    /// A REFER to this URI (a blind transfer), expects 202 and a NOTIFY with a final status.
    Refer(&'a str),
}

/// An agent's phone, as two sipp scenarios run one after the other on the same port (sipp
/// maps messages to calls by Call-ID, so registering and answering are two "calls"): the
/// first registers as `agent` with its token as the digest password; the second answers Switchboard's INVITE with media on
/// `rtp_port`, talks for `talk_ms`, then hangs up (BYE) and expects 200.
pub fn agent_phone(
    dir: &Path,
    agent: &str,
    token: &str,
    rtp_port: u16,
    talk_ms: u64,
) -> (PathBuf, PathBuf) {
    agent_phone_doing(
        dir,
        agent,
        token,
        rtp_port,
        "0",
        &[PhoneAct::Talk(talk_ms)],
        true,
    )
}

/// The same phone answering with payload types `formats` (telephone-event 101), doing `acts`
/// once the call is up, then hanging up (`hangs_up`) or expecting Switchboard's BYE.
pub fn agent_phone_doing(
    dir: &Path,
    agent: &str,
    token: &str,
    rtp_port: u16,
    formats: &str,
    acts: &[PhoneAct<'_>],
    hangs_up: bool,
) -> (PathBuf, PathBuf) {
    let register_request = |cseq: u32, auth: &str| {
        format!(
            r#"
  <send retrans="500">
    <![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{agent}@[remote_ip]>;tag=[pid]reg[call_number]
To: <sip:{agent}@[remote_ip]>
Call-ID: [call_id]
CSeq: {cseq} REGISTER
Contact: <sip:{agent}@[local_ip]:[local_port]>
{auth}Expires: 600
Max-Forwards: 70
Content-Length: 0
    ]]>
  </send>
"#
        )
    };
    // Challenged first, then the agent's name and token as digest credentials.
    let register = format!(
        "{}  <recv response=\"401\" auth=\"true\"/>\n{}  <recv response=\"200\"/>\n",
        register_request(1, ""),
        register_request(
            2,
            &format!("[authentication username={agent} password={token}]\n")
        )
    );
    let answer_sdp = sdp("agent", &rtp_port.to_string(), formats, "sendrecv");
    let mut answer = format!(
        r#"
  <recv request="INVITE"/>
  <send>
    <![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]agent[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]agent[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:{agent}@[local_ip]:[local_port]>
{answer_sdp}
    ]]>
  </send>
  <recv request="ACK"/>
"#
    );
    // Requests of the phone in the dialog: right after Switchboard's ACK the dialog's two
    // ends are that ACK's To and From; after a response to our own request, its From and To.
    let mut cseq = 1;
    let mut after_our_request = false;
    let mut request = |answer: &mut String, method: &str, extra: &str, cseq: u32| {
        let (from, to) = if after_our_request {
            ("[last_From::]", "[last_To::]")
        } else {
            ("[last_To::]", "[last_From::]")
        };
        after_our_request = true;
        let retrans = if method == "ACK" {
            ""
        } else {
            " retrans=\"500\""
        };
        answer.push_str(&format!(
            r#"
  <send{retrans}>
    <![CDATA[
{method} sip:switchboard@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: {from}
To: {to}
[last_Call-ID:]
CSeq: {cseq} {method}
Contact: <sip:{agent}@[local_ip]:[local_port]>
Max-Forwards: 70
{extra}
    ]]>
  </send>
"#
        ));
    };
    for act in acts {
        match act {
            PhoneAct::Talk(ms) => {
                answer.push_str(&format!("  <pause milliseconds=\"{ms}\"/>\n"));
            }
            PhoneAct::Reinvite(direction) => {
                cseq += 1;
                let offer = sdp("agent", &rtp_port.to_string(), formats, direction);
                request(&mut answer, "INVITE", &offer, cseq);
                answer.push_str(
                    "  <recv response=\"100\" optional=\"true\"/>\n  <recv response=\"200\"/>\n",
                );
                request(&mut answer, "ACK", "Content-Length: 0", cseq);
            }
            PhoneAct::Update => {
                cseq += 1;
                request(&mut answer, "UPDATE", "Content-Length: 0", cseq);
                answer.push_str("  <recv response=\"200\"/>\n");
            }
            PhoneAct::Info(digit) => {
                cseq += 1;
                let body = format!(
                    "Content-Type: application/dtmf-relay\nContent-Length: [len]\n\nSignal={digit}\nDuration=160"
                );
                request(&mut answer, "INFO", &body, cseq);
                answer.push_str("  <recv response=\"200\"/>\n");
            }
            PhoneAct::Refer(target) => {
                cseq += 1;
                let extra = format!(
                    "Refer-To: <{target}>\nReferred-By: <sip:{agent}@[local_ip]:[local_port]>\nContent-Length: 0"
                );
                request(&mut answer, "REFER", &extra, cseq);
                answer.push_str("  <recv response=\"202\"/>\n");
                // How it went, by NOTIFY (RFC 3515): a final status line ends it.
                answer.push_str(&format!(
                    "  <recv request=\"NOTIFY\">\n    <action><ereg regexp=\"SIP/2.0 [2-6][0-9][0-9]\" search_in=\"body\" check_it=\"true\" assign_to=\"final\"/></action>\n  </recv>\n  <Reference variables=\"final\"/>\n{OK_TO_LAST}"
                ));
            }
        }
    }
    if hangs_up {
        cseq += 1;
        request(&mut answer, "BYE", "Content-Length: 0", cseq);
        answer.push_str("  <recv response=\"200\"/>\n");
    } else {
        answer.push_str(&format!(
            "  <recv request=\"BYE\" timeout=\"30000\"/>\n{OK_TO_LAST}"
        ));
    }
    let write = |name: &str, body: &str| {
        let path = dir.join(format!("{name}-{agent}.xml"));
        std::fs::write(
            &path,
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<scenario name=\"{name}\">\n{body}\n</scenario>\n"),
        )
        .unwrap();
        path
    };
    (write("register", &register), write("answer", &answer))
}

/// A sipp process.
pub struct Sipp {
    child: Child,
    name: String,
    dir: PathBuf,
}

/// Starts sipp on `scenario` against `server`, dialing `service`, with `extra` arguments
/// (such as `-m`, `-r`, `-l`). Its error log and screen go to `dir`.
pub fn sipp(
    dir: &Path,
    scenario: &Path,
    server: SocketAddr,
    service: &str,
    extra: &[&str],
) -> Sipp {
    let name = scenario.file_stem().unwrap().to_string_lossy().to_string();
    let port = free_port().to_string();
    let media = free_media_port().to_string();
    let has = |flag: &str| extra.contains(&flag);
    let mut args: Vec<String> = vec![
        server.to_string(),
        "-sf".into(),
        scenario.display().to_string(),
        "-s".into(),
        service.into(),
        "-i".into(),
        "127.0.0.1".into(),
        "-mi".into(),
        "127.0.0.1".into(),
        "-mp".into(),
        media,
        "-nostdin".into(),
        "-trace_err".into(),
        "-error_file".into(),
        dir.join(format!("{name}.errors.log")).display().to_string(),
        "-trace_screen".into(),
        "-screen_file".into(),
        dir.join(format!("{name}.screen.log")).display().to_string(),
        "-timeout".into(),
        "120s".into(),
    ];
    if !has("-p") {
        args.extend(["-p".into(), port]);
    }
    if !has("-m") {
        args.extend(["-m".into(), "1".into()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let child = Command::new("sipp")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp runs (Debian package sip-tester)");
    Sipp {
        child,
        name,
        dir: dir.to_path_buf(),
    }
}

impl Sipp {
    /// Waits for sipp to end; panics with its error log unless every call succeeded.
    pub fn succeeds(mut self) {
        let status = self.child.wait().unwrap();
        if !status.success() {
            panic!(
                "sipp {} failed ({status}):\n{}\n{}",
                self.name,
                self.log("errors"),
                self.log("screen")
            );
        }
    }

    /// Waits for sipp to end; its exit status.
    pub fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// One of its logs.
    pub fn log(&self, which: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.{which}.log", self.name)))
            .unwrap_or_default()
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test's end of a media stream: counts the RTP it receives (and how much of it is not
/// silence), and can send RTP too.
pub struct Ear {
    /// The socket.
    pub socket: Arc<UdpSocket>,
    /// Packets received.
    pub packets: Arc<AtomicU64>,
    /// Packets whose audio is not silence (mean |sample| above a floor).
    pub loud: Arc<AtomicU64>,
    /// Payload types seen.
    pub payload_types: Arc<Mutex<Vec<u8>>>,
    /// Packets with the marker bit (the start of each prompt).
    pub marker_bits: Arc<AtomicU64>,
    /// Where packets came from last.
    pub from: Arc<Mutex<Option<SocketAddr>>>,
    /// The audio of the loud packets, decoded, the latest second at most.
    heard: Arc<Mutex<std::collections::VecDeque<i16>>>,
    stop: Arc<AtomicBool>,
}

impl Ear {
    /// Listens on a free loopback port, decoding audio by its payload type.
    pub fn new() -> Ear {
        Self::listening(None)
    }

    /// Listens as a phone that negotiated only `law` (0: u-law, 8: A-law) does: every audio
    /// packet is decoded in that law, whatever it is labelled.
    pub fn only(law: u8) -> Ear {
        Self::listening(Some(law))
    }

    fn listening(law: Option<u8>) -> Ear {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let ear = Ear {
            socket: socket.clone(),
            packets: Arc::default(),
            loud: Arc::default(),
            payload_types: Arc::default(),
            marker_bits: Arc::default(),
            from: Arc::default(),
            heard: Arc::default(),
            stop: Arc::default(),
        };
        let heard = ear.heard.clone();
        let markers = ear.marker_bits.clone();
        let (packets, loud, types, from, stop) = (
            ear.packets.clone(),
            ear.loud.clone(),
            ear.payload_types.clone(),
            ear.from.clone(),
            ear.stop.clone(),
        );
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, addr)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if n < 12 || buf[0] >> 6 != 2 {
                    continue;
                }
                packets.fetch_add(1, Ordering::Relaxed);
                let pt = buf[1] & 0x7f;
                if buf[1] & 0x80 != 0 {
                    markers.fetch_add(1, Ordering::Relaxed);
                }
                {
                    let mut types = types.lock().unwrap();
                    if !types.contains(&pt) {
                        types.push(pt);
                    }
                }
                *from.lock().unwrap() = Some(addr);
                if pt == 0 || pt == 8 {
                    let payload = &buf[12..n];
                    let samples: Vec<i16> = payload
                        .iter()
                        .map(|&b| decode(law.unwrap_or(pt), b))
                        .collect();
                    let energy: f64 = samples.iter().map(|&s| f64::from(s).abs()).sum::<f64>()
                        / payload.len().max(1) as f64;
                    if energy > 200.0 {
                        loud.fetch_add(1, Ordering::Relaxed);
                        let mut heard = heard.lock().unwrap();
                        heard.extend(samples);
                        while heard.len() > 8000 {
                            heard.pop_front();
                        }
                    }
                }
            }
        });
        ear
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.socket.local_addr().unwrap().port()
    }

    /// Packets so far.
    pub fn count(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Talkspurts so far (packets with the marker bit).
    pub fn markers(&self) -> u64 {
        self.marker_bits.load(Ordering::Relaxed)
    }

    /// Loud packets so far.
    pub fn loud_count(&self) -> u64 {
        self.loud.load(Ordering::Relaxed)
    }

    /// Forgets the audio heard so far.
    pub fn forget(&self) {
        self.heard.lock().unwrap().clear();
    }

    /// How much of the loud audio heard since [`Ear::forget`] is a tone of `hz` (a multiple of
    /// 50 Hz): its share of the energy, from 0 (absent) to 1 (a pure tone), by the Goertzel
    /// algorithm over 20 ms frames.
    pub fn tone_share(&self, hz: f64) -> f64 {
        let heard: Vec<f64> = self
            .heard
            .lock()
            .unwrap()
            .iter()
            .map(|&s| f64::from(s))
            .collect();
        let (mut at_tone, mut total) = (0.0, 0.0);
        for frame in heard.chunks_exact(160) {
            let coefficient = 2.0 * (std::f64::consts::TAU * hz / 8000.0).cos();
            let (mut s1, mut s2) = (0.0, 0.0);
            for &x in frame {
                let s0 = x + coefficient * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            let power = s1 * s1 + s2 * s2 - coefficient * s1 * s2;
            at_tone += 2.0 * power / frame.len() as f64;
            total += frame.iter().map(|x| x * x).sum::<f64>();
        }
        if total == 0.0 { 0.0 } else { at_tone / total }
    }

    /// Sends `n` packets of a sine of `hz` in the law of payload type `pt` (0 or 8) to `to`,
    /// 20 ms apart.
    pub fn speak_tone(&self, to: SocketAddr, n: u16, pt: u8, hz: f64) {
        use switchboard::channels::sip::g711;
        for i in 0..n {
            let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x79];
            p[2..4].copy_from_slice(&i.to_be_bytes());
            p[4..8].copy_from_slice(&(u32::from(i) * 160).to_be_bytes());
            p.extend((0..160u32).map(|k| {
                let t = f64::from(u32::from(i) * 160 + k) / 8000.0;
                let s = (10000.0 * (std::f64::consts::TAU * hz * t).sin()) as i16;
                if pt == 0 {
                    g711::ulaw_encode(s)
                } else {
                    g711::alaw_encode(s)
                }
            }));
            self.socket.send_to(&p, to).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one key press as RFC 4733 telephone-events under payload type `pt`: three
    /// packets, then three end packets, as phones do.
    pub fn press(&self, to: SocketAddr, pt: u8, event: u8) {
        for (i, end) in [
            (0u16, false),
            (1, false),
            (2, false),
            (3, true),
            (4, true),
            (5, true),
        ] {
            let mut p = vec![
                0x80,
                pt | if i == 0 { 0x80 } else { 0 },
                0,
                0,
                0,
                0,
                0x3e,
                0x80,
                0x12,
                0x34,
                0x56,
                0x7a,
            ];
            p[2..4].copy_from_slice(&(1000 + i).to_be_bytes());
            let duration = 160 * (i.min(3) + 1);
            p.extend([event, if end { 0x8a } else { 0x0a }]);
            p.extend(duration.to_be_bytes());
            self.socket.send_to(&p, to).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `n` PCMU packets of a tone to `to`, 20 ms apart.
    pub fn speak(&self, to: SocketAddr, n: u16) {
        for i in 0..n {
            let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
            p[2..4].copy_from_slice(&i.to_be_bytes());
            p[4..8].copy_from_slice(&(u32::from(i) * 160).to_be_bytes());
            p.extend((0..160).map(|k| if k % 16 < 8 { 0x20 } else { 0xa0 }));
            self.socket.send_to(&p, to).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Ear {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn decode(pt: u8, byte: u8) -> i16 {
    use switchboard::channels::sip::g711;
    if pt == 0 {
        g711::ulaw_decode(byte)
    } else {
        g711::alaw_decode(byte)
    }
}

/// A phone that answers every INVITE with 486 Busy Here (and takes the ACK).
pub fn busy_phone(dir: &Path, name: &str) -> PathBuf {
    busy_after(dir, name, 0)
}

/// A phone that rings (180) for `ring_ms`, then answers 486 Busy Here.
pub fn busy_after(dir: &Path, name: &str, ring_ms: u64) -> PathBuf {
    let path = dir.join(format!("busy-{name}.xml"));
    std::fs::write(
        &path,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<scenario name="busy">
  <recv request="INVITE"/>
RINGING  <pause milliseconds="RING"/>
  <send>
    <![CDATA[
SIP/2.0 486 Busy Here
[last_Via:]
[last_From:]
[last_To:];tag=[pid]busy[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
    ]]>
  </send>
  <recv request="ACK"/>
</scenario>
"#
        .replace("RINGING", RINGING)
        .replace("RING", &ring_ms.to_string()),
    )
    .unwrap();
    path
}

/// A phone that rings (180) for `ring_ms` and never answers (its scenario then ends).
pub fn rings_unanswered(dir: &Path, name: &str, ring_ms: u64) -> PathBuf {
    let path = dir.join(format!("rings-{name}.xml"));
    let scenario = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<scenario name=\"rings\">\n  <recv request=\"INVITE\"/>\n{RINGING}  <pause milliseconds=\"{ring_ms}\"/>\n</scenario>\n"
    );
    std::fs::write(&path, scenario).unwrap();
    path
}

/// A phone's 180 Ringing to the INVITE just received.
const RINGING: &str = r#"  <send>
    <![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]busy[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
    ]]>
  </send>
"#;
