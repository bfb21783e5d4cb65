//! Voice over SIP, end to end: sipp calls the real server in a private network namespace; the
//! test owns the callers' (and the agent phone's) RTP ports, so it hears what Switchboard
//! plays and can speak through a bridge.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::sipp::{Caller, Ear, agent_phone, private_network, sipp};
use crate::support::{Server, agent, sip_ivr_server};

const NUMBER: &str = "+15550100";

fn sip_addr(server: &Server) -> SocketAddr {
    server.sip.unwrap()
}

fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (at most 5 s) for `count` to reach `at_least` and returns it, so a relay running
/// late on a busy machine is not taken for packets lost; the caller asserts on the count.
fn wait_for_count(count: impl Fn() -> u64, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = count();
        if now >= at_least || Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (at most 15 s) until `ear` has heard nothing loud for half a second: a prompt or
/// hold music has ended.
fn wait_until_quiet(what: &str, ear: &Ear) {
    let mut last = (ear.loud_count(), Instant::now());
    wait_until(what, 15, || {
        let now = ear.loud_count();
        if now != last.0 {
            last = (now, Instant::now());
        }
        last.1.elapsed() > Duration::from_millis(500)
    });
}

/// The most recent contact.
fn last_contact(server: &Server) -> Value {
    let (status, contacts) = server.call("GET", "/v1/contacts?limit=1", None);
    assert_eq!(status, 200, "{contacts}");
    contacts[0].clone()
}

/// The most recent contact once it has ended: a caller's BYE is answered before the flow's
/// `hangup` step is committed, so a test that reads the trace after its call waits for it.
fn ended_contact(server: &Server) -> Value {
    wait_until("the last contact to end", 10, || {
        last_contact(server)["status"]["state"] == "ended"
    });
    last_contact(server)
}

fn trace(server: &Server, contact: &Value) -> Vec<Value> {
    let id = contact["id"].as_str().unwrap();
    let (status, trace) = server.call("GET", &format!("/v1/contacts/{id}/trace"), None);
    assert_eq!(status, 200, "{trace}");
    trace.as_array().unwrap().clone()
}

fn events(trace: &[Value]) -> Vec<String> {
    trace
        .iter()
        .map(|t| {
            let e = &t["event"];
            match e["type"].as_str().unwrap() {
                "input" => format!("input:{}", e["digits"].as_str().unwrap()),
                other => other.to_string(),
            }
        })
        .collect()
}

fn enqueued(trace: &[Value]) -> Vec<String> {
    trace
        .iter()
        .flat_map(|t| t["actions"].as_array().unwrap().clone())
        .filter(|a| a["type"] == "enqueue")
        .map(|a| a["queue"].as_str().unwrap().to_string())
        .collect()
}

fn metric(server: &Server, name: &str) -> f64 {
    server.metric(name)
}

/// Waits until the call is over on Switchboard's side: no call, no open RTP socket.
fn all_calls_over(server: &Server) {
    wait_until("every call and RTP socket to close", 10, || {
        metric(server, "switchboard_sip_calls_active") == 0.0
            && metric(server, "switchboard_rtp_legs_open") == 0.0
    });
}

#[test]
fn pressing_1_by_rfc4733_reaches_sales_and_the_caller_hears_the_prompts() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(dir.path(), &[]);
    let ear = Ear::new();
    let scenario = Caller::dial(ear.port(), "+15551234")
        .answered()
        .pause(2500)
        .press_rfc4733("1")
        .pause(2500)
        .hang_up()
        .write(dir.path(), "press-1");
    sipp(dir.path(), &scenario, sip_addr(&server), NUMBER, &[]).succeeds();

    let contact = ended_contact(&server);
    let trace = trace(&server, &contact);
    assert_eq!(
        events(&trace),
        ["started", "input:1", "hangup"],
        "{trace:#?}"
    );
    assert_eq!(enqueued(&trace), ["sales"]);
    assert_eq!(contact["channel"], "voice");
    assert_eq!(contact["from"], "+15551234");
    assert_eq!(contact["status"]["state"], "ended");
    assert_eq!(contact["status"]["reason"], "customer-hangup");
    // 5 s of a call: the greeting, the menu (cut by the key), "connecting you to sales", hold
    // music, all at 50 packets a second, and not silence.
    let heard = ear.count();
    assert!(heard >= 150, "the caller heard {heard} RTP packets");
    assert!(
        ear.loud_count() >= 100,
        "only {} of {heard} packets carried sound",
        ear.loud_count()
    );
    assert_eq!(*ear.payload_types.lock().unwrap(), [0], "PCMU, as offered");
    assert_eq!(metric(&server, "switchboard_rtp_dtmf_digits_total"), 1.0);
    all_calls_over(&server);
    let (_, stats) = server.call("GET", "/v1/queues/sales/stats", None);
    assert_eq!(
        stats["tasks"]["canceled-in-window"], 1,
        "the caller took the task along: {stats}"
    );
}

#[test]
fn pressing_2_by_sip_info_over_tcp_reaches_support_in_a_law() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(dir.path(), &[]);
    let ear = Ear::new();
    let scenario = Caller::dial_with(ear.port(), "+15559876", "8")
        .answered()
        .pause(2500)
        .press_info("2")
        .pause(1500)
        .hang_up()
        .write(dir.path(), "press-2");
    sipp(
        dir.path(),
        &scenario,
        sip_addr(&server),
        NUMBER,
        &["-t", "t1"],
    )
    .succeeds();
    let trace = trace(&server, &ended_contact(&server));
    assert_eq!(events(&trace), ["started", "input:2", "hangup"]);
    assert_eq!(enqueued(&trace), ["support"]);
    assert_eq!(*ear.payload_types.lock().unwrap(), [8], "PCMA, as offered");
    assert!(ear.loud_count() >= 100);
    all_calls_over(&server);
}

#[test]
fn silence_replays_the_menu_then_says_goodbye_and_hangs_up() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(dir.path(), &[]);
    let ear = Ear::new();
    let scenario = Caller::dial(ear.port(), "+15551111")
        .answered()
        .expect_bye(60_000)
        .write(dir.path(), "silence");
    sipp(dir.path(), &scenario, sip_addr(&server), NUMBER, &[]).succeeds();
    let contact = last_contact(&server);
    let trace = trace(&server, &contact);
    assert_eq!(events(&trace), ["started", "no-input"]);
    let last = trace.last().unwrap()["actions"].to_string();
    assert!(
        last.contains("Goodbye") && last.contains("hangup"),
        "{last}"
    );
    assert_eq!(contact["status"]["reason"], "hangup");
    // Talkspurts: greeting, menu, the menu again after the first silence, goodbye.
    assert_eq!(ear.markers(), 4, "prompts played");
    all_calls_over(&server);
}

#[test]
fn three_invalid_keys_take_the_flows_error_path_to_an_agent() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(dir.path(), &[]);
    let ear = Ear::new();
    let scenario = Caller::dial(ear.port(), "+15552222")
        .answered()
        .pause(2500)
        .press_rfc4733("9")
        .pause(2500)
        .press_rfc4733("9")
        .pause(2500)
        .press_rfc4733("9")
        .pause(4000)
        .hang_up()
        .write(dir.path(), "invalid");
    sipp(dir.path(), &scenario, sip_addr(&server), NUMBER, &[]).succeeds();
    let contact = ended_contact(&server);
    let trace = trace(&server, &contact);
    assert_eq!(
        events(&trace),
        ["started", "input:9", "input:9", "input:9", "hangup"]
    );
    assert_eq!(enqueued(&trace), ["agents"]);
    assert!(
        contact["attributes"].to_string().contains("agents"),
        "{contact}"
    );
    all_calls_over(&server);
}

#[test]
fn a_caller_hanging_up_during_the_prompt_ends_the_contact_and_frees_the_media() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(dir.path(), &[]);
    let ear = Ear::new();
    let scenario = Caller::dial(ear.port(), "+15553333")
        .answered()
        .pause(3000)
        .hang_up()
        .write(dir.path(), "early-bye");
    sipp(dir.path(), &scenario, sip_addr(&server), NUMBER, &[]).succeeds();
    all_calls_over(&server);
    let contact = ended_contact(&server);
    assert_eq!(contact["status"]["reason"], "customer-hangup");
    assert_eq!(events(&trace(&server, &contact)), ["started", "hangup"]);
    // The prompt stopped with the call.
    let heard = ear.count();
    assert!(heard > 20, "the prompt was playing ({heard} packets)");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ear.count(), heard, "RTP kept coming after the hang-up");
}

#[test]
fn an_agent_phone_answers_and_the_caller_is_bridged_both_ways() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(dir.path(), &[]);
    let (alice, phone_ear, answer, phone_port) = alice_registers_a_phone(&server, dir.path(), 8000);
    let port_args = ["-p", phone_port.as_str()];
    let (_, regs) = server.call("GET", "/v1/sip/registrations", None);
    assert_eq!(regs[0]["agent"], "alice", "{regs}");
    let phone = sipp(dir.path(), &answer, sip_addr(&server), "alice", &port_args);

    let caller_ear = Ear::new();
    let (caller, task) =
        alice_answers_a_caller(&server, dir.path(), &alice, &caller_ear, "+15554444");
    std::thread::sleep(Duration::from_millis(300));

    // The caller speaks: the agent's phone hears it; and the other way round.
    let caller_media = caller_ear
        .from
        .lock()
        .unwrap()
        .expect("prompt RTP came from the caller leg");
    let phone_before = phone_ear.loud_count();
    caller_ear.speak(caller_media, 40);
    let relayed = wait_for_count(|| phone_ear.loud_count() - phone_before, 36);
    assert!(relayed >= 36, "the agent heard {relayed} of 40 packets");

    let phone_media = phone_ear
        .from
        .lock()
        .unwrap()
        .expect("the agent leg sent nothing yet? it relays");
    let caller_before = caller_ear.loud_count();
    phone_ear.speak(phone_media, 40);
    let relayed = wait_for_count(|| caller_ear.loud_count() - caller_before, 36);
    assert!(relayed >= 36, "the caller heard {relayed} of 40 packets");

    // The agent hangs up (after 8 s): Switchboard hangs up on the caller, the task completes.
    phone.succeeds();
    caller.succeeds();
    all_calls_over(&server);
    let (_, task) = server.call("GET", &format!("/v1/tasks/{task}"), None);
    assert_eq!(task["status"], "completed", "{task}");
    let contact = last_contact(&server);
    assert_eq!(contact["status"]["state"], "ended", "{contact}");
}

/// A phone registered before the server was killed is still the agent's phone after the
/// restart: the caller is bridged to it, and the phone never registered again (its
/// registration, and the key that signed its challenge, are in the store).
#[test]
fn a_phone_registered_before_a_sigkill_still_rings_after_the_restart() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(dir.path(), &[]);
    let (alice, _phone_ear, answer, phone_port) =
        alice_registers_a_phone(&server, dir.path(), 2000);
    let port_args = ["-p", phone_port.as_str()];
    server.kill();

    let server = sip_ivr_server(dir.path(), &[]);
    let (_, regs) = server.call("GET", "/v1/sip/registrations", None);
    assert_eq!(regs[0]["agent"], "alice", "{regs}");
    let phone = sipp(dir.path(), &answer, sip_addr(&server), "alice", &port_args);
    let caller_ear = Ear::new();
    let (caller, task) =
        alice_answers_a_caller(&server, dir.path(), &alice, &caller_ear, "+15554445");
    phone.succeeds();
    caller.succeeds();
    all_calls_over(&server);
    let (_, task) = server.call("GET", &format!("/v1/tasks/{task}"), None);
    assert_eq!(task["status"], "completed", "{task}");
}

/// Creates agent alice and registers her phone (a sipp that will answer and hang up after
/// `talk_ms`); returns her token, the phone's ear, its answering scenario and its SIP port.
fn alice_registers_a_phone(
    server: &Server,
    dir: &std::path::Path,
    talk_ms: u64,
) -> (String, Ear, std::path::PathBuf, String) {
    let alice = agent(server, "alice", json!({}), json!({"voice": 1}));
    let phone_ear = Ear::new();
    let (register, answer) = agent_phone(dir, "alice", &alice, phone_ear.port(), talk_ms);
    let phone_port = crate::sipp::free_port().to_string();
    sipp(
        dir,
        &register,
        sip_addr(server),
        "alice",
        &["-p", phone_port.as_str()],
    )
    .succeeds();
    (alice, phone_ear, answer, phone_port)
}

/// A caller from `from` presses 1 for sales; alice accepts the offer on her desktop and
/// Switchboard rings her phone; returns once the legs are bridged, with the caller's sipp
/// (it expects the BYE) and the task.
fn alice_answers_a_caller(
    server: &Server,
    dir: &std::path::Path,
    alice: &str,
    caller_ear: &Ear,
    from: &str,
) -> (crate::sipp::Sipp, String) {
    let scenario = Caller::dial(caller_ear.port(), from)
        .answered()
        .pause(2500)
        .press_rfc4733("1")
        .expect_bye(60_000)
        .write(dir, &format!("caller-{from}"));
    let caller = sipp(dir, &scenario, sip_addr(server), NUMBER, &[]);
    let accepted = accepts(server, alice, 1.0);
    (caller, accepted["id"].as_str().unwrap().to_string())
}

#[test]
fn bad_sip_and_stray_media_get_errors_or_are_dropped_and_calls_go_on() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(dir.path(), &[]);
    let sip = sip_addr(&server);
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Sends `text` and reads the answer, waiting at most `wait` for it.
    let ask_within = |text: &str, wait: u64| -> Option<String> {
        probe
            .set_read_timeout(Some(Duration::from_millis(wait)))
            .unwrap();
        probe.send_to(text.as_bytes(), sip).unwrap();
        let mut buf = [0u8; 4096];
        probe
            .recv_from(&mut buf)
            .ok()
            .map(|(n, _)| String::from_utf8_lossy(&buf[..n]).to_string())
    };
    // What is answered may be answered late on a busy machine; what is dropped is given
    // 700 ms to show that nothing comes.
    let ask = |text: &str| ask_within(text, 5000);
    let dropped = |text: &str| ask_within(text, 700).is_none();
    let request = |method: &str, call_id: &str, extra: &str| {
        format!(
            "{method} sip:{NUMBER}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK{call_id}{method}\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:{NUMBER}@{sip}>\r\nCall-ID: {call_id}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}",
            probe.local_addr().unwrap()
        )
    };

    // Garbage and a request missing its headers: dropped silently, counted.
    assert!(dropped("\u{1}\u{2}garbage\r\n\r\n"));
    assert!(dropped(
        "INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4\r\n\r\n"
    ));
    assert_eq!(metric(&server, "switchboard_sip_malformed_total"), 2.0);
    // A BYE for a dialog that does not exist.
    let answer = ask(&request("BYE", "nobody", "Content-Length: 0\r\n\r\n")).unwrap();
    assert!(answer.starts_with("SIP/2.0 481"), "{answer}");
    // Keep-alive OPTIONS.
    let answer = ask(&request("OPTIONS", "ping", "Content-Length: 0\r\n\r\n")).unwrap();
    assert!(
        answer.starts_with("SIP/2.0 200") && answer.contains("INVITE"),
        "{answer}"
    );
    // An unknown method; a REGISTER for no agent.
    let answer = ask(&request("SUBSCRIBE", "sub", "Content-Length: 0\r\n\r\n")).unwrap();
    assert!(answer.starts_with("SIP/2.0 405"), "{answer}");
    let answer = ask(&request(
        "REGISTER",
        "reg",
        "Contact: <sip:mallory@127.0.0.1:9>\r\nContent-Length: 0\r\n\r\n",
    ))
    .unwrap();
    assert!(answer.starts_with("SIP/2.0 404"), "{answer}");
    // Registering as a real agent takes the agent's token: challenged, then refused with a
    // wrong answer, and nothing is registered.
    agent(&server, "bob", json!({}), json!({"voice": 1}));
    let register = |call_id: &str, auth: &str| {
        request(
            "REGISTER",
            call_id,
            &format!("Contact: <sip:bob@127.0.0.1:9>\r\n{auth}Content-Length: 0\r\n\r\n"),
        )
        .replace(&format!("To: <sip:{NUMBER}@"), "To: <sip:bob@")
    };
    let challenge = ask(&register("reg-bob", "")).unwrap();
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a nonce");
    let forged = format!(
        "Authorization: Digest username=\"bob\", realm=\"switchboard\", nonce=\"{nonce}\", uri=\"sip:{sip}\", response=\"0123456789abcdef0123456789abcdef\"\r\n"
    );
    let refused = ask(&register("reg-bob-2", &forged)).unwrap();
    assert!(refused.starts_with("SIP/2.0 403"), "{refused}");
    let (_, regs) = server.call("GET", "/v1/sip/registrations", None);
    assert_eq!(regs, json!([]));
    // An INVITE without an offer, and one offering only G.729: 488, no contact created.
    let answer = ask(&request("INVITE", "nosdp", "Content-Length: 0\r\n\r\n"));
    let answer = answer
        .filter(|a| !a.starts_with("SIP/2.0 100"))
        .or_else(|| {
            let mut buf = [0u8; 4096];
            probe
                .recv_from(&mut buf)
                .ok()
                .map(|(n, _)| String::from_utf8_lossy(&buf[..n]).to_string())
        });
    assert!(
        answer.as_deref().unwrap_or("").starts_with("SIP/2.0 488"),
        "{answer:?}"
    );
    let g729 = Caller::dial_with(5000, "+15550000", "18")
        .refused(488)
        .write(dir.path(), "g729");
    sipp(dir.path(), &g729, sip, NUMBER, &[]).succeeds();
    // A number nobody bound: 404.
    let unbound = Caller::dial(5000, "+15550000")
        .refused(404)
        .write(dir.path(), "unbound");
    sipp(dir.path(), &unbound, sip, "+19999999", &[]).succeeds();
    let (_, contacts) = server.call("GET", "/v1/contacts", None);
    assert_eq!(
        contacts.as_array().unwrap().len(),
        0,
        "no contact for refused calls"
    );

    // A real call goes on, while RTP "digits" from a stranger's address are dropped: the
    // caller pressed 1 (SIP INFO), the stranger 2.
    let ear = Ear::new();
    let scenario = Caller::dial(ear.port(), "+15555555")
        .answered()
        .pause(2500)
        .press_info("1")
        .pause(1000)
        .hang_up()
        .write(dir.path(), "meanwhile");
    let call = sipp(dir.path(), &scenario, sip, NUMBER, &[]);
    wait_until("prompt audio", 10, || ear.from.lock().unwrap().is_some());
    let media = ear.from.lock().unwrap().unwrap();
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    for _ in 0..3 {
        let mut p = vec![0x80, 101, 0, 1, 0, 0, 0, 9, 1, 2, 3, 4];
        p.extend([2, 0x8a, 3, 0]);
        stranger.send_to(&p, media).unwrap();
    }
    // And a datagram that is not RTP at all, from the caller's own address.
    ear.socket.send_to(b"not rtp", media).unwrap();
    call.succeeds();
    let trace = trace(&server, &ended_contact(&server));
    assert_eq!(events(&trace), ["started", "input:1", "hangup"]);
    assert!(metric(&server, "switchboard_rtp_packets_dropped_total") >= 4.0);
    all_calls_over(&server);
}

#[test]
fn a_reinvite_to_hold_and_back_keeps_the_call() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(dir.path(), &[]);
    let ear = Ear::new();
    let scenario = Caller::dial(ear.port(), "+15556666")
        .answered()
        .pause(1000)
        .reinvite(ear.port(), "sendonly")
        .pause(500)
        .reinvite(ear.port(), "sendrecv")
        .pause(1500)
        .press_info("1")
        .pause(1000)
        .hang_up()
        .write(dir.path(), "reinvite");
    sipp(dir.path(), &scenario, sip_addr(&server), NUMBER, &[]).succeeds();
    let trace = trace(&server, &ended_contact(&server));
    assert_eq!(events(&trace), ["started", "input:1", "hangup"]);
    assert_eq!(enqueued(&trace), ["sales"]);
    all_calls_over(&server);
}

#[test]
fn pressing_8_transfers_to_the_operator_on_a_new_leg() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let operator_port = crate::sipp::free_port().to_string();
    let operator = format!("ivr-menu:operator=sip:operator@127.0.0.1:{operator_port}");
    let server = sip_ivr_server(dir.path(), &["--setting", &operator]);
    let operator_ear = Ear::new();
    let (_, answer) = agent_phone(dir.path(), "operator", "", operator_ear.port(), 2000);
    let operator = sipp(
        dir.path(),
        &answer,
        sip_addr(&server),
        "operator",
        &["-p", operator_port.as_str()],
    );
    let ear = Ear::new();
    let scenario = Caller::dial(ear.port(), "+15557777")
        .answered()
        .pause(2500)
        .press_rfc4733("8")
        .expect_bye(30_000)
        .write(dir.path(), "transfer");
    sipp(dir.path(), &scenario, sip_addr(&server), NUMBER, &[]).succeeds();
    operator.succeeds();
    let contact = last_contact(&server);
    assert_eq!(contact["status"]["reason"], "transferred", "{contact}");
    assert_eq!(metric(&server, "switchboard_sip_calls_bridged_total"), 1.0);
    all_calls_over(&server);
}

/// The trunk's challenge to our INVITE (`CODE`, `ASK`), then its check of our answer (`CHECK`):
/// 403 when it fails.
const TRUNK_CHALLENGE: &str = r#"<recv request="INVITE"/>
  <send>
    <![CDATA[
SIP/2.0 CODE
[last_Via:]
[last_From:]
[last_To:];tag=[pid]trunk[call_number]
[last_Call-ID:]
[last_CSeq:]
ASK: Digest realm="trunk.test", nonce="n0nce[call_number]", qop="auth", algorithm=MD5
Content-Length: 0
    ]]>
  </send>
  <recv request="ACK"/>
  <recv request="INVITE">
    <action>
      CHECK
    </action>
  </recv>
  <nop hide="true" test="authvalid" next="authok"/>
  <send next="refused">
    <![CDATA[
SIP/2.0 403 Forbidden
[last_Via:]
[last_From:]
[last_To:];tag=[pid]trunk[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
    ]]>
  </send>
  <label id="authok"/>"#;

/// A transfer to a plain number goes through the trunk (sipp), which challenges the INVITE
/// with `challenge` and checks the answer with `check` (a sipp action setting `authvalid`);
/// the caller must end up bridged to it.
fn through_a_challenging_trunk(challenge: &str, ask: &str, check: &str) {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let trunk_port = crate::sipp::free_port().to_string();
    let trunk = format!("127.0.0.1:{trunk_port}");
    let server = crate::support::sip_ivr_server_with_env(
        dir.path(),
        &["--setting", "ivr-menu:operator=+15559999"],
        &[
            ("SWITCHBOARD_SIP_TRUNK", trunk.as_str()),
            ("SWITCHBOARD_SIP_TRUNK_USERNAME", "switchboard"),
            ("SWITCHBOARD_SIP_TRUNK_PASSWORD", "trunk-pass"),
        ],
    );
    let trunk_ear = Ear::new();
    let (_, phone) = agent_phone(dir.path(), "operator", "", trunk_ear.port(), 2000);
    let scenario = std::fs::read_to_string(&phone).unwrap();
    assert!(scenario.contains(r#"<recv request="INVITE"/>"#));
    let steps = TRUNK_CHALLENGE
        .replace("CODE", challenge)
        .replace("ASK", ask)
        .replace("CHECK", check);
    let scenario = scenario
        .replacen(r#"<recv request="INVITE"/>"#, &steps, 1)
        .replace("</scenario>", "  <label id=\"refused\"/>\n</scenario>");
    let challenging = dir.path().join("trunk.xml");
    std::fs::write(&challenging, scenario).unwrap();
    let trunk_sipp = sipp(
        dir.path(),
        &challenging,
        sip_addr(&server),
        "trunk",
        &["-p", trunk_port.as_str()],
    );
    let ear = Ear::new();
    let caller = Caller::dial(ear.port(), "+15557778")
        .answered()
        .pause(2500)
        .press_rfc4733("8")
        .expect_bye(30_000)
        .write(dir.path(), "through-trunk");
    sipp(dir.path(), &caller, sip_addr(&server), NUMBER, &[]).succeeds();
    trunk_sipp.succeeds();
    let contact = last_contact(&server);
    assert_eq!(contact["status"]["reason"], "transferred", "{contact}");
    assert_eq!(
        metric(&server, "switchboard_sip_calls_bridged_total"),
        1.0,
        "the trunk refused our credentials"
    );
    all_calls_over(&server);
}

/// 407 from the trunk: the INVITE goes again with `Proxy-Authorization` for our trunk user (sipp
/// checks the header's user and realm; its digest check reads `Authorization` only, which the
/// 401 test covers).
#[test]
fn a_trunk_that_challenges_with_407_gets_credentials_and_the_transfer_goes_through() {
    through_a_challenging_trunk(
        "407 Proxy Authentication Required",
        "Proxy-Authenticate",
        r#"<ereg regexp="Proxy-Authorization: Digest username=\"switchboard\", realm=\"trunk.test\", nonce=\"n0nce[0-9]+\", uri=\"sip:\+15559999@[0-9.:]+\", response=\"[0-9a-f]{32}\"" search_in="msg" check_it="true" assign_to="authvalid"/>"#,
    );
}

/// 401 from the trunk: the INVITE goes again with `Authorization`, which sipp verifies as a
/// digest of the trunk password.
#[test]
fn a_trunk_that_challenges_with_401_gets_a_digest_it_verifies() {
    through_a_challenging_trunk(
        "401 Unauthorized",
        "WWW-Authenticate",
        r#"<verifyauth assign_to="authvalid" username="switchboard" password="trunk-pass"/>"#,
    );
}

#[test]
fn a_caller_who_cancels_while_it_rings_gets_487_and_no_contact_starts() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(&config, "[sip]\nring_ms = 3000\n").unwrap();
    let data = dir.path().join("data");
    let server = sip_ivr_server(&data, &["--config", config.to_str().unwrap()]);
    let sip = sip_addr(&server);
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(2000)))
        .unwrap();
    let me = probe.local_addr().unwrap();
    let headers = |method: &str| {
        format!(
            "{method} sip:{NUMBER}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKcancel1\r\nFrom: <sip:+15558888@127.0.0.1>;tag=c1\r\nTo: <sip:{NUMBER}@{sip}>\r\nCall-ID: cancel-test\r\nCSeq: 1 {method}\r\nContact: <sip:c@{me}>\r\nMax-Forwards: 70\r\n"
        )
    };
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let invite = format!(
        "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        headers("INVITE"),
        sdp.len()
    );
    probe.send_to(invite.as_bytes(), sip).unwrap();
    let read = || {
        let mut buf = [0u8; 4096];
        let (n, _) = probe.recv_from(&mut buf).expect("an answer");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    assert!(read().starts_with("SIP/2.0 100"));
    let ringing = read();
    assert!(ringing.starts_with("SIP/2.0 180"), "{ringing}");
    probe
        .send_to(
            format!("{}Content-Length: 0\r\n\r\n", headers("CANCEL")).as_bytes(),
            sip,
        )
        .unwrap();
    let answers = [read(), read()];
    assert!(
        answers
            .iter()
            .any(|a| a.starts_with("SIP/2.0 200") && a.contains("CANCEL")),
        "{answers:?}"
    );
    let terminated = answers
        .iter()
        .find(|a| a.starts_with("SIP/2.0 487"))
        .unwrap_or_else(|| panic!("no 487: {answers:?}"));
    assert!(terminated.contains("1 INVITE"));
    probe
        .send_to(
            format!("{}Content-Length: 0\r\n\r\n", headers("ACK")).as_bytes(),
            sip,
        )
        .unwrap();
    all_calls_over(&server);
    let (_, contacts) = server.call("GET", "/v1/contacts", None);
    assert_eq!(contacts.as_array().unwrap().len(), 0, "{contacts}");
}

#[test]
fn an_uploaded_recording_is_converted_once_and_served_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(dir.path(), &[]);
    // A 1.5 s stereo tone at 44.1 kHz, as an admin's recording might be.
    let wav = dir.path().join("welcome.wav");
    let made = std::process::Command::new("sox")
        .args(["-n", "-r", "44100", "-c", "2", "-b", "16"])
        .arg(&wav)
        .args(["synth", "1.5", "sine", "440"])
        .status()
        .unwrap();
    assert!(made.success());
    let bytes = std::fs::read(&wav).unwrap();
    let (status, uploaded) = server.call_raw("PUT", "/v1/prompts/welcome", "audio/wav", bytes);
    assert_eq!(status, 201, "{uploaded}");
    assert_eq!(uploaded["millis"], 1500);
    let (_, list) = server.call("GET", "/v1/prompts", None);
    assert_eq!(list, json!([{"id": "welcome", "millis": 1500}]));
    // Served as 8 kHz 16-bit mono WAV for the webhook channels' <Play>, no token needed.
    let response = ureq::get(&format!("{}/prompts/welcome", server.url))
        .call()
        .unwrap();
    let served = response.into_body().read_to_vec().unwrap();
    assert_eq!(&served[..4], b"RIFF");
    assert_eq!(u32::from_le_bytes(served[24..28].try_into().unwrap()), 8000);
    assert_eq!(served.len(), 44 + 1500 * 16);

    // Not audio, a bad id, an unknown prompt: clear errors, nothing stored.
    let (status, error) = server.call_raw(
        "PUT",
        "/v1/prompts/broken",
        "audio/wav",
        b"not a wav".to_vec(),
    );
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["code"], "unreadable_audio");
    let (status, _) = server.call_raw("PUT", "/v1/prompts/..%2Fx", "audio/wav", vec![1]);
    assert_eq!(status, 400);
    let (status, _) = server.call("GET", "/prompts/nothing", None);
    assert_eq!(status, 404);
    let (_, list) = server.call("GET", "/v1/prompts", None);
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn an_agent_without_a_phone_is_made_unavailable_and_the_caller_queues_again() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(dir.path(), &[]);
    let nophone = agent(&server, "nophone", json!({}), json!({"voice": 1}));
    let ear = Ear::new();
    let scenario = Caller::dial(ear.port(), "+15551212")
        .answered()
        .pause(2500)
        .press_rfc4733("1")
        .pause(6000)
        .hang_up()
        .write(dir.path(), "no-phone");
    let caller = sipp(dir.path(), &scenario, sip_addr(&server), NUMBER, &[]);
    let mut reservation = None;
    wait_until("the offer", 20, || {
        let (_, me) = server.call_as(Some(&nophone), "GET", "/agent/v1/me", None);
        reservation = me["reservation"]["id"].as_str().map(str::to_string);
        reservation.is_some()
    });
    let (status, _) = server.call_as(
        Some(&nophone),
        "POST",
        &format!("/agent/v1/reservations/{}/accept", reservation.unwrap()),
        Some(json!({})),
    );
    assert_eq!(status, 200);
    wait_until("the agent to be made unavailable", 10, || {
        let (_, me) = server.call_as(Some(&nophone), "GET", "/agent/v1/me", None);
        me["activity"] == "unavailable"
    });
    // Back in line: a new task waits (the contact's own state may still read `queued` from
    // before the accept, so the queue is what tells).
    wait_until("the caller to be back in line", 10, || {
        let (_, stats) = server.call("GET", "/v1/queues/sales/stats", None);
        stats["tasks"]["pending"] == 1
    });
    assert_eq!(last_contact(&server)["status"]["state"], "queued");
    caller.succeeds();
    let trace = trace(&server, &last_contact(&server));
    assert_eq!(enqueued(&trace), ["sales", "sales"]);
    all_calls_over(&server);
}

#[test]
fn an_uploaded_welcome_is_played_to_callers_and_a_missing_one_beeps() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(
        dir.path(),
        &["--setting", "ivr-menu:welcome_prompt=welcome"],
    );
    // Nothing uploaded yet: the caller hears a beep instead, the call goes on.
    let ear = Ear::new();
    let scenario = Caller::dial(ear.port(), "+15553434")
        .answered()
        .pause(1500)
        .hang_up()
        .write(dir.path(), "no-welcome");
    sipp(dir.path(), &scenario, sip_addr(&server), NUMBER, &[]).succeeds();
    assert_eq!(metric(&server, "switchboard_prompt_failures_total"), 1.0);

    // A 1 s tone at 16 kHz uploaded as "welcome": played first, converted, not a beep.
    let wav = dir.path().join("welcome.wav");
    assert!(
        std::process::Command::new("sox")
            .args(["-n", "-r", "16000", "-c", "1", "-b", "16"])
            .arg(&wav)
            .args(["synth", "1", "sine", "600"])
            .status()
            .unwrap()
            .success()
    );
    let (status, _) = server.call_raw(
        "PUT",
        "/v1/prompts/welcome",
        "audio/wav",
        std::fs::read(&wav).unwrap(),
    );
    assert_eq!(status, 201);
    let ear = Ear::new();
    let scenario = Caller::dial(ear.port(), "+15553434")
        .answered()
        .pause(2500)
        .hang_up()
        .write(dir.path(), "welcome");
    sipp(dir.path(), &scenario, sip_addr(&server), NUMBER, &[]).succeeds();
    assert_eq!(metric(&server, "switchboard_prompt_failures_total"), 1.0);
    // The recording (50 packets) then the greeting: a talkspurt each.
    assert!(ear.markers() >= 2, "{} talkspurts", ear.markers());
    assert!(ear.loud_count() >= 60, "{} loud packets", ear.loud_count());
    let trace = trace(&server, &last_contact(&server));
    assert_eq!(
        trace[0]["actions"][0],
        json!({"type": "play", "prompt": "welcome"})
    );
    all_calls_over(&server);
}

/// An INVITE from `from` (a raw UDP peer); the first final answer it gets, if any.
fn invite_from(from: &str, sip: SocketAddr, call_id: &str) -> Option<String> {
    let probe = UdpSocket::bind(format!("{from}:0")).unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let invite = format!(
        "INVITE sip:{NUMBER}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK{call_id}\r\nFrom: <sip:+15550009@{from}>;tag=1\r\nTo: <sip:{NUMBER}@{sip}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        probe.local_addr().unwrap()
    );
    probe.send_to(invite.as_bytes(), sip).unwrap();
    let mut buf = [0u8; 4096];
    while let Ok((n, _)) = probe.recv_from(&mut buf) {
        let answer = String::from_utf8_lossy(&buf[..n]).to_string();
        if !answer.starts_with("SIP/2.0 1") {
            return Some(answer);
        }
    }
    None
}

/// With inbound digest on, a new call must answer the challenge (RFC 3261 §22): an INVITE
/// without credentials gets 401 and starts nothing, wrong credentials get 403, the trunk's own
/// start a call.
#[test]
fn with_inbound_digest_an_invite_needs_the_trunks_credentials() {
    use md5::{Digest as _, Md5};
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = crate::support::sip_ivr_server_with_env(
        dir.path(),
        &[],
        &[
            ("SWITCHBOARD_SIP_INBOUND_USERNAME", "trunk"),
            ("SWITCHBOARD_SIP_INBOUND_PASSWORD", "s3cret-trunk"),
        ],
    );
    let sip = sip_addr(&server);
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(2000)))
        .unwrap();
    let uri = format!("sip:{NUMBER}@{sip}");
    let invite = |call_id: &str, authorization: Option<String>| -> String {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        let auth = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let message = format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK{call_id}\r\nFrom: <sip:+15550009@127.0.0.1>;tag=1\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:+15550009@{}>\r\nMax-Forwards: 70\r\n{auth}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            probe.local_addr().unwrap(),
            probe.local_addr().unwrap(),
            sdp.len()
        );
        probe.send_to(message.as_bytes(), sip).unwrap();
        let mut buf = [0u8; 4096];
        while let Ok((n, _)) = probe.recv_from(&mut buf) {
            let answer = String::from_utf8_lossy(&buf[..n]).to_string();
            if !answer.starts_with("SIP/2.0 1") {
                return answer;
            }
        }
        panic!("no final answer to {call_id}");
    };
    let challenge = invite("auth-none", None);
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    assert!(
        challenge.contains("WWW-Authenticate: Digest realm=\"switchboard\""),
        "{challenge}"
    );
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    let md5 = |text: String| hex::encode(Md5::digest(text.as_bytes()));
    let answer = |password: &str| {
        let ha1 = md5(format!("trunk:switchboard:{password}"));
        let ha2 = md5(format!("INVITE:{uri}"));
        let response = md5(format!("{ha1}:{nonce}:{ha2}"));
        format!(
            "Digest username=\"trunk\", realm=\"switchboard\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5"
        )
    };
    let wrong = invite("auth-wrong", Some(answer("guessed")));
    assert!(wrong.starts_with("SIP/2.0 403"), "{wrong}");
    let (_, contacts) = server.call("GET", "/v1/contacts", None);
    assert_eq!(contacts.as_array().unwrap().len(), 0, "{contacts}");
    let right = invite("auth-right", Some(answer("s3cret-trunk")));
    assert!(right.starts_with("SIP/2.0 200"), "{right}");
    let contact = last_contact(&server);
    assert_eq!(contact["from"], "+15550009", "{contact}");
}

/// With `sip.trusted` set, an INVITE from anywhere else gets 403 and starts no contact; a
/// trusted trunk's call goes on as before.
#[test]
fn an_invite_from_an_untrusted_address_gets_403_and_starts_nothing() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = crate::support::sip_ivr_server_with_env(
        dir.path(),
        &[],
        &[("SWITCHBOARD_SIP_TRUSTED", "192.0.2.0/24, 127.0.0.1")],
    );
    let sip = sip_addr(&server);
    let answer = invite_from("127.0.0.9", sip, "stranger1").expect("an answer");
    assert!(answer.starts_with("SIP/2.0 403"), "{answer}");
    assert!(answer.contains("sip.trusted"), "{answer}");
    let (_, contacts) = server.call("GET", "/v1/contacts", None);
    assert_eq!(contacts.as_array().unwrap().len(), 0, "{contacts}");
    assert_eq!(
        metric(&server, "switchboard_sip_calls_untrusted_total"),
        1.0
    );

    let ear = Ear::new();
    let scenario = Caller::dial(ear.port(), "+15551239")
        .answered()
        .pause(2500)
        .press_rfc4733("1")
        .pause(1000)
        .hang_up()
        .write(dir.path(), "trusted");
    sipp(dir.path(), &scenario, sip, NUMBER, &[]).succeeds();
    let contact = last_contact(&server);
    assert_eq!(contact["from"], "+15551239");
    assert_eq!(enqueued(&trace(&server, &contact)), ["sales"]);
}

/// 1,000 INVITEs a second from one address for three seconds: it gets 503s past its rate,
/// while a caller from another address goes through the menu to sales.
#[test]
fn a_flood_of_invites_from_one_address_leaves_other_callers_alone() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(dir.path(), &[]);
    let sip = sip_addr(&server);
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flood = {
        let flooding = flooding.clone();
        std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.3:0").unwrap();
            let from = socket.local_addr().unwrap();
            let started = Instant::now();
            let mut sent = 0u64;
            while flooding.load(std::sync::atomic::Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(3)
            {
                // 1,000 a second: paced by the millisecond.
                let due = started + Duration::from_millis(sent);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let invite = format!(
                    "INVITE sip:{NUMBER}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKflood{sent}\r\nFrom: <sip:+16660000@127.0.0.3>;tag=f{sent}\r\nTo: <sip:{NUMBER}@{sip}>\r\nCall-ID: flood{sent}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                );
                let _ = socket.send_to(invite.as_bytes(), sip);
                sent += 1;
            }
            sent
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let ear = Ear::new();
    let scenario = Caller::dial(ear.port(), "+15551240")
        .answered()
        .pause(2500)
        .press_rfc4733("1")
        .pause(1000)
        .hang_up()
        .write(dir.path(), "during-flood");
    sipp(dir.path(), &scenario, sip, NUMBER, &[]).succeeds();
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    let sent = flood.join().unwrap();
    assert!(sent >= 2_000, "the flood sent {sent}");

    let (_, contacts) = server.call("GET", "/v1/contacts?limit=500", None);
    let contacts = contacts.as_array().unwrap();
    let ours = contacts
        .iter()
        .find(|c| c["from"] == "+15551240")
        .expect("the caller's contact");
    assert_eq!(enqueued(&trace(&server, ours)), ["sales"], "{ours}");
    let admitted = contacts.iter().filter(|c| c["from"] == "+16660000").count();
    // 20 a second, 40 in a burst, over at most four seconds.
    assert!(admitted <= 40 + 4 * 20, "{admitted} flood calls started");
    let limited = metric(&server, "switchboard_sip_calls_limited_total");
    // The rest were admitted, or dropped by the kernel while the server was descheduled (a
    // busy machine's socket buffer overflows in a flood); neither is a call started.
    assert!(
        limited >= 0.8 * sent as f64,
        "{limited} of {sent} turned away"
    );
}

#[test]
fn a_draining_node_turns_new_calls_away_and_keeps_the_call_up_to_its_end() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(dir.path(), &["--drain-secs", "30"]);
    let sip = sip_addr(&server);
    let ear = Ear::new();
    let scenario = Caller::dial(ear.port(), "+15554444")
        .answered()
        .pause(5000)
        .hang_up()
        .write(dir.path(), "long-call");
    let call = sipp(dir.path(), &scenario, sip, NUMBER, &[]);
    wait_until("the call is answered", 10, || ear.count() > 10);

    server.terminate();
    // A new caller is told to try elsewhere.
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut answer = String::new();
    for attempt in 0..20 {
        let invite = format!(
            "INVITE sip:{NUMBER}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKdrain{attempt}\r\nFrom: <sip:late@127.0.0.1>;tag=1\r\nTo: <sip:{NUMBER}@{sip}>\r\nCall-ID: late{attempt}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            probe.local_addr().unwrap()
        );
        probe.send_to(invite.as_bytes(), sip).unwrap();
        let mut buf = [0u8; 4096];
        // The first answers may be a 100 Trying or a call started before the drain took hold.
        while let Ok((n, _)) = probe.recv_from(&mut buf) {
            answer = String::from_utf8_lossy(&buf[..n]).to_string();
            if answer.starts_with("SIP/2.0 503") {
                break;
            }
        }
        if answer.starts_with("SIP/2.0 503") {
            break;
        }
    }
    assert!(answer.starts_with("SIP/2.0 503"), "{answer}");
    assert!(answer.contains("Retry-After: 5"), "{answer}");
    // The call up goes on to its own end: its BYE is answered.
    call.succeeds();
    let exit = server.exit_status(Duration::from_secs(20));
    assert!(exit.success(), "{exit}");
}

/// Type-ahead: a key pressed during the greeting answers the menu that follows; a menu that
/// asks to flush (the IVR's `flush_type_ahead` setting) drops it.
#[test]
fn a_key_pressed_during_the_greeting_is_kept_for_the_menu_unless_it_flushes() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(dir.path(), &[]);
    let ear = Ear::new();
    // "Thank you for calling Acme." is still playing 300 ms in: no gather runs yet.
    let scenario = Caller::dial(ear.port(), "+15551235")
        .answered()
        .pause(300)
        .press_info("1")
        .pause(3000)
        .hang_up()
        .write(dir.path(), "type-ahead");
    sipp(dir.path(), &scenario, sip_addr(&server), NUMBER, &[]).succeeds();
    let kept = ended_contact(&server);
    let steps = trace(&server, &kept);
    assert_eq!(
        events(&steps),
        ["started", "input:1", "hangup"],
        "the menu took the key pressed ahead, without a second press: {steps:#?}"
    );
    assert_eq!(enqueued(&steps), ["sales"]);

    let (status, _) = server.call(
        "PUT",
        "/v1/flows/ivr-menu/settings",
        Some(json!({"flush_type_ahead": "true"})),
    );
    assert_eq!(status, 200);
    sipp(dir.path(), &scenario, sip_addr(&server), NUMBER, &[]).succeeds();
    let flushed = ended_contact(&server);
    assert_ne!(flushed["id"], kept["id"]);
    let steps = trace(&server, &flushed);
    assert_eq!(
        events(&steps),
        ["started", "hangup"],
        "the same press is dropped when the menu flushes: {steps:#?}"
    );
    assert_eq!(steps[0]["actions"][1]["flush"], true, "{steps:#?}");
    assert!(enqueued(&steps).is_empty());
    all_calls_over(&server);
}

/// An A-law-only caller bridged to a u-law-only phone: each side's tone arrives at the other
/// at its frequency in the law it negotiated, a key pressed under the caller's telephone-event
/// payload type reaches the phone under the phone's; the phone puts the caller on hold (the
/// caller hears music), resumes, refreshes the session and sends INFO: the call goes on and
/// the two hear each other again.
#[test]
fn an_a_law_caller_and_a_u_law_phone_hear_each_other_through_hold_and_back() {
    use crate::sipp::{PhoneAct, agent_phone_doing};
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(dir.path(), &[]);
    let alice = agent(&server, "alice", json!({}), json!({"voice": 1}));
    let phone_ear = Ear::only(0);
    let acts = [
        PhoneAct::Talk(5000),
        PhoneAct::Reinvite("sendonly"),
        PhoneAct::Talk(2500),
        PhoneAct::Reinvite("sendrecv"),
        PhoneAct::Update,
        PhoneAct::Info("5"),
        PhoneAct::Talk(4000),
    ];
    let (register, answer) = agent_phone_doing(
        dir.path(),
        "alice",
        &alice,
        phone_ear.port(),
        "0",
        &acts,
        true,
    );
    let phone_port = crate::sipp::free_port().to_string();
    let port_args = ["-p", phone_port.as_str()];
    sipp(
        dir.path(),
        &register,
        sip_addr(&server),
        "alice",
        &port_args,
    )
    .succeeds();
    let phone = sipp(dir.path(), &answer, sip_addr(&server), "alice", &port_args);

    let caller_ear = Ear::only(8);
    let scenario = Caller::dial_offering(caller_ear.port(), "+15554446", "8", 96)
        .answered()
        .pause(2500)
        .press_info("1")
        .expect_bye(60_000)
        .write(dir.path(), "alaw-caller");
    let caller = sipp(dir.path(), &scenario, sip_addr(&server), NUMBER, &[]);
    let accepted = accepts(&server, &alice, 1.0);
    // The caller's 600 Hz in A-law reaches the u-law phone as 600 Hz; and the phone's 1 kHz
    // in u-law reaches the A-law caller as 1 kHz.
    crosses(&caller_ear, 8, 600.0, &phone_ear);
    crosses(&phone_ear, 0, 1000.0, &caller_ear);
    let caller_leg = caller_ear.from.lock().unwrap().expect("prompts");
    // A key under the caller's payload type 96 arrives under the phone's 101.
    caller_ear.press(caller_leg, 96, 5);
    wait_until("the key to reach the phone", 8, || {
        phone_ear.payload_types.lock().unwrap().contains(&101)
    });
    let types = phone_ear.payload_types.lock().unwrap().clone();
    assert!(
        types.contains(&101),
        "the phone got payload types {types:?}"
    );
    assert!(
        !types.contains(&96) && !types.contains(&8),
        "the phone got {types:?}"
    );
    let types = caller_ear.payload_types.lock().unwrap().clone();
    assert!(!types.contains(&0), "the A-law caller got u-law: {types:?}");

    // The phone holds: the caller hears music while the phone says nothing.
    let before = caller_ear.loud_count();
    wait_until("hold music for the caller", 8, || {
        caller_ear.loud_count() >= before + 25
    });
    // The phone resumes (2.5 s after the hold began, at least 2 s after the music was
    // heard): music stops (nothing loud for half a second) and the two hear each other.
    std::thread::sleep(Duration::from_secs(2));
    wait_until_quiet("the hold music to stop", &caller_ear);
    crosses(&phone_ear, 0, 1000.0, &caller_ear);

    phone.succeeds();
    caller.succeeds();
    all_calls_over(&server);
    let (_, task) = server.call(
        "GET",
        &format!("/v1/tasks/{}", accepted["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(task["status"], "completed", "{task}");
}

/// A registered phone for `agent` that answers with u-law, does `acts`, then hangs up
/// (`hangs_up`) or waits for Switchboard's BYE; returns the agent's token, the phone's ear and
/// its running answering sipp.
fn phone_for(
    server: &Server,
    dir: &std::path::Path,
    agent: &str,
    acts: &[crate::sipp::PhoneAct<'_>],
    hangs_up: bool,
) -> (String, Ear, crate::sipp::Sipp) {
    let token = crate::support::agent(server, agent, json!({}), json!({"voice": 1}));
    let ear = Ear::only(0);
    let (register, answer) =
        crate::sipp::agent_phone_doing(dir, agent, &token, ear.port(), "0", acts, hangs_up);
    let port = crate::sipp::free_port().to_string();
    let args = ["-p", port.as_str()];
    sipp(dir, &register, sip_addr(server), agent, &args).succeeds();
    let phone = sipp(dir, &answer, sip_addr(server), agent, &args);
    (token, ear, phone)
}

/// A caller who presses 1 for sales and then waits for Switchboard's BYE; returns the sipp.
fn sales_caller(
    server: &Server,
    dir: &std::path::Path,
    ear: &Ear,
    from: &str,
) -> crate::sipp::Sipp {
    let scenario = Caller::dial(ear.port(), from)
        .answered()
        .pause(2500)
        .press_info("1")
        .expect_bye(90_000)
        .write(dir, &format!("caller-{from}"));
    sipp(dir, &scenario, sip_addr(server), NUMBER, &[])
}

/// Waits for `agent`'s offer and accepts it; returns the task.
fn accepts(server: &Server, token: &str, bridges: f64) -> Value {
    let mut reservation = None;
    let mut last = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(20);
    while reservation.is_none() {
        if Instant::now() > deadline {
            // What the router holds, to tell a lost offer from an agent left out.
            let (_, tasks) = server.call("GET", "/v1/tasks", None);
            let (_, agents) = server.call("GET", "/v1/agents", None);
            panic!(
                "timed out waiting for an offer; the agent: {last}\ntasks: {tasks}\nagents: {agents}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
        let (_, me) = server.call_as(Some(token), "GET", "/agent/v1/me", None);
        reservation = me["reservation"]["id"].as_str().map(str::to_string);
        last = me;
    }
    let (status, task) = server.call_as(
        Some(token),
        "POST",
        &format!("/agent/v1/reservations/{}/accept", reservation.unwrap()),
        Some(json!({})),
    );
    assert_eq!(status, 200, "{task}");
    wait_until("the bridge", 15, || {
        metric(server, "switchboard_sip_calls_bridged_total") >= bridges
    });
    std::thread::sleep(Duration::from_millis(300));
    task
}

/// The caller's 600 Hz reaches `ear` (the phone the call is bridged to).
fn hears_the_caller(caller_ear: &Ear, ear: &Ear) {
    crosses(caller_ear, 0, 600.0, ear);
}

/// `speaker` sends a tone of `hz` in the law of `pt` to the Switchboard leg it last heard
/// from, and `listener` hears it at that frequency (its share of what it heard > 0.8).
fn crosses(speaker: &Ear, pt: u8, hz: f64, listener: &Ear) {
    let leg = speaker
        .from
        .lock()
        .unwrap()
        .expect("the speaker heard its leg");
    listener.forget();
    speaker.speak_tone(leg, 30, pt, hz);
    std::thread::sleep(Duration::from_millis(200));
    let share = listener.tone_share(hz);
    assert!(share > 0.8, "{hz} Hz was heard as {share:.2} of the audio");
}

/// Alice puts the caller on hold from her desk: the caller hears music and she no longer hears
/// the caller; she takes them back and they talk again; then she hangs up from the desk: her
/// phone is hung up, the flow hears the task completed and ends the call; the time on hold is
/// on the task.
#[test]
fn an_agent_holds_the_caller_from_the_desk_then_hangs_up_and_the_flow_goes_on() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(dir.path(), &[]);
    let (alice, alice_ear, alice_phone) = phone_for(&server, dir.path(), "alice", &[], false);
    let caller_ear = Ear::new();
    let caller = sales_caller(&server, dir.path(), &caller_ear, "+15554449");
    let task = accepts(&server, &alice, 1.0);
    let id = task["id"].as_str().unwrap().to_string();
    hears_the_caller(&caller_ear, &alice_ear);
    let hold = |token: &str, on: bool| {
        server.call_as(
            Some(token),
            "POST",
            &format!("/agent/v1/tasks/{id}/hold"),
            Some(json!({"on": on})),
        )
    };
    let (status, e) = hold(&alice, true);
    assert_eq!(status, 200, "{e}");
    assert!(e["held_since_ms"].is_u64(), "{e}");
    // Only the agent who holds the call may hold it.
    let bob = crate::support::agent(&server, "bob", json!({}), json!({"voice": 1}));
    let (status, refused) = hold(&bob, false);
    assert_eq!(status, 403, "{refused}");

    let before = caller_ear.loud_count();
    wait_until("the caller to hear music on hold", 10, || {
        caller_ear.loud_count() > before + 25
    });
    let leg = caller_ear
        .from
        .lock()
        .unwrap()
        .expect("the caller heard its leg");
    alice_ear.forget();
    caller_ear.speak_tone(leg, 30, 0, 600.0);
    std::thread::sleep(Duration::from_millis(300));
    let share = alice_ear.tone_share(600.0);
    assert!(share < 0.2, "alice heard the caller on hold ({share:.2})");

    std::thread::sleep(Duration::from_millis(500));
    let (status, back) = hold(&alice, false);
    assert_eq!(status, 200, "{back}");
    assert!(back["held_since_ms"].is_null(), "{back}");
    assert!(back["hold_ms"].as_u64().unwrap() >= 500, "{back}");
    // Back together (the bridge follows within its next check).
    std::thread::sleep(Duration::from_millis(600));
    hears_the_caller(&caller_ear, &alice_ear);

    // Hanging up from the desk is the end of the conversation.
    let (status, wrapped) = server.call_as(
        Some(&alice),
        "POST",
        &format!("/agent/v1/tasks/{id}/wrap"),
        Some(json!({})),
    );
    assert_eq!(status, 200, "{wrapped}");
    alice_phone.succeeds();
    caller.succeeds();
    all_calls_over(&server);
    let (_, task) = server.call("GET", &format!("/v1/tasks/{id}"), None);
    assert_eq!(task["status"], "completed", "{task}");
    assert!(task["hold_ms"].as_u64().unwrap() >= 500, "{task}");
    // The flow may end the contact before the bridge's next look at the task: then its end,
    // not the desk, hangs up alice's phone (and no second note is written).
    let said = legs(&server);
    assert_eq!(said[0], "connected to alice's phone", "{said:?}");
    assert!(
        said.len() == 1 || said[1] == "alice hung up from the desk",
        "{said:?}"
    );
}

/// Alice transfers a call to the support queue from her desk: her phone is hung up, the
/// caller hears that they are being transferred and music, bob (in support) takes the task,
/// his phone rings and he talks to the caller; bad transfers are refused and change nothing.
#[test]
fn an_agent_transfers_a_call_to_another_queue_and_the_next_agent_talks_to_the_caller() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(dir.path(), &[]);
    let (alice, _alice_ear, alice_phone) = phone_for(&server, dir.path(), "alice", &[], false);
    std::thread::sleep(Duration::from_millis(50));
    let (bob, bob_ear, bob_phone) = phone_for(
        &server,
        dir.path(),
        "bob",
        &[crate::sipp::PhoneAct::Talk(3000)],
        true,
    );
    // Bob is away while alice takes the call.
    let away = json!({"activity": "break"});
    server.call_as(Some(&bob), "PUT", "/agent/v1/activity", Some(away));
    let caller_ear = Ear::new();
    let caller = sales_caller(&server, dir.path(), &caller_ear, "+15554447");
    let task = accepts(&server, &alice, 1.0);
    let id = task["id"].as_str().unwrap();
    assert_eq!(task["agent"], "alice");

    let transfer = |token: &str, body: Value| {
        server.call_as(
            Some(token),
            "POST",
            &format!("/agent/v1/tasks/{id}/transfer"),
            Some(body),
        )
    };
    let (status, e) = transfer(&alice, json!({"queue": "nowhere"}));
    assert_eq!(status, 404, "{e}");
    let (status, e) = transfer(&alice, json!({"agent": "nobody"}));
    assert_eq!(status, 404, "{e}");
    let (status, e) = transfer(&alice, json!({"agent": "bob"}));
    assert_eq!(status, 409, "bob is on a break: {e}");
    let (status, e) = transfer(&alice, json!({"queue": "support", "agent": "bob"}));
    assert_eq!(status, 400, "{e}");
    let (status, e) = transfer(&bob, json!({"queue": "support"}));
    assert_eq!(status, 403, "{e}");

    let available = json!({"activity": "available"});
    server.call_as(Some(&bob), "PUT", "/agent/v1/activity", Some(available));
    let heard_before = caller_ear.loud_count();
    let (status, moved) = transfer(&alice, json!({"queue": "support"}));
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["attributes"]["transferred_from"], "alice", "{moved}");
    assert_eq!(
        moved["attributes"]["transferred_from_queue"], "sales",
        "{moved}"
    );
    // Alice's phone is hung up; the caller hears the announcement and music.
    alice_phone.succeeds();
    wait_until("the caller to hear something while waiting", 10, || {
        caller_ear.loud_count() > heard_before + 25
    });

    let task = accepts(&server, &bob, 2.0);
    assert_eq!(task["id"], id);
    hears_the_caller(&caller_ear, &bob_ear);
    bob_phone.succeeds();
    caller.succeeds();
    all_calls_over(&server);
    let (_, task) = server.call("GET", &format!("/v1/tasks/{id}"), None);
    assert_eq!(
        (task["status"].as_str(), task["agent"].as_str()),
        (Some("completed"), Some("bob")),
        "{task}"
    );
    // Alice is free again (her capacity went back when she transferred).
    let (_, me) = server.call_as(Some(&alice), "GET", "/agent/v1/me", None);
    assert!(me["reservation"].is_null(), "{me}");
    assert_eq!(
        legs(&server),
        [
            "connected to alice's phone",
            "alice transferred the call to queue support",
            "connected to bob's phone",
        ]
    );
}

/// A REFER from alice's phone to bob by name: 202, a NOTIFY saying 200, alice's leg is hung
/// up, the task is offered to bob (not to the queue), his phone rings and he hears the caller.
#[test]
fn a_refer_from_the_agent_phone_transfers_the_call_blind_to_a_named_agent() {
    use crate::sipp::PhoneAct;
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(dir.path(), &[]);
    let (alice, _alice_ear, alice_phone) = phone_for(
        &server,
        dir.path(),
        "alice",
        &[PhoneAct::Talk(1000), PhoneAct::Refer("sip:bob@127.0.0.1")],
        false,
    );
    std::thread::sleep(Duration::from_millis(50));
    let (bob, bob_ear, bob_phone) =
        phone_for(&server, dir.path(), "bob", &[PhoneAct::Talk(3000)], true);
    let away = json!({"activity": "break"});
    server.call_as(Some(&bob), "PUT", "/agent/v1/activity", Some(away));
    // Carol is in every queue and has been idle longest: only a transfer to bob by name
    // skips her.
    let carol = crate::support::agent(&server, "carol", json!({}), json!({"voice": 1}));
    let busy = json!({"activity": "break"});
    server.call_as(Some(&carol), "PUT", "/agent/v1/activity", Some(busy));

    let caller_ear = Ear::new();
    let caller = sales_caller(&server, dir.path(), &caller_ear, "+15554448");
    let available = json!({"activity": "available"});
    server.call_as(
        Some(&bob),
        "PUT",
        "/agent/v1/activity",
        Some(available.clone()),
    );
    // Bob is now idle: alice must take this one.
    let task = accepts(&server, &alice, 1.0);
    assert_eq!(task["agent"], "alice", "{task}");
    let id = task["id"].as_str().unwrap().to_string();
    server.call_as(Some(&carol), "PUT", "/agent/v1/activity", Some(available));

    alice_phone.succeeds();
    let task = accepts(&server, &bob, 2.0);
    assert_eq!(task["id"], id.as_str());
    assert_eq!(task["attributes"]["transferred_from"], "alice", "{task}");
    hears_the_caller(&caller_ear, &bob_ear);
    let (_, me) = server.call_as(Some(&carol), "GET", "/agent/v1/me", None);
    assert!(
        me["reservation"].is_null(),
        "carol was not offered the call: {me}"
    );
    bob_phone.succeeds();
    caller.succeeds();
    all_calls_over(&server);
}

/// Alice transfers a call to a SIP URI from her desk: the target rings while the caller hears
/// music, answers and hears the caller; alice's leg is hung up and her task's conversation
/// ends (completed, with the transfer in its notes).
#[test]
fn an_agent_transfers_a_call_to_a_number_and_the_caller_talks_to_it() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(dir.path(), &[]);
    let (alice, alice_ear, alice_phone) = phone_for(&server, dir.path(), "alice", &[], false);
    let operator_port = crate::sipp::free_port().to_string();
    let operator_ear = Ear::only(0);
    let (_, answer) = agent_phone(dir.path(), "operator", "", operator_ear.port(), 3000);
    let operator = sipp(
        dir.path(),
        &answer,
        sip_addr(&server),
        "operator",
        &["-p", operator_port.as_str()],
    );
    let caller_ear = Ear::new();
    let caller = sales_caller(&server, dir.path(), &caller_ear, "+15554449");
    let task = accepts(&server, &alice, 1.0);
    let id = task["id"].as_str().unwrap();
    let alice_task = || {
        server
            .call_as(Some(&alice), "GET", &format!("/agent/v1/tasks/{id}"), None)
            .1
    };

    // A number with no trunk configured cannot be dialed: the caller stays with alice, who
    // reads why on the task and may try again.
    let (status, asked) = server.call_as(
        Some(&alice),
        "POST",
        &format!("/agent/v1/tasks/{id}/transfer"),
        Some(json!({"number": "+15559999"})),
    );
    assert_eq!(status, 200, "{asked}");
    wait_until("the failed transfer to be cleared", 5, || {
        alice_task()["transfer_to"].is_null()
    });
    let failed = alice_task()["attributes"]["transfer_failed"].clone();
    assert!(
        failed
            .as_str()
            .unwrap_or_default()
            .contains("set sip.trunk"),
        "{failed}"
    );
    hears_the_caller(&caller_ear, &alice_ear);

    let target = format!("sip:operator@127.0.0.1:{operator_port}");
    let (status, asked) = server.call_as(
        Some(&alice),
        "POST",
        &format!("/agent/v1/tasks/{id}/transfer"),
        Some(json!({"number": target})),
    );
    assert_eq!(status, 200, "{asked}");
    assert_eq!(asked["transfer_to"], target.as_str(), "{asked}");
    wait_until("the operator's leg", 15, || {
        metric(&server, "switchboard_sip_calls_bridged_total") >= 2.0
    });
    alice_phone.succeeds();
    hears_the_caller(&caller_ear, &operator_ear);
    operator.succeeds();
    caller.succeeds();
    all_calls_over(&server);
    let (_, task) = server.call("GET", &format!("/v1/tasks/{id}"), None);
    assert_eq!(task["status"], "completed", "{task}");
    assert!(task["transfer_to"].is_null(), "{task}");
    let notes = task["wrapup"].as_str().unwrap_or_default();
    assert!(notes.contains("transferred to sip:operator@"), "{task}");
    let legs = legs(&server);
    assert_eq!(legs.len(), 3, "{legs:?}");
    assert_eq!(legs[0], "connected to alice's phone");
    assert!(
        legs[1].starts_with("transfer to +15559999 failed"),
        "{legs:?}"
    );
    assert_eq!(legs[2], format!("alice transferred the call to {target}"));
}

/// The whole callback: a caller waiting in sales asks to be called back and hangs up; alice
/// accepts the callback; her phone rings first, then the customer's number through the trunk,
/// which is busy: the attempt is recorded and alice's leg hung up. Switchboard is killed
/// before the retry; after the restart the second attempt rings alice then the customer, who
/// answers, is greeted, and the two hear each other. Each attempt happened once.
#[test]
fn a_callback_rings_the_agent_then_the_customer_and_retries_a_busy_line_across_a_sigkill() {
    use crate::sipp::busy_phone;
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let asked = callback_asked(dir.path(), "+15554460");
    let (server, alice, alice_ear, phone) =
        (asked.server, asked.alice, asked.alice_ear, asked.phone);
    let (env, customer_port) = (asked.env, asked.customer_port);
    let env = [("SWITCHBOARD_SIP_TRUNK", env.as_str())];
    let contact = last_contact(&server);
    assert_eq!(contact["status"]["reason"], "callback", "{contact}");

    // The customer's line is busy for the first attempt.
    let busy = busy_phone(dir.path(), "customer");
    let customer_args = ["-p", customer_port.as_str()];
    let busy = sipp(
        dir.path(),
        &busy,
        sip_addr(&server),
        "customer",
        &customer_args,
    );
    server.call_as(
        Some(&alice),
        "PUT",
        "/agent/v1/activity",
        Some(json!({"activity": "available"})),
    );
    let task = accepts(&server, &alice, 0.0);
    let id = task["id"].as_str().unwrap().to_string();
    assert_eq!(
        task["callback"]["contact"], contact["id"],
        "the caller's contact is linked"
    );
    busy.succeeds();
    let attempts = |server: &Server| {
        let (_, task) = server.call("GET", &format!("/v1/tasks/{id}"), None);
        task["callback"]["attempts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    wait_until("the busy attempt to be recorded", 10, || {
        attempts(&server)
            .first()
            .is_some_and(|a| !a["result"].is_null())
    });
    let first = attempts(&server)[0].clone();
    assert!(
        first["result"].as_str().unwrap().starts_with("busy (486"),
        "{first}"
    );

    // Killed before the retry; started again on the same data.
    server.kill();
    let server = crate::support::sip_ivr_server_with_env(dir.path(), &[], &env);
    let (customer_ear, customer) = customer_answers(dir.path(), &server, &customer_args, 10_000);
    wait_until("the customer to be greeted", 20, || {
        customer_ear.loud_count() > 25
    });
    // The greeting ends (nothing loud for half a second) and the bridge begins.
    wait_until_quiet("the greeting to end", &customer_ear);
    // Both ways: the customer hears alice, alice hears the customer.
    crosses(&customer_ear, 0, 600.0, &alice_ear);
    crosses(&alice_ear, 0, 1000.0, &customer_ear);

    customer.succeeds();
    phone.succeeds();
    all_calls_over(&server);
    let attempts = attempts(&server);
    assert_eq!(attempts.len(), 2, "one dial per attempt: {attempts:?}");
    assert_eq!(attempts[1]["result"], "answered", "{attempts:?}");
    let (_, task) = server.call("GET", &format!("/v1/tasks/{id}"), None);
    assert_eq!(task["status"], "completed", "{task}");
}

/// An agent whose phone cannot take a callback (bob has none registered) costs the customer
/// nothing: the customer is not dialed, the attempt is recorded as the agent's, bob is made
/// unavailable and told why, and the callback goes back to the queue, where alice takes it
/// and reaches the customer on the first attempt that counts.
#[test]
fn an_agent_phone_that_fails_a_callback_gives_it_to_the_next_agent() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let asked = callback_asked(dir.path(), "+15554470");
    let (server, alice, _alice_ear) = (asked.server, asked.alice, asked.alice_ear);
    let customer_args = ["-p", asked.customer_port.as_str()];
    let bob = agent(&server, "bob", json!({}), json!({"voice": 1}));
    let mut bob_desk = crate::support::desk(&server, &bob);
    let task = accepts(&server, &bob, 0.0);
    let id = task["id"].as_str().unwrap().to_string();
    let current = |server: &Server| server.call("GET", &format!("/v1/tasks/{id}"), None).1;
    wait_until("the task to go back to the queue", 10, || {
        current(&server)["status"] != "assigned"
    });
    let back = current(&server);
    assert_eq!(back["status"], "pending", "{back}");
    let first = &back["callback"]["attempts"][0];
    assert_eq!(first["agent_missed"], true, "{back}");
    assert!(
        first["result"]
            .as_str()
            .unwrap()
            .contains("bob has no phone"),
        "{back}"
    );
    let (_, me) = server.call_as(Some(&bob), "GET", "/agent/v1/me", None);
    assert_eq!(me["activity"], "unavailable", "{me}");
    let told = (0..10)
        .map(|_| bob_desk.next())
        .find(|push| push["type"] == "activity")
        .expect("bob's desk hears why he is unavailable");
    assert!(
        told["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("no phone"),
        "{told}"
    );

    // Alice takes it: her phone rings, then the customer, who answers.
    let (customer_ear, customer) = customer_answers(dir.path(), &server, &customer_args, 3_000);
    server.call_as(
        Some(&alice),
        "PUT",
        "/agent/v1/activity",
        Some(json!({"activity": "available"})),
    );
    accepts(&server, &alice, 0.0);
    wait_until("the customer to be greeted", 20, || {
        customer_ear.loud_count() > 25
    });
    customer.succeeds();
    let done = current(&server);
    let attempts = done["callback"]["attempts"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), 2, "{done}");
    assert_eq!(attempts[1]["result"], "answered", "{done}");
    assert!(attempts[1]["agent_missed"].is_null(), "{done}");
}

/// Warm transfer with three legs: alice talks to the caller, consults bob (the caller hears
/// music, alice and bob hear each other), takes the call back (bob's leg is hung up, the
/// caller hears alice again), consults bob again and completes: her leg is hung up, the
/// caller talks to bob, who now holds the task.
#[test]
fn a_warm_transfer_consults_another_agent_while_the_caller_hears_music_then_hands_over() {
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(dir.path(), &[]);
    let (alice, alice_ear, alice_phone) = phone_for(&server, dir.path(), "alice", &[], false);
    std::thread::sleep(Duration::from_millis(50));
    let bob = agent(&server, "bob", json!({}), json!({"voice": 1}));
    let bob_ear = Ear::only(0);
    let (register, answer) =
        crate::sipp::agent_phone_doing(dir.path(), "bob", &bob, bob_ear.port(), "0", &[], false);
    let bob_port = crate::sipp::free_port().to_string();
    sipp(
        dir.path(),
        &register,
        sip_addr(&server),
        "bob",
        &["-p", bob_port.as_str()],
    )
    .succeeds();
    // Bob's phone answers twice (the first consult is taken back) and is hung up each time.
    let bob_phone = sipp(
        dir.path(),
        &answer,
        sip_addr(&server),
        "bob",
        &["-p", bob_port.as_str(), "-m", "2"],
    );
    let away = json!({"activity": "break"});
    server.call_as(Some(&bob), "PUT", "/agent/v1/activity", Some(away));
    // The caller talks for 25 s, then hangs up.
    let caller_ear = Ear::new();
    let scenario = Caller::dial(caller_ear.port(), "+15554470")
        .answered()
        .pause(2500)
        .press_info("1")
        .pause(25_000)
        .hang_up()
        .write(dir.path(), "warm-caller");
    let caller = sipp(dir.path(), &scenario, sip_addr(&server), NUMBER, &[]);
    let task = accepts(&server, &alice, 1.0);
    let id = task["id"].as_str().unwrap().to_string();
    crosses(&caller_ear, 0, 600.0, &alice_ear);
    let post = |token: &str, path: &str, body: Option<Value>| {
        server.call_as(
            Some(token),
            "POST",
            &format!("/agent/v1/tasks/{id}/{path}"),
            body.or(Some(json!({}))),
        )
    };
    let (status, e) = post(&alice, "consult", Some(json!({"agent": "bob"})));
    assert_eq!(status, 409, "bob is on a break: {e}");
    let (status, e) = post(&alice, "consult", Some(json!({"agent": "nobody"})));
    assert_eq!(status, 404, "{e}");
    let (status, e) = post(&alice, "consult/complete", None);
    assert_eq!(status, 409, "no consult under way: {e}");
    server.call_as(
        Some(&bob),
        "PUT",
        "/agent/v1/activity",
        Some(json!({"activity": "available"})),
    );
    let mut bob_desk = crate::support::desk(&server, &bob);
    let mut pushed = |kind: &str| loop {
        let push = bob_desk.next();
        if push["type"] == kind {
            return push;
        }
    };

    for complete in [false, true] {
        let (status, asked) = post(&alice, "consult", Some(json!({"agent": "bob"})));
        assert_eq!(status, 200, "{asked}");
        let told = pushed("consulted");
        assert_eq!(told["task"]["id"], id.as_str(), "{told}");
        let talking = |server: &Server| {
            let (_, t) = server.call("GET", &format!("/v1/tasks/{id}"), None);
            t["consult"]["stage"] == "talking"
        };
        wait_until("alice and bob to talk", 15, || talking(&server));
        let (status, e) = post(&alice, "transfer", Some(json!({"queue": "support"})));
        assert_eq!(status, 409, "no blind transfer during a consult: {e}");
        std::thread::sleep(Duration::from_millis(300));
        // The caller hears music; alice and bob hear each other.
        let before = caller_ear.loud_count();
        std::thread::sleep(Duration::from_millis(600));
        assert!(
            caller_ear.loud_count() >= before + 20,
            "the caller hears music"
        );
        crosses(&alice_ear, 0, 600.0, &bob_ear);
        crosses(&bob_ear, 0, 1000.0, &alice_ear);
        let (status, done) = post(
            &alice,
            if complete {
                "consult/complete"
            } else {
                "consult/cancel"
            },
            None,
        );
        assert_eq!(status, 200, "{done}");
        let over = pushed("consult-over");
        let expected = if complete {
            "the call is yours"
        } else {
            "the call went back: taken back by the agent"
        };
        assert_eq!(over["reason"], expected, "{over}");
        std::thread::sleep(Duration::from_millis(500));
        if !complete {
            // Taken back: the caller and alice hear each other again.
            crosses(&alice_ear, 0, 1000.0, &caller_ear);
            let (_, t) = server.call("GET", &format!("/v1/tasks/{id}"), None);
            assert_eq!(t["agent"], "alice", "{t}");
            assert_eq!(t["attributes"]["consult_failed"], "taken back by the agent");
        }
    }
    // Handed over: bob holds the task and talks to the caller; alice's phone was hung up.
    alice_phone.succeeds();
    let (_, t) = server.call("GET", &format!("/v1/tasks/{id}"), None);
    assert_eq!(t["agent"], "bob", "{t}");
    assert_eq!(t["attributes"]["transferred_from"], "alice", "{t}");
    crosses(&caller_ear, 0, 600.0, &bob_ear);
    crosses(&bob_ear, 0, 1000.0, &caller_ear);
    let (_, me) = server.call_as(Some(&alice), "GET", "/agent/v1/me", None);
    assert!(me["reservation"].is_null(), "{me}");
    caller.succeeds();
    bob_phone.succeeds();
    all_calls_over(&server);
    let (_, t) = server.call("GET", &format!("/v1/tasks/{id}"), None);
    assert_eq!(t["status"], "completed", "{t}");
    // The contact's transcript shows every leg, in order.
    assert_eq!(
        legs(&server),
        [
            "connected to alice's phone",
            "alice consulted bob; the call stayed with alice (taken back by the agent)",
            "alice handed the call over to bob",
        ]
    );
}

/// Alice asks to transfer a call to a number and hangs up while it rings; the number turns
/// out busy: nobody is left to take the caller back, so the task's conversation ends and the
/// flow ends the call (the caller is not left on a dead line).
#[test]
fn an_agent_who_hangs_up_while_a_transfer_rings_does_not_leave_the_caller_on_a_dead_line() {
    use crate::sipp::{PhoneAct, busy_after, free_port};
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let server = sip_ivr_server(dir.path(), &[]);
    let (alice, _ear, alice_phone) =
        phone_for(&server, dir.path(), "alice", &[PhoneAct::Talk(1500)], true);
    let target_port = free_port().to_string();
    let busy = busy_after(dir.path(), "target", 3000);
    let target = sipp(
        dir.path(),
        &busy,
        sip_addr(&server),
        "target",
        &["-p", target_port.as_str()],
    );
    let caller_ear = Ear::new();
    let caller = sales_caller(&server, dir.path(), &caller_ear, "+15554471");
    let task = accepts(&server, &alice, 1.0);
    let id = task["id"].as_str().unwrap();
    let (status, asked) = server.call_as(
        Some(&alice),
        "POST",
        &format!("/agent/v1/tasks/{id}/transfer"),
        Some(json!({"number": format!("sip:target@127.0.0.1:{target_port}")})),
    );
    assert_eq!(status, 200, "{asked}");
    alice_phone.succeeds();
    target.succeeds();
    caller.succeeds();
    all_calls_over(&server);
    let (_, t) = server.call("GET", &format!("/v1/tasks/{id}"), None);
    assert_eq!(t["status"], "completed", "{t}");
    assert!(
        t["attributes"]["transfer_failed"]
            .as_str()
            .unwrap_or_default()
            .contains("486"),
        "{t}"
    );
}

/// Switchboard is killed while a callback attempt rings the customer: after the restart that
/// attempt is recorded as interrupted and never dialed again; the next attempt follows the
/// retry interval and reaches the customer. The customer's line saw one INVITE per attempt.
#[test]
fn a_callback_attempt_interrupted_by_a_sigkill_is_not_dialed_again() {
    use crate::sipp::rings_unanswered;
    private_network();
    let dir = tempfile::tempdir().unwrap();
    let asked = callback_asked(dir.path(), "+15554480");
    let (server, alice, alice_ear) = (asked.server, asked.alice, asked.alice_ear);
    // The first call to alice's phone is never hung up (its server dies): not awaited.
    let _phone = asked.phone;
    let (env, customer_port) = (asked.env, asked.customer_port);
    let env = [("SWITCHBOARD_SIP_TRUNK", env.as_str())];
    let ringing = rings_unanswered(dir.path(), "customer", 4000);
    let customer_args = ["-p", customer_port.as_str()];
    let first = sipp(
        dir.path(),
        &ringing,
        sip_addr(&server),
        "customer",
        &customer_args,
    );
    let available = json!({"activity": "available"});
    server.call_as(Some(&alice), "PUT", "/agent/v1/activity", Some(available));
    let task = accepts(&server, &alice, 0.0);
    let id = task["id"].as_str().unwrap().to_string();
    let attempts = |server: &Server| {
        let (_, task) = server.call("GET", &format!("/v1/tasks/{id}"), None);
        task["callback"]["attempts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    // The agent answered and the customer's phone rings: kill.
    wait_until("the customer's phone to ring", 15, || {
        alice_ear.loud_count() > 10
    });
    assert!(
        attempts(&server)[0]["result"].is_null(),
        "attempt 1 under way"
    );
    server.kill();
    assert!(
        first.wait().success(),
        "the customer's phone saw attempt 1 ring once"
    );

    let server = crate::support::sip_ivr_server_with_env(dir.path(), &[], &env);
    // The restarted node closes the attempts it left as soon as its dialer starts, which may
    // be just after it listens.
    wait_until("attempt 1 to be recorded as interrupted", 10, || {
        attempts(&server)[0]["result"].is_string()
    });
    let after = attempts(&server);
    assert_eq!(after.len(), 1, "{after:?}");
    let result = after[0]["result"].as_str().unwrap_or_default();
    assert!(result.starts_with("interrupted"), "{after:?}");
    let (_customer_ear, customer) = customer_answers(dir.path(), &server, &customer_args, 1000);
    customer.succeeds();
    wait_until("attempt 2 to be recorded", 10, || {
        attempts(&server).len() == 2
    });
    let all = attempts(&server);
    assert_eq!(all[1]["result"], "answered", "{all:?}");
    assert_eq!(all[1]["n"], 2);
}

/// A caller who asked to be called back, waiting for alice.
struct CallbackAsked {
    server: Server,
    /// `sip.trunk`: where the customer's phone answers.
    env: String,
    customer_port: String,
    alice: String,
    alice_ear: Ear,
    /// Alice's phone, answering two calls (one per attempt) and hung up each time.
    phone: crate::sipp::Sipp,
}

/// A server whose trunk is a free port, sales retrying callbacks after 3 s, alice on a break
/// with a registered phone, and a caller from `from` who waited in sales and took the
/// callback offer (the call ended, the task kept its place).
fn callback_asked(dir: &std::path::Path, from: &str) -> CallbackAsked {
    use crate::sipp::{agent_phone_doing, free_port};
    let customer_port = free_port().to_string();
    let trunk = format!("127.0.0.1:{customer_port}");
    let env = [("SWITCHBOARD_SIP_TRUNK", trunk.as_str())];
    let server = crate::support::sip_ivr_server_with_env(dir, &[], &env);
    let queue = json!({"wait_event_secs": 2, "callback_retry_secs": 3, "callback_attempts": 3});
    assert_eq!(server.call("PUT", "/v1/queues/sales", Some(queue)).0, 200);
    let alice = agent(&server, "alice", json!({}), json!({"voice": 1}));
    let away = json!({"activity": "break"});
    server.call_as(Some(&alice), "PUT", "/agent/v1/activity", Some(away));
    let alice_ear = Ear::only(0);
    let (register, answer) =
        agent_phone_doing(dir, "alice", &alice, alice_ear.port(), "0", &[], false);
    let phone_port = free_port().to_string();
    let args = ["-p", phone_port.as_str()];
    sipp(dir, &register, sip_addr(&server), "alice", &args).succeeds();
    let args = ["-p", phone_port.as_str(), "-m", "2"];
    let phone = sipp(dir, &answer, sip_addr(&server), "alice", &args);
    // The caller presses 1 for sales, then 1 again when offered a callback.
    let caller_ear = Ear::new();
    let scenario = Caller::dial(caller_ear.port(), from)
        .answered()
        .pause(2500)
        .press_info("1")
        .pause(4500)
        .press_info("1")
        .expect_bye(20_000)
        .write(dir, &format!("callback-caller-{from}"));
    sipp(dir, &scenario, sip_addr(&server), NUMBER, &[]).succeeds();
    CallbackAsked {
        server,
        env: trunk,
        customer_port,
        alice,
        alice_ear,
        phone,
    }
}

/// The customer's phone behind the trunk (`args` give its port), answering the next call,
/// talking `talk_ms`, then hanging up; its ear and its sipp.
fn customer_answers(
    dir: &std::path::Path,
    server: &Server,
    args: &[&str],
    talk_ms: u64,
) -> (Ear, crate::sipp::Sipp) {
    use crate::sipp::{PhoneAct, agent_phone_doing};
    let ear = Ear::only(0);
    let acts = [PhoneAct::Talk(talk_ms)];
    let (_, answers) = agent_phone_doing(dir, "customer", "", ear.port(), "0", &acts, true);
    let phone = sipp(dir, &answers, sip_addr(server), "customer", args);
    (ear, phone)
}

/// The legs of the most recent contact's call, as its transcript tells them.
fn legs(server: &Server) -> Vec<String> {
    let contact = last_contact(server);
    let id = contact["id"].as_str().unwrap();
    let (_, said) = server.call("GET", &format!("/v1/contacts/{id}/transcript"), None);
    said.as_array()
        .unwrap()
        .iter()
        .filter(|s| s["from"] == "switchboard")
        .map(|s| s["text"].as_str().unwrap().to_string())
        .collect()
}
