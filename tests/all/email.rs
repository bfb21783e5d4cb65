//! The e-mail channel with real peers: Python's `smtplib` sends to the SMTP receiver, and
//! `aiosmtpd` stands in for the relay mail goes out through (tests/all/mail_peer.py). The
//! sample `email-desk` flow answers.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, agent, guest};

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/all/mail_peer.py");

/// The relay: a real SMTP server keeping what it gets in a directory.
struct Relay {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Relay {
    fn start(dir: &Path, port: u16) -> Relay {
        std::fs::create_dir_all(dir).unwrap();
        let mut child = Command::new("python3")
            .args([PEER, "relay", &port.to_string()])
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs (aiosmtpd from PyPI)");
        let mut ready = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut ready,
        )
        .unwrap();
        assert_eq!(ready.trim(), "ready", "the relay started");
        Relay {
            child,
            dir: dir.to_path_buf(),
            port,
        }
    }

    /// Every message taken so far, oldest first: its envelope and its text.
    fn messages(&self) -> Vec<(Value, String)> {
        let mut names: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|json| {
                let envelope = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
                let text = std::fs::read_to_string(json.with_extension("eml")).unwrap();
                (envelope, text)
            })
            .collect()
    }

    /// Waits until `n` messages were taken; returns them.
    fn wait_for(&self, n: usize) -> Vec<(Value, String)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "the relay got {} of {n} messages: {got:#?}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `message` with smtplib; the outcome as the peer printed it.
fn send(server: &Server, from: &str, to: &str, message: &str) -> Value {
    send_with(server, from, to, message, false)
}

fn send_with(server: &Server, from: &str, to: &str, message: &str, starttls: bool) -> Value {
    let smtp = server.smtp.expect("started with --smtp");
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(message.as_bytes()).unwrap();
    let mut command = Command::new("python3");
    command
        .args([
            PEER,
            "send",
            "127.0.0.1",
            &smtp.port().to_string(),
            from,
            to,
        ])
        .arg(file.path());
    if starttls {
        command.arg("--starttls");
    }
    let out = command.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A plain mail, CRLF line ends.
fn mail(from: &str, subject: &str, id: &str, extra: &[&str], body: &str) -> String {
    let mut lines = vec![
        format!("From: {from}"),
        "To: Acme Support <support@acme.test>".into(),
        format!("Subject: {subject}"),
        format!("Message-ID: <{id}>"),
        "Date: Fri, 04 Dec 2026 10:00:00 +0000".into(),
        "MIME-Version: 1.0".into(),
    ];
    lines.extend(extra.iter().map(|s| s.to_string()));
    if !extra.iter().any(|h| h.starts_with("Content-Type")) {
        lines.push("Content-Type: text/plain; charset=utf-8".into());
    }
    format!(
        "{}\r\n\r\n{}\r\n",
        lines.join("\r\n"),
        body.replace('\n', "\r\n")
    )
}

/// A header of a received message (unfolded), if present.
fn header(message: &str, name: &str) -> Option<String> {
    let head = message.split("\r\n\r\n").next().unwrap_or(message);
    let head = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// The decoded plain-text body of a received message.
fn body(message: &str) -> String {
    let parsed = mail_parser::MessageParser::default()
        .parse(message.as_bytes())
        .expect("the relay got a mail");
    parsed
        .body_text(0)
        .expect("a text body")
        .replace("\r\n", "\n")
}

/// A server with the sample e-mail flow bound to support@acme.test, the `support` queue, SMTP
/// on a free port and the relay at `relay_port`.
fn email_server(dir: &Path, relay_port: u16, extra: &[&str]) -> Server {
    let flow = format!("email-desk={}", guest("email-desk").display());
    let relay = format!("smtp://127.0.0.1:{relay_port}");
    let mut args = vec![
        "--deploy",
        &flow,
        "--bind",
        "support@acme.test=email-desk",
        "--setting",
        "email-desk:orders=1001:shipped,1002:being prepared",
        "--queue",
        "support",
        "--smtp",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    Server::start_with_env(
        dir,
        &args,
        &[
            ("SWITCHBOARD_EMAIL_RELAY", relay.as_str()),
            ("SWITCHBOARD_EMAIL_INBOUND_SECRET", "hook-secret"),
        ],
    )
}

/// E-mail contacts, newest first.
fn email_contacts(server: &Server) -> Vec<Value> {
    let (status, contacts) = server.call("GET", "/v1/contacts?limit=200", None);
    assert_eq!(status, 200, "{contacts}");
    contacts
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["channel"] == "email")
        .cloned()
        .collect()
}

fn wait_until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mail_events(server: &Server, contact: &str) -> Vec<Value> {
    let (_, trace) = server.call("GET", &format!("/v1/contacts/{contact}/trace"), None);
    trace
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["event"]["type"] == "mail")
        .map(|s| s["event"].clone())
        .collect()
}

/// A counter summed over its labels.
fn counted(server: &Server, name: &str) -> f64 {
    let (status, text) = server.call_as(None, "GET", "/metrics", None);
    assert_eq!(status, 200);
    text.as_str()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = if rest.starts_with('{') {
                rest.split_once("} ")?.1
            } else {
                rest.strip_prefix(' ')?
            };
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

fn angle(id: &str) -> String {
    format!("<{id}>")
}

#[test]
fn a_mail_is_acknowledged_threaded_and_its_replies_and_the_agents_answer_stay_on_the_contact() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), free_port());
    let server = email_server(&dir.path().join("data"), relay.port, &[]);
    let desk = agent(&server, "sara", json!({}), json!({"email": 1}));

    // 1. A customer writes: the flow acknowledges with a ticket number and queues the mail.
    let first = mail(
        "Jane Roe <jane@example.com>",
        "Broken kettle",
        "k1@example.com",
        &[],
        "My kettle leaks.\nWhat now?",
    );
    assert_eq!(
        send(&server, "jane@example.com", "support@acme.test", &first)["ok"],
        true
    );
    let ack = &relay.wait_for(1)[0];
    assert_eq!(ack.0["rcpt_tos"], json!(["jane@example.com"]));
    let ack_text = &ack.1;
    assert_eq!(header(ack_text, "Subject").unwrap(), "Re: Broken kettle");
    assert_eq!(header(ack_text, "In-Reply-To").unwrap(), "<k1@example.com>");
    assert_eq!(header(ack_text, "References").unwrap(), "<k1@example.com>");
    assert_eq!(header(ack_text, "Auto-Submitted").unwrap(), "auto-replied");
    assert!(
        header(ack_text, "From")
            .unwrap()
            .contains("support@acme.test")
    );
    let ack_body = body(ack_text);
    assert!(ack_body.contains("Hello Jane,"), "{ack_body}");
    assert!(ack_body.contains("Your ticket number is T-"), "{ack_body}");
    let ack_id = header(ack_text, "Message-ID").unwrap();
    let ack_id = ack_id.trim_matches(|c| c == '<' || c == '>').to_string();

    let contacts = email_contacts(&server);
    assert_eq!(contacts.len(), 1, "{contacts:#?}");
    let contact = contacts[0]["id"].as_str().unwrap().to_string();
    assert_eq!(contacts[0]["from"], "jane@example.com");
    assert_eq!(contacts[0]["to"], "support@acme.test");
    let mails = mail_events(&server, &contact);
    assert_eq!(mails[0]["subject"], "Broken kettle");
    assert_eq!(mails[0]["from_name"], "Jane Roe");
    assert_eq!(
        mails[0]["text"],
        "My kettle leaks.\r\nWhat now?".replace("\r\n", "\n")
    );
    let (_, tasks) = server.call("GET", "/v1/tasks", None);
    assert!(
        tasks.to_string().contains(&contact),
        "a task waits in support: {tasks}"
    );

    // 2. The customer answers the acknowledgement (In-Reply-To it), with a photo: the same
    //    contact, which adds it to the ticket.
    let reply = mail(
        "Jane Roe <jane@example.com>",
        "Re: Broken kettle",
        "k2@example.com",
        &[
            &format!("In-Reply-To: {}", angle(&ack_id)),
            &format!("References: <k1@example.com> {}", angle(&ack_id)),
            "Content-Type: multipart/mixed; boundary=\"part\"",
        ],
        "--part\nContent-Type: text/plain; charset=utf-8\n\nHere is a photo.\n--part\nContent-Type: image/png\nContent-Disposition: attachment; filename=\"kettle.png\"\nContent-Transfer-Encoding: base64\n\niVBORw0KGgo=\n--part--",
    );
    assert_eq!(
        send(&server, "jane@example.com", "support@acme.test", &reply)["ok"],
        true
    );
    let second = &relay.wait_for(2)[1].1;
    assert!(
        body(second).contains("added your message to ticket"),
        "{second}"
    );
    assert_eq!(header(second, "In-Reply-To").unwrap(), "<k2@example.com>");
    assert_eq!(
        header(second, "References").unwrap(),
        format!("<k1@example.com> {} <k2@example.com>", angle(&ack_id))
    );
    assert_eq!(
        email_contacts(&server).len(),
        1,
        "the reply continued the contact"
    );
    let mails = mail_events(&server, &contact);
    assert_eq!(mails.len(), 2);
    assert_eq!(mails[1]["text"], "Here is a photo.");
    assert_eq!(
        mails[1]["attachments"],
        json!([{"name": "kettle.png", "content_type": "image/png", "size": 8}])
    );

    // 3. An agent takes the ticket and answers: threaded on the customer's last mail, quoted,
    //    and not marked automatic.
    let (_, me) = server.call_as(Some(&desk), "GET", "/agent/v1/me", None);
    let reservation = me["reservation"]["id"].as_str().expect("offered to sara");
    let task = me["reservation"]["task"].as_str().unwrap().to_string();
    let (status, _) = server.call_as(
        Some(&desk),
        "POST",
        &format!("/agent/v1/reservations/{reservation}/accept"),
        Some(json!({})),
    );
    assert_eq!(status, 200);
    let (_, conversation) = server.call_as(
        Some(&desk),
        "GET",
        &format!("/agent/v1/tasks/{task}/messages"),
        None,
    );
    assert!(
        conversation.to_string().contains("Here is a photo.")
            && conversation.to_string().contains("kettle.png"),
        "the agent reads the thread: {conversation}"
    );
    // The photo is there to open, for the agent and for supervisors.
    let (status, files) = server.call_as(
        Some(&desk),
        "GET",
        &format!("/agent/v1/tasks/{task}/attachments"),
        None,
    );
    assert_eq!(status, 200, "{files}");
    assert_eq!(files[0]["name"], "kettle.png");
    assert_eq!(files[0]["kept"], true);
    let path = format!(
        "/agent/v1/tasks/{task}/attachments/{}/0",
        files[0]["mail"].as_str().unwrap()
    );
    let request = ureq::http::Request::builder()
        .uri(format!("{}{path}", server.url))
        .header("Authorization", format!("Bearer {desk}"))
        .body(Vec::<u8>::new())
        .unwrap();
    let mut response = ureq::Agent::new_with_defaults().run(request).unwrap();
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"kettle.png\""
    );
    let bytes = response.body_mut().read_to_vec().unwrap();
    assert_eq!(bytes, b"\x89PNG\r\n\x1a\n");
    let (status, _) = server.call_as(
        Some(&desk),
        "GET",
        &format!("/agent/v1/tasks/{task}/attachments/x/0"),
        None,
    );
    assert_eq!(status, 404);
    let (status, sent) = server.call_as(
        Some(&desk),
        "POST",
        &format!("/agent/v1/tasks/{task}/messages"),
        Some(json!({"text": "Sorry about that! A new kettle is on its way."})),
    );
    assert_eq!(status, 200, "{sent}");
    let answer = &relay.wait_for(3)[2];
    assert_eq!(answer.0["rcpt_tos"], json!(["jane@example.com"]));
    let answer = &answer.1;
    assert_eq!(header(answer, "In-Reply-To").unwrap(), "<k2@example.com>");
    assert_eq!(header(answer, "Subject").unwrap(), "Re: Broken kettle");
    assert_eq!(header(answer, "Auto-Submitted"), None, "a person wrote it");
    let text = body(answer);
    assert!(
        text.starts_with("Sorry about that! A new kettle is on its way."),
        "{text}"
    );
    assert!(
        text.contains("Jane Roe wrote:\n> Here is a photo."),
        "{text}"
    );

    // 4. The customer answers the agent: to the agent, not the flow (no automatic answer).
    let answer_id = header(answer, "Message-ID").unwrap();
    let thanks = mail(
        "jane@example.com",
        "Re: Broken kettle",
        "k3@example.com",
        &[&format!("In-Reply-To: {answer_id}")],
        "Thank you!",
    );
    assert_eq!(
        send(&server, "jane@example.com", "support@acme.test", &thanks)["ok"],
        true
    );
    wait_until("the thanks in the conversation", || {
        let (_, said) = server.call("GET", &format!("/v1/contacts/{contact}/transcript"), None);
        said.to_string().contains("Thank you!").then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        relay.messages().len(),
        3,
        "no automatic answer to a mail for the agent"
    );
    let (_, kept) = server.call("GET", &format!("/v1/contacts/{contact}/mail"), None);
    let kept = kept.as_array().unwrap();
    assert_eq!(kept.len(), 3, "{kept:#?}");
    assert!(kept.iter().all(|m| m["sent_ms"].is_u64()));
    assert_eq!(counted(&server, "switchboard_email_received_total"), 3.0);
}

#[test]
fn an_order_status_mail_is_answered_by_the_flow_and_a_reply_to_an_ended_contact_starts_a_linked_one()
 {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), free_port());
    let server = email_server(&dir.path().join("data"), relay.port, &[]);
    let question = mail(
        "ada@example.com",
        "Order status",
        "o1@example.com",
        &[],
        "Hello, where is order 1001?",
    );
    assert_eq!(
        send(&server, "ada@example.com", "support@acme.test", &question)["ok"],
        true
    );
    let answer = &relay.wait_for(1)[0].1;
    assert!(body(answer).contains("Order 1001 is shipped."), "{answer}");
    let (_, tasks) = server.call("GET", "/v1/tasks", None);
    assert_eq!(
        tasks.as_array().map_or(0, Vec::len),
        0,
        "no agent needed: {tasks}"
    );

    // The contact ends; a late reply by its plus-address starts a new one, linked.
    let contact = email_contacts(&server)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = server.call(
        "POST",
        &format!("/v1/contacts/{contact}/events"),
        Some(json!({"type": "hangup"})),
    );
    assert!(status == 200 || status == 409, "{status}");
    let (_, session) = server.call("GET", &format!("/v1/contacts/{contact}"), None);
    assert_eq!(session["status"]["state"], "ended", "{session}");
    let late = mail(
        "ada@example.com",
        "Re: Order status",
        "o2@example.com",
        &[],
        "And order 1002?",
    );
    let plus = format!("support+{contact}@acme.test");
    assert_eq!(send(&server, "ada@example.com", &plus, &late)["ok"], true);
    let answer = &relay.wait_for(2)[1].1;
    assert!(
        body(answer).contains("Order 1002 is being prepared."),
        "{answer}"
    );
    let contacts = email_contacts(&server);
    assert_eq!(contacts.len(), 2);
    let newer = &contacts[0];
    assert_ne!(newer["id"], contact.as_str());
    assert!(
        newer["attributes"]
            .to_string()
            .contains(&format!("[\"previous_contact\",\"{contact}\"]")),
        "{newer}"
    );
}

#[test]
fn robots_bounces_and_absences_get_no_answer_and_a_mail_loop_stops_at_the_hourly_limit() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), free_port());
    let server = email_server(&dir.path().join("data"), relay.port, &[]);
    // Amy writes and gets her acknowledgement.
    let question = mail(
        "Amy <amy@example.com>",
        "Hello",
        "p1@example.com",
        &[],
        "A question.",
    );
    assert_eq!(
        send(&server, "amy@example.com", "support@acme.test", &question)["ok"],
        true
    );
    let ack = relay.wait_for(1)[0].1.clone();
    let ack_id = header(&ack, "Message-ID").unwrap();
    let amy = email_contacts(&server)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Her out-of-office answers the acknowledgement, and so does a bounce (her mailbox is
    // full): both reach her contact's flow, which would answer; the host sends nothing.
    let out_of_office = mail(
        "Amy <amy@example.com>",
        "Out of Office: Re: Hello",
        "r1@example.com",
        &[
            &format!("In-Reply-To: {ack_id}"),
            "X-Autoreply: yes",
            "X-Auto-Response-Suppress: All",
        ],
        "I am away until Monday.",
    );
    let bounce = mail(
        "Mail Delivery System <MAILER-DAEMON@mx.example.com>",
        "Undelivered Mail Returned to Sender",
        "r2@mx.example.com",
        &[
            &format!("In-Reply-To: {ack_id}"),
            "Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"",
        ],
        "--r\nContent-Type: text/plain\n\nThe mail could not be delivered: mailbox full.\n--r\nContent-Type: message/delivery-status\n\nStatus: 4.2.2\n--r--",
    );
    assert_eq!(
        send(
            &server,
            "amy@example.com",
            "support@acme.test",
            &out_of_office
        )["ok"],
        true
    );
    assert_eq!(send(&server, "", "support@acme.test", &bounce)["ok"], true);
    // A vendor's auto-reply starts a contact of its own: the sample flow ends it, no task.
    let auto_reply = mail(
        "robot@vendor.test",
        "Automatic reply: your message",
        "r3@vendor.test",
        &["Auto-Submitted: auto-replied"],
        "We got your message.",
    );
    assert_eq!(
        send(
            &server,
            "robot@vendor.test",
            "support@acme.test",
            &auto_reply
        )["ok"],
        true
    );
    // A person's mail after them is answered: by then the three were handled, unanswered.
    let person = mail(
        "zed@example.com",
        "Hi",
        "p2@example.com",
        &[],
        "Another question.",
    );
    assert_eq!(
        send(&server, "zed@example.com", "support@acme.test", &person)["ok"],
        true
    );
    relay.wait_for(2);
    std::thread::sleep(Duration::from_millis(500));
    let got = relay.messages();
    let to: Vec<_> = got.iter().map(|(e, _)| e["rcpt_tos"][0].clone()).collect();
    assert_eq!(
        to,
        [json!("amy@example.com"), json!("zed@example.com")],
        "{got:#?}"
    );

    let mails = mail_events(&server, &amy);
    let subjects: Vec<_> = mails.iter().map(|m| m["subject"].clone()).collect();
    assert_eq!(
        subjects,
        [
            json!("Hello"),
            json!("Out of Office: Re: Hello"),
            json!("Undelivered Mail Returned to Sender")
        ],
        "the flow heard all three on amy's contact"
    );
    assert_eq!(
        counted(&server, "switchboard_email_answers_suppressed_total"),
        2.0
    );
    let contacts = email_contacts(&server);
    assert_eq!(
        contacts.len(),
        3,
        "amy, the vendor's robot, zed: {contacts:#?}"
    );
    let robot = contacts
        .iter()
        .find(|c| c["from"] == "robot@vendor.test")
        .unwrap();
    assert_eq!(mail_events(&server, robot["id"].as_str().unwrap()).len(), 1);
    assert_eq!(robot["status"]["state"], "ended", "{robot}");
    assert!(
        robot["attributes"]
            .to_string()
            .contains("[\"email_robot\",\"auto-submitted\"]")
    );
    let (_, tasks) = server.call("GET", "/v1/tasks", None);
    assert_eq!(
        tasks.as_array().unwrap().len(),
        2,
        "amy's and zed's: {tasks}"
    );

    // A robot that answers every mail without saying so: the loop stops at 5 answers an hour.
    let mut last: Option<String> = None;
    let mut robot_sent = 0;
    loop {
        let extra = last
            .as_ref()
            .map(|id| format!("In-Reply-To: {id}"))
            .into_iter()
            .collect::<Vec<_>>();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let message = mail(
            "echo@robots.test",
            "Re: ticket",
            &format!("echo{robot_sent}@robots.test"),
            &extra,
            "Thank you for your mail.",
        );
        let before = relay.messages().len();
        let suppressed = counted(&server, "switchboard_email_answers_suppressed_total");
        assert_eq!(
            send(&server, "echo@robots.test", "support@acme.test", &message)["ok"],
            true
        );
        robot_sent += 1;
        // Each mail is either answered (the relay gets the answer) or its answer suppressed
        // (the counter moves); the test waits for one of the two, not for a set time.
        let deadline = Instant::now() + Duration::from_secs(30);
        let answered = loop {
            let all = relay.messages();
            if all.len() > before {
                break Some(all[all.len() - 1].1.clone());
            }
            if counted(&server, "switchboard_email_answers_suppressed_total") > suppressed {
                break None;
            }
            assert!(
                Instant::now() < deadline,
                "mail {robot_sent} was neither answered nor its answer suppressed"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        match answered {
            Some(text) => last = header(&text, "Message-ID"),
            None => break,
        }
        assert!(robot_sent < 20, "the loop did not stop");
    }
    let to_robot = relay
        .messages()
        .iter()
        .filter(|(e, _)| e["rcpt_tos"] == json!(["echo@robots.test"]))
        .count();
    assert_eq!(to_robot, 5, "5 automatic answers an hour, then none");
    assert_eq!(robot_sent, 6);
    assert!(counted(&server, "switchboard_email_answers_suppressed_total") >= 3.0);
}

#[test]
fn unknown_recipients_oversized_and_malformed_mail_get_clear_answers_and_tls_is_offered() {
    let dir = tempfile::tempdir().unwrap();
    // A certificate for STARTTLS.
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=mx.acme.test",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[email]\nmax_message_bytes = 20000\ntls_cert = {:?}\ntls_key = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    )
    .unwrap();
    let relay = Relay::start(&dir.path().join("relay"), free_port());
    let config_arg = config.display().to_string();
    let server = email_server(
        &dir.path().join("data"),
        relay.port,
        &["--config", &config_arg],
    );

    let hello = mail("ann@example.com", "Hi", "u1@example.com", &[], "Hello.");
    let refused = send(&server, "ann@example.com", "nobody@acme.test", &hello);
    assert_eq!(refused["ok"], false);
    assert_eq!(refused["code"], 550, "{refused}");

    let big = mail(
        "ann@example.com",
        "Big",
        "u2@example.com",
        &[],
        &"x".repeat(30_000),
    );
    let refused = send(&server, "ann@example.com", "support@acme.test", &big);
    assert_eq!(refused["code"], 552, "{refused}");

    // Over TLS, a mail whose MIME is broken: taken, a contact with what could be read.
    let broken = "From: ann@example.com\r\nSubject: Broken =?utf-8?b?###?=\r\nContent-Type: multipart/mixed; boundary=\"never\"\r\nContent-Transfer-Encoding: base64\r\n\r\n--wrong\r\nContent-Type: text/plain\r\n\r\n\u{1}\u{7} half a part";
    let taken = send_with(
        &server,
        "ann@example.com",
        "support@acme.test",
        broken,
        true,
    );
    assert_eq!(taken["ok"], true, "{taken}");
    assert_eq!(taken["tls"], true);
    let contact = wait_until("the broken mail's contact", || {
        email_contacts(&server).first().cloned()
    });
    let mails = wait_until("its mail event", || {
        let m = mail_events(&server, contact["id"].as_str().unwrap());
        (!m.is_empty()).then_some(m)
    });
    assert!(
        mails[0]["subject"].as_str().unwrap().starts_with("Broken"),
        "{mails:?}"
    );
    assert_eq!(relay.wait_for(1).len(), 1, "it was acknowledged too");
    assert_eq!(
        email_contacts(&server).len(),
        1,
        "the refused mails made no contact"
    );
    let (status, _) = server.call("GET", "/healthz", None);
    assert_eq!(status, 200);
}

#[test]
fn replies_wait_for_a_relay_that_is_down_and_a_kill_after_250_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let server = email_server(&data, port, &[]);
    let first = mail("kim@example.com", "Help", "d1@example.com", &[], "Hello?");
    assert_eq!(
        send(&server, "kim@example.com", "support@acme.test", &first)["ok"],
        true
    );
    let contact = wait_until("the contact", || email_contacts(&server).first().cloned());
    let contact = contact["id"].as_str().unwrap().to_string();
    let waiting = wait_until("an attempt that failed", || {
        let (_, mail) = server.call("GET", &format!("/v1/contacts/{contact}/mail"), None);
        let first = mail.as_array()?.first()?.clone();
        (first["attempts"].as_u64()? >= 1).then_some(first)
    });
    assert!(waiting["sent_ms"].is_null());
    assert!(waiting["last_error"].is_string(), "{waiting}");

    // The relay comes back: the answer goes out.
    let relay = Relay::start(&dir.path().join("relay"), port);
    let got = relay.wait_for(1);
    assert_eq!(got[0].0["rcpt_tos"], json!(["kim@example.com"]));

    // SIGKILL right after a 250: after the restart the mail's contact is there and its answer
    // goes out once.
    let second = mail(
        "lee@example.com",
        "Refund",
        "d2@example.com",
        &[],
        "Money back?",
    );
    assert_eq!(
        send(&server, "lee@example.com", "support@acme.test", &second)["ok"],
        true
    );
    server.kill();
    let server = email_server(&data, port, &[]);
    let got = relay.wait_for(2);
    std::thread::sleep(Duration::from_secs(2));
    let got_now = relay.messages();
    // One answer to lee. Killed while the relay was taking it, the outbox sends it again on
    // restart (it cannot know whether the relay's 250 came): the copy is the same message,
    // same Message-ID, which receivers drop. Never a second, different answer.
    let mut ids: Vec<String> = got_now
        .iter()
        .map(|(_, text)| header(text, "Message-ID").unwrap())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 2, "one answer each to kim and lee: {got:#?}");
    assert!(
        got_now[1..]
            .iter()
            .all(|(e, _)| e["rcpt_tos"] == json!(["lee@example.com"])),
        "{got_now:#?}"
    );
    let from_lee: Vec<_> = email_contacts(&server)
        .into_iter()
        .filter(|c| c["from"] == "lee@example.com")
        .collect();
    assert_eq!(from_lee.len(), 1, "{from_lee:#?}");
    assert_eq!(
        mail_events(&server, from_lee[0]["id"].as_str().unwrap()).len(),
        1
    );

    // A mailbox the relay refuses for good (550): the answer is kept as failed with the
    // relay's words, and not tried again.
    let before = relay.messages().len();
    let lost = mail("gone@example.com", "Hi", "d3@example.com", &[], "Anyone?");
    assert_eq!(
        send(&server, "gone@example.com", "support@acme.test", &lost)["ok"],
        true
    );
    let gone = wait_until("gone's contact", || {
        email_contacts(&server)
            .into_iter()
            .find(|c| c["from"] == "gone@example.com")
    });
    let gone = gone["id"].as_str().unwrap().to_string();
    let failed = wait_until("the refused answer", || {
        let (_, mail) = server.call("GET", &format!("/v1/contacts/{gone}/mail"), None);
        let first = mail.as_array()?.first()?.clone();
        (first["state"] == "failed").then_some(first)
    });
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("no such mailbox"),
        "{failed}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let (_, mail) = server.call("GET", &format!("/v1/contacts/{gone}/mail"), None);
    assert_eq!(mail[0]["attempts"], 1, "{mail}");
    assert_eq!(relay.messages().len(), before);
    let (_, kim_mail) = server.call("GET", &format!("/v1/contacts/{contact}/mail"), None);
    assert_eq!(kim_mail[0]["state"], "sent", "{kim_mail}");
}

#[test]
fn a_crash_between_starting_the_contact_and_noting_it_starts_no_second_contact() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let relay = Relay::start(&dir.path().join("relay"), free_port());
    let flow = format!("email-desk={}", guest("email-desk").display());
    let relay_url = format!("smtp://127.0.0.1:{}", relay.port);
    let doomed = Server::start_with_env(
        &data,
        &[
            "--deploy",
            &flow,
            "--bind",
            "support@acme.test=email-desk",
            "--queue",
            "support",
            "--smtp",
            "127.0.0.1:0",
        ],
        &[
            ("SWITCHBOARD_EMAIL_RELAY", relay_url.as_str()),
            ("SWITCHBOARD_FAILPOINT", "mail-started"),
        ],
    );
    let message = mail("ivy@example.com", "Lost?", "c1@example.com", &[], "Hello.");
    assert_eq!(
        send(&doomed, "ivy@example.com", "support@acme.test", &message)["ok"],
        true
    );
    assert!(
        !doomed.exit_status(Duration::from_secs(30)).success(),
        "the failpoint stopped the server right after the contact started"
    );
    let server = email_server(&data, relay.port, &[]);
    let got = relay.wait_for(1);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(relay.messages().len(), 1, "one acknowledgement: {got:#?}");
    let contacts = email_contacts(&server);
    assert_eq!(contacts.len(), 1, "one contact: {contacts:#?}");
    let mails = mail_events(&server, contacts[0]["id"].as_str().unwrap());
    assert_eq!(mails.len(), 1, "the flow heard the mail once");
}

#[test]
fn the_inbound_webhook_wants_its_secret_and_takes_a_providers_post() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), free_port());
    let server = email_server(&dir.path().join("data"), relay.port, &[]);
    let raw = mail(
        "max@example.com",
        "Webhook",
        "w1@example.com",
        &[],
        "Via a provider.",
    );
    let boundary = "xYzZY";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"envelope\"\r\n\r\n{{\"to\":[\"support@acme.test\"],\"from\":\"max@example.com\"}}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\n{raw}\r\n--{boundary}--\r\n"
    );
    let post = |auth: &str| {
        let request = ureq::http::Request::builder()
            .method("POST")
            .uri(format!("{}/email/inbound", server.url))
            .header("Authorization", auth)
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(form.clone().into_bytes())
            .unwrap();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        agent
            .run(request)
            .expect("the server answers")
            .status()
            .as_u16()
    };
    use base64::Engine as _;
    let wrong = base64::engine::general_purpose::STANDARD.encode("inbound:guess");
    assert_eq!(post(&format!("Basic {wrong}")), 401);
    assert_eq!(post(""), 401);
    assert!(email_contacts(&server).is_empty());
    let right = base64::engine::general_purpose::STANDARD.encode("inbound:hook-secret");
    assert_eq!(post(&format!("Basic {right}")), 202);
    let answer = &relay.wait_for(1)[0];
    assert_eq!(answer.0["rcpt_tos"], json!(["max@example.com"]));
    assert_eq!(
        header(&answer.1, "In-Reply-To").unwrap(),
        "<w1@example.com>"
    );
    assert_eq!(counted(&server, "switchboard_email_received_total"), 1.0);
}
