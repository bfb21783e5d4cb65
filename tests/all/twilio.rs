//! Twilio-compatible webhooks: real-shaped, correctly signed form posts through a multi-step
//! IVR and an SMS conversation, with the exact TwiML asserted; bad signatures, missing
//! parameters, unknown calls and oversized bodies refused clearly.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard::channels::twilio::signature;

use crate::support::{Server, ivr_server};

const TOKEN: &str = "test-auth-token";
const PUBLIC: &str = "https://cc.example.test";

fn server(dir: &std::path::Path) -> Server {
    server_with(dir, "")
}

/// The test server, with more `[twilio]` settings.
fn server_with(dir: &std::path::Path, twilio: &str) -> Server {
    let config = dir.join("switchboard.toml");
    std::fs::write(
        &config,
        format!("[twilio]\nauth_token = \"{TOKEN}\"\npublic_url = \"{PUBLIC}\"\n{twilio}"),
    )
    .unwrap();
    let data = dir.join("data");
    let config = config.to_str().unwrap().to_string();
    let order_status = format!(
        "order-status={}",
        crate::support::guest("order-status").display()
    );
    ivr_server(
        &data,
        &[
            "--config",
            &config,
            "--bind",
            "+15550100=ivr-menu",
            "--deploy",
            &order_status,
            "--bind",
            "+15550200=order-status",
            "--setting",
            "order-status:orders=1001:shipped",
        ],
    )
}

/// Posts a form as Twilio would, signed unless `signature` overrides it.
fn post(
    server: &Server,
    path_and_query: &str,
    params: &[(&str, &str)],
    signature_override: Option<&str>,
) -> (u16, String) {
    let pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let body = serde_urlencoded::to_string(&pairs).unwrap();
    let signed = signature::sign(TOKEN, &format!("{PUBLIC}{path_and_query}"), &pairs);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut request = agent
        .post(format!("{}{path_and_query}", server.url))
        .header("Content-Type", "application/x-www-form-urlencoded");
    match signature_override {
        Some("") => {}
        Some(other) => request = request.header("X-Twilio-Signature", other),
        None => request = request.header("X-Twilio-Signature", &signed),
    }
    let mut response = request.send(body).unwrap();
    (
        response.status().as_u16(),
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

const CALL: [(&str, &str); 6] = [
    ("AccountSid", "AC0000000000000000000000000000000"),
    ("CallSid", "CA11111111111111111111111111111111"),
    ("From", "+15551230002"),
    ("To", "+15550100"),
    ("CallStatus", "ringing"),
    ("Direction", "inbound"),
];

const HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#;
const MENU: &str = r#"<Gather input="dtmf" action="https://cc.example.test/twilio/voice/gather" method="POST" timeout="5" numDigits="1"><Say>For sales, press 1. For support, press 2. To speak with an agent, press 0. To hear these options again, press star.</Say></Gather><Redirect method="POST">https://cc.example.test/twilio/voice/gather?no_input=1</Redirect>"#;

/// The menu with `ahead` (the prompts before it in the step) inside its `<Gather>`, where
/// Twilio hears a key pressed during them (type-ahead).
fn menu_after(ahead: &str) -> String {
    MENU.replacen(r#"numDigits="1">"#, &format!(r#"numDigits="1">{ahead}"#), 1)
}

const ENQUEUE_SALES: &str = r#"<Enqueue waitUrl="https://cc.example.test/twilio/voice/wait" waitUrlMethod="POST" action="https://cc.example.test/twilio/voice/dequeued" method="POST">sales</Enqueue>"#;

/// A signed SMS from +15551230001 to the order-status number.
fn sms(server: &Server, sid: &str, body: &str) -> (u16, String) {
    post(
        server,
        "/twilio/sms",
        &[
            ("MessageSid", sid),
            ("From", "+15551230001"),
            ("To", "+15550200"),
            ("Body", body),
            ("NumMedia", "0"),
        ],
        None,
    )
}

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut params: Vec<(&str, &str)> = CALL.to_vec();
    params.extend_from_slice(extra);
    params
}

#[test]
fn a_signed_call_goes_through_the_menu_with_exact_twiml() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let customers = format!("{}/../examples/customers.csv", env!("CARGO_MANIFEST_DIR"));
    let (status, _) = server.call_raw(
        "POST",
        "/v1/customers",
        "text/csv",
        std::fs::read(customers).unwrap(),
    );
    assert_eq!(status, 200);

    let (status, twiml) = post(&server, "/twilio/voice", &CALL, None);
    assert_eq!(status, 200, "{twiml}");
    assert_eq!(
        twiml,
        format!(
            "{HEAD}{}</Response>",
            menu_after("<Say>Hello Grace, thank you for calling Acme.</Say>")
        )
    );

    // Silence: the prompt replays once (retries 1), then the flow says goodbye.
    let (_, again) = post(&server, "/twilio/voice/gather?no_input=1", &CALL, None);
    assert_eq!(again, format!("{HEAD}{MENU}</Response>"));
    // An invalid key, then 1: sales.
    let (_, invalid) = post(
        &server,
        "/twilio/voice/gather",
        &with(&[("Digits", "7")]),
        None,
    );
    assert_eq!(
        invalid,
        format!(
            "{HEAD}{}</Response>",
            menu_after("<Say>Sorry, that is not a valid choice.</Say>")
        )
    );
    let (_, sales) = post(
        &server,
        "/twilio/voice/gather",
        &with(&[("Digits", "1")]),
        None,
    );
    assert_eq!(
        sales,
        format!("{HEAD}<Say>Connecting you to sales.</Say>{ENQUEUE_SALES}</Response>")
    );

    // The caller hangs up: the status callback ends the contact.
    let (status, _) = post(
        &server,
        "/twilio/voice/status",
        &[("CallSid", CALL[1].1), ("CallStatus", "completed")],
        None,
    );
    assert_eq!(status, 204);
    let (status, _) = post(
        &server,
        "/twilio/voice/gather",
        &with(&[("Digits", "1")]),
        None,
    );
    assert_eq!(status, 404, "the call is over");

    // A menu that flushes type-ahead: the greeting plays before the <Gather>, where Twilio
    // drops keys.
    let (status, _) = server.call(
        "PUT",
        "/v1/flows/ivr-menu/settings",
        Some(json!({"flush_type_ahead": "true"})),
    );
    assert_eq!(status, 200);
    let mut second = CALL;
    second[1].1 = "CA22222222222222222222222222222222";
    let (status, twiml) = post(&server, "/twilio/voice", &second, None);
    assert_eq!(status, 200, "{twiml}");
    assert_eq!(
        twiml,
        format!("{HEAD}<Say>Hello Grace, thank you for calling Acme.</Say>{MENU}</Response>")
    );
}

#[test]
fn silence_twice_ends_politely_and_text_is_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (status, _) = server.call(
        "PUT",
        "/v1/flows/ivr-menu/settings",
        Some(json!({"open": "00:00", "close": "00:01", "days": "mon-mon"})),
    );
    assert_eq!(status, 200);
    let (_, closed) = post(&server, "/twilio/voice", &CALL, None);
    assert!(
        closed.starts_with(&format!(
            "{HEAD}<Say>Thank you for calling Acme.</Say><Say>We are closed right now."
        )),
        "{closed}"
    );
    assert!(
        closed.ends_with("Goodbye.</Say><Hangup/></Response>"),
        "{closed}"
    );

    // Escaping: a caller name with markup is written as text, never as XML.
    let mut other = CALL;
    other[1] = ("CallSid", "CA22222222222222222222222222222222");
    other[2] = ("From", "+15559990000");
    let (status, _) = server.call_raw(
        "POST",
        "/v1/customers",
        "application/json",
        br#"[{"id": "x", "name": "<Hangup/> & \"Bobby\"", "phone": "+15559990000"}]"#.to_vec(),
    );
    assert_eq!(status, 200);
    server.call(
        "PUT",
        "/v1/flows/ivr-menu/settings",
        Some(json!({"open": "00:00", "close": "24:00", "days": "mon-sun"})),
    );
    let (_, escaped) = post(&server, "/twilio/voice", &other, None);
    assert!(
        escaped.contains("<Say>Hello &lt;Hangup/&gt;, thank you for calling Acme.</Say>"),
        "{escaped}"
    );
    let (_, _) = post(&server, "/twilio/voice/gather?no_input=1", &other, None);
    let (_, bye) = post(&server, "/twilio/voice/gather?no_input=1", &other, None);
    assert_eq!(
        bye,
        format!(
            "{HEAD}<Say>We did not receive any input. Thank you for calling. Goodbye.</Say><Hangup/></Response>"
        )
    );
}

#[test]
fn an_sms_conversation_is_one_contact() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let sms = |sid: &str, body: &str| sms(&server, sid, body);
    let (status, first) = sms("SM1", "hi");
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first,
        format!(
            "{HEAD}<Message>Hi, this is Acme. Send your order number to get its status, or AGENT to talk to a person.</Message><Message>Please send just your order number, like 1001.</Message></Response>"
        )
    );
    let (_, second) = sms("SM2", "1001");
    assert_eq!(
        second,
        format!("{HEAD}<Message>Order 1001 is shipped.</Message></Response>")
    );
    let (_, third) = sms("SM3", "stop");
    assert_eq!(
        third,
        format!("{HEAD}<Message>Goodbye.</Message></Response>")
    );
    // After the conversation ended, the next message starts a new one.
    let (_, fresh) = sms("SM4", "1001");
    assert!(
        fresh.contains("Hi, this is Acme.") && fresh.contains("Order 1001 is shipped."),
        "{fresh}"
    );
}

#[test]
fn bad_webhooks_are_refused_and_other_calls_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (status, body) = post(
        &server,
        "/twilio/voice",
        &CALL,
        Some("bm90IGEgc2lnbmF0dXJl"),
    );
    assert_eq!(status, 403, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "invalid_signature");
    assert_eq!(
        post(&server, "/twilio/voice", &CALL, Some("")).0,
        403,
        "missing signature"
    );
    // A valid signature over different parameters does not fit these.
    let other = signature::sign(
        TOKEN,
        &format!("{PUBLIC}/twilio/voice"),
        &[("CallSid".into(), "CA9".into())],
    );
    assert_eq!(post(&server, "/twilio/voice", &CALL, Some(&other)).0, 403);

    let (status, body) = post(
        &server,
        "/twilio/voice",
        &[("From", "+1555"), ("To", "+15550100")],
        None,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("missing the CallSid parameter"), "{body}");
    let (status, body) = post(
        &server,
        "/twilio/voice/gather",
        &[("CallSid", "CAunknown"), ("Digits", "1")],
        None,
    );
    assert_eq!(
        (status, body.contains("unknown_call")),
        (404, true),
        "{body}"
    );
    let huge = "x".repeat(100 * 1024);
    let (status, _) = post(
        &server,
        "/twilio/sms",
        &[
            ("MessageSid", "SM1"),
            ("From", "+1"),
            ("To", "+15550200"),
            ("Body", &huge),
        ],
        None,
    );
    assert_eq!(status, 413);

    // None of that disturbed a real call.
    let (status, twiml) = post(&server, "/twilio/voice", &CALL, None);
    assert_eq!(status, 200);
    assert!(twiml.contains("for calling Acme"), "{twiml}");
}

const ACCOUNT: &str = "AC0000000000000000000000000000000";

/// One request Twilio's API received.
#[derive(Debug, Clone)]
struct ApiRequest {
    method: String,
    path: String,
    authorization: String,
    content_type: String,
    form: Vec<(String, String)>,
}

/// A stand-in for Twilio's REST API on loopback: records each request and answers with the
/// next queued status (201 with a message SID once the queue is empty).
struct TwilioApi {
    url: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<ApiRequest>>>,
    answers: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<u16>>>,
}

impl TwilioApi {
    fn start() -> TwilioApi {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let answers = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
        let (seen, queued) = (requests.clone(), answers.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let (mut length, mut authorization, mut content_type) =
                    (0, String::new(), String::new());
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                        break;
                    }
                    let Some((name, value)) = header.split_once(':') else {
                        continue;
                    };
                    let value = value.trim().to_string();
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => length = value.parse().unwrap_or(0),
                        "authorization" => authorization = value,
                        "content-type" => content_type = value,
                        _ => {}
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let mut parts = line.split_whitespace();
                seen.lock().unwrap().push(ApiRequest {
                    method: parts.next().unwrap_or_default().to_string(),
                    path: parts.next().unwrap_or_default().to_string(),
                    authorization,
                    content_type,
                    form: serde_urlencoded::from_bytes(&body).unwrap_or_default(),
                });
                let status = queued.lock().unwrap().pop_front().unwrap_or(201);
                let answer = if status == 201 {
                    r#"{"sid": "SM00000000000000000000000000000001", "status": "queued"}"#
                } else {
                    r#"{"code": 20500, "message": "Internal Server Error", "status": 500}"#
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        TwilioApi {
            url,
            requests,
            answers,
        }
    }

    fn requests(&self) -> Vec<ApiRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// The first request received, waiting for it up to `within` (failing with `missing`).
    fn first_request(&self, missing: &str, within: Duration) -> ApiRequest {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(request) = self.requests().first() {
                return request.clone();
            }
            assert!(std::time::Instant::now() < deadline, "{missing}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn an_sms_customer_talks_with_an_agent_whose_replies_go_through_the_messages_api() {
    use base64::Engine as _;
    let api = TwilioApi::start();
    let dir = tempfile::tempdir().unwrap();
    let server = server_with(
        dir.path(),
        &format!("account_sid = \"{ACCOUNT}\"\napi_url = \"{}\"\n", api.url),
    );
    let (status, _) = server.call("PUT", "/v1/queues/support", Some(json!({})));
    assert_eq!(status, 200);
    let token = crate::support::agent(&server, "sara", json!({}), json!({"sms": 1}));
    let mut desk = crate::support::desk(&server, &token);
    let mut next = || desk.next();
    assert_eq!(next()["type"], "snapshot");
    let sms = |sid: &str, body: &str| sms(&server, sid, body);

    // The flow hands the customer to the support queue; Sara accepts.
    sms("SM1", "hi");
    let (_, handed) = sms("SM2", "AGENT please");
    assert!(handed.contains("Connecting you with an agent."), "{handed}");
    let offer = next();
    assert_eq!(offer["type"], "reservation", "{offer}");
    assert_eq!(offer["task"]["channel"], "sms");
    let task = offer["task"]["id"].as_str().unwrap().to_string();
    let contact = offer["task"]["contact"].as_str().unwrap().to_string();
    let r = offer["reservation"]["id"].as_str().unwrap();
    let (status, _) = server.call_as(
        Some(&token),
        "POST",
        &format!("/agent/v1/reservations/{r}/accept"),
        Some(json!({})),
    );
    assert_eq!(status, 200);

    // Her reply goes out through the Messages API, sent again after a 429 (not taken).
    api.answers.lock().unwrap().push_back(429);
    let say = |text: &str| {
        server.call_as(
            Some(&token),
            "POST",
            &format!("/agent/v1/tasks/{task}/messages"),
            Some(json!({"text": text})),
        )
    };
    let (status, answer) = say("Hi, Sara here. Which order?");
    assert_eq!(status, 200, "{answer}");
    let requests = api.requests();
    assert_eq!(
        requests.len(),
        2,
        "one 429, then the same request again: {requests:?}"
    );
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TOKEN}"))
    );
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.path,
            format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json")
        );
        assert_eq!(request.authorization, basic);
        assert_eq!(request.content_type, "application/x-www-form-urlencoded");
        let field = |name: &str| {
            request
                .form
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(field("To"), Some("+15551230001"), "to the customer");
        assert_eq!(
            field("From"),
            Some("+15550200"),
            "from the number they wrote to"
        );
        assert_eq!(field("Body"), Some("Hi, Sara here. Which order?"));
    }

    // The customer's next SMS reaches Sara's desk, not the flow.
    let (status, answer) = sms("SM3", "Order 1002, it is late");
    assert_eq!(status, 200);
    assert!(
        !answer.contains("<Message>"),
        "the flow does not answer: {answer}"
    );
    let heard = next();
    assert_eq!(
        (heard["type"].as_str(), heard["text"].as_str()),
        (Some("message"), Some("Order 1002, it is late")),
        "{heard}"
    );
    assert_eq!(heard["task"], json!(task));

    // Twilio refusing three times: the agent is told, nothing is kept as said.
    api.answers.lock().unwrap().extend([429, 429, 429]);
    let (status, failed) = say("This one does not go out");
    assert_eq!(status, 502, "{failed}");
    assert_eq!(failed["error"]["code"], "sms_unavailable");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("try again"),
        "{failed}"
    );
    // A 500 may have sent it: not sent again (the customer would get it twice), and said so.
    let before = api.requests().len();
    api.answers.lock().unwrap().push_back(500);
    let (status, doubt) = say("Maybe this one");
    assert_eq!(status, 502, "{doubt}");
    assert_eq!(doubt["error"]["code"], "sms_in_doubt");
    assert_eq!(api.requests().len(), before + 1, "sent once");

    // Sara completes: the flow hears it.
    let (status, _) = server.call_as(
        Some(&token),
        "POST",
        &format!("/agent/v1/tasks/{task}/complete"),
        Some(json!({})),
    );
    assert_eq!(status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, trace) = server.call("GET", &format!("/v1/contacts/{contact}/trace"), None);
        if trace
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["event"]["type"] == "task-outcome" && s["event"]["status"] == "completed")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the flow never heard `completed`: {trace}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, transcript) = server.call("GET", &format!("/v1/contacts/{contact}/transcript"), None);
    let said: Vec<(&str, &str)> = transcript
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["from"].as_str().unwrap(), s["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        said,
        [
            ("agent", "Hi, Sara here. Which order?"),
            ("customer", "Order 1002, it is late")
        ]
    );
}

#[test]
fn an_sms_reply_without_the_account_configured_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (status, _) = server.call("PUT", "/v1/queues/support", Some(json!({})));
    assert_eq!(status, 200);
    let token = crate::support::agent(&server, "sara", json!({}), json!({"sms": 1}));
    let sms = |sid: &str, body: &str| sms(&server, sid, body);
    sms("SM1", "agent");
    let (_, me) = server.call_as(Some(&token), "GET", "/agent/v1/me", None);
    let r = me["reservation"]["id"]
        .as_str()
        .expect("offered")
        .to_string();
    let task = me["reservation"]["task"].as_str().unwrap().to_string();
    server.call_as(
        Some(&token),
        "POST",
        &format!("/agent/v1/reservations/{r}/accept"),
        Some(json!({})),
    );
    let (status, refused) = server.call_as(
        Some(&token),
        "POST",
        &format!("/agent/v1/tasks/{task}/messages"),
        Some(json!({"text": "hello"})),
    );
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "sms_not_configured");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("twilio.account_sid"),
        "{refused}"
    );
}

#[test]
fn what_a_flow_says_outside_a_webhook_goes_out_by_sms() {
    let api = TwilioApi::start();
    let dir = tempfile::tempdir().unwrap();
    let server = server_with(
        dir.path(),
        &format!("account_sid = \"{ACCOUNT}\"\napi_url = \"{}\"\n", api.url),
    );
    // Nobody answers within a second: the flow hears `timed-out` from the router (no webhook
    // is waiting for its answer) and says sorry by SMS.
    let (status, _) = server.call(
        "PUT",
        "/v1/queues/support",
        Some(json!({"task_timeout_secs": 1})),
    );
    assert_eq!(status, 200);
    let (_, handed) = post(
        &server,
        "/twilio/sms",
        &[
            ("MessageSid", "SM1"),
            ("From", "+15551230009"),
            ("To", "+15550200"),
            ("Body", "agent"),
            ("NumMedia", "0"),
        ],
        None,
    );
    assert!(handed.contains("Connecting you with an agent."), "{handed}");
    assert!(
        api.requests().is_empty(),
        "the webhook's answer carried the first reply"
    );
    let sorry = api.first_request(
        "no SMS was sent when the task timed out",
        Duration::from_secs(15),
    );
    let field = |name: &str| {
        sorry
            .form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(field("To").as_deref(), Some("+15551230009"));
    assert_eq!(field("From").as_deref(), Some("+15550200"));
    assert_eq!(
        field("Body").as_deref(),
        Some("Sorry, nobody is free right now. Please write again later.")
    );
}

#[test]
fn a_twilio_caller_waits_with_the_flows_news_and_is_dialed_to_the_agent_who_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (status, _) = server.call(
        "PUT",
        "/v1/queues/sales",
        // News every 3 s: the test's next poll comes well before the next news, so "heard
        // once" holds on a busy machine too.
        Some(json!({"wait_event_secs": 3, "wrapup_secs": 30})),
    );
    assert_eq!(status, 200);
    let sara = crate::support::agent(
        &server,
        "sara",
        json!({"phone": "+15557770001"}),
        json!({"voice": 1}),
    );
    let activity = |what: &str| {
        let (status, _) = server.call_as(
            Some(&sara),
            "PUT",
            "/agent/v1/activity",
            Some(json!({"activity": what})),
        );
        assert_eq!(status, 200);
    };
    activity("break");

    post(&server, "/twilio/voice", &CALL, None);
    let (_, queued) = post(
        &server,
        "/twilio/voice/gather",
        &with(&[("Digits", "1")]),
        None,
    );
    assert!(queued.contains(ENQUEUE_SALES), "{queued}");
    let wait = || {
        post(
            &server,
            "/twilio/voice/wait",
            &with(&[
                ("QueuePosition", "1"),
                ("QueueTime", "2"),
                ("CurrentQueueSize", "1"),
            ]),
            None,
        )
        .1
    };
    let hold = r#"<Play>https://cc.example.test/twilio/hold.wav</Play>"#;
    assert_eq!(wait(), format!("{HEAD}{hold}</Response>"));
    // The flow's queue-wait news is heard once, then hold music again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let news = loop {
        let answer = wait();
        if answer.contains("You are number 1 in line.") {
            break answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no queue-wait news: {answer}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        news.contains("<Gather"),
        "the callback offer can be answered: {news}"
    );
    assert_eq!(wait(), format!("{HEAD}{hold}</Response>"), "heard once");
    let mut hold_music = ureq::get(format!("{}/twilio/hold.wav", server.url))
        .call()
        .unwrap();
    assert_eq!(hold_music.headers()["content-type"], "audio/wav");
    let wav = hold_music
        .body_mut()
        .with_config()
        .limit(10 << 20)
        .read_to_vec()
        .unwrap();
    assert!(
        wav.starts_with(b"RIFF") && wav.len() > 44_000,
        "seconds of 8 kHz WAV: {} bytes",
        wav.len()
    );

    // Sara accepts: the caller leaves the queue and is dialed to her phone.
    activity("available");
    let (_, me) = server.call_as(Some(&sara), "GET", "/agent/v1/me", None);
    let r = me["reservation"]["id"]
        .as_str()
        .expect("offered")
        .to_string();
    let (status, _) = server.call_as(
        Some(&sara),
        "POST",
        &format!("/agent/v1/reservations/{r}/accept"),
        Some(json!({})),
    );
    assert_eq!(status, 200);
    assert_eq!(wait(), format!("{HEAD}<Leave/></Response>"));
    let (_, dial) = post(
        &server,
        "/twilio/voice/dequeued",
        &with(&[("QueueResult", "leave")]),
        None,
    );
    assert_eq!(
        dial,
        format!(
            r#"{HEAD}<Dial action="https://cc.example.test/twilio/voice/dialed" method="POST"><Number>+15557770001</Number></Dial></Response>"#
        )
    );
    // The conversation ends: the task completes, the flow says goodbye.
    let (_, after) = post(
        &server,
        "/twilio/voice/dialed",
        &with(&[
            ("DialCallStatus", "completed"),
            ("CallStatus", "in-progress"),
        ]),
        None,
    );
    assert!(after.ends_with("<Hangup/></Response>"), "{after}");
    // Wrap-up follows, and the caller hanging up afterwards does not cancel it.
    let task = format!("/v1/tasks/{}", me["reservation"]["task"].as_str().unwrap());
    assert_eq!(server.call("GET", &task, None).1["status"], "wrapping");
    let (status, _) = post(
        &server,
        "/twilio/voice/status",
        &[("CallSid", CALL[1].1), ("CallStatus", "completed")],
        None,
    );
    assert_eq!(status, 204);
    assert_eq!(server.call("GET", &task, None).1["status"], "wrapping");
    let (_, mine) = server.call_as(Some(&sara), "GET", "/agent/v1/me", None);
    assert_eq!(mine["busy"]["voice"], 1, "still wrapping up: {mine}");
    let (_, stats) = server.call("GET", "/v1/queues/sales/stats", None);
    assert_eq!(
        stats["tasks"]["canceled-in-window"], 0,
        "answered, not abandoned: {stats}"
    );
    let (status, refused) = server.call("POST", &format!("{task}/cancel"), Some(json!({})));
    assert_eq!(
        status, 409,
        "a task in wrap-up is completed, not canceled: {refused}"
    );
}

#[test]
fn a_twilio_caller_who_hangs_up_while_waiting_takes_the_task_away() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (status, _) = server.call("PUT", "/v1/queues/sales", Some(json!({})));
    assert_eq!(status, 200);
    post(&server, "/twilio/voice", &CALL, None);
    post(
        &server,
        "/twilio/voice/gather",
        &with(&[("Digits", "1")]),
        None,
    );
    let (_, stats) = server.call("GET", "/v1/queues/sales/stats", None);
    assert_eq!(stats["tasks"]["pending"], 1, "{stats}");
    let (status, answer) = post(
        &server,
        "/twilio/voice/dequeued",
        &with(&[("QueueResult", "hangup")]),
        None,
    );
    assert_eq!(status, 200, "{answer}");
    let (_, stats) = server.call("GET", "/v1/queues/sales/stats", None);
    assert_eq!(stats["tasks"].get("pending"), None, "{stats}");
    assert_eq!(stats["tasks"]["canceled-in-window"], 1, "{stats}");
    // An agent with no phone to dial: the task is canceled with the reason, and the flow
    // puts the caller back in line once.
    let sam = crate::support::agent(&server, "sam", json!({}), json!({"voice": 1}));
    post(
        &server,
        "/twilio/voice",
        &with(&[("CallSid", "CA22222222222222222222222222222222")]),
        None,
    );
    let second = [
        ("CallSid", "CA22222222222222222222222222222222"),
        ("From", "+15551230002"),
        ("To", "+15550100"),
    ];
    post(
        &server,
        "/twilio/voice/gather",
        &[&second[..], &[("Digits", "1")]].concat(),
        None,
    );
    let (_, me) = server.call_as(Some(&sam), "GET", "/agent/v1/me", None);
    let r = me["reservation"]["id"]
        .as_str()
        .expect("offered")
        .to_string();
    server.call_as(
        Some(&sam),
        "POST",
        &format!("/agent/v1/reservations/{r}/accept"),
        Some(json!({})),
    );
    let (_, again) = post(
        &server,
        "/twilio/voice/dequeued",
        &[&second[..], &[("QueueResult", "leave")]].concat(),
        None,
    );
    assert!(again.contains("<Enqueue"), "back in line: {again}");
}

#[test]
fn with_the_account_configured_an_accepted_caller_is_sent_to_the_agent_through_the_rest_api() {
    let api = TwilioApi::start();
    let dir = tempfile::tempdir().unwrap();
    let server = server_with(
        dir.path(),
        &format!("account_sid = \"{ACCOUNT}\"\napi_url = \"{}\"\n", api.url),
    );
    let (status, _) = server.call("PUT", "/v1/queues/sales", Some(json!({})));
    assert_eq!(status, 200);
    let sara = crate::support::agent(
        &server,
        "sara",
        json!({"sip": "sip:sara@pbx.example.test"}),
        json!({"voice": 1}),
    );
    post(&server, "/twilio/voice", &CALL, None);
    let (_, queued) = post(
        &server,
        "/twilio/voice/gather",
        &with(&[("Digits", "1")]),
        None,
    );
    assert!(queued.contains(ENQUEUE_SALES), "{queued}");
    let (_, me) = server.call_as(Some(&sara), "GET", "/agent/v1/me", None);
    let r = me["reservation"]["id"]
        .as_str()
        .expect("offered")
        .to_string();
    let (status, _) = server.call_as(
        Some(&sara),
        "POST",
        &format!("/agent/v1/reservations/{r}/accept"),
        Some(json!({})),
    );
    assert_eq!(status, 200);

    // At once, not at the next wait-URL request: the live call gets the <Dial>.
    let redirect = api.first_request("the call was not redirected", Duration::from_secs(10));
    assert_eq!(redirect.method, "POST");
    assert_eq!(
        redirect.path,
        format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/{}.json", CALL[1].1)
    );
    assert_eq!(redirect.content_type, "application/x-www-form-urlencoded");
    assert_eq!(
        redirect.form,
        [(
            "Twiml".to_string(),
            format!(
                r#"{HEAD}<Dial action="https://cc.example.test/twilio/voice/dialed" method="POST"><Sip>sip:sara@pbx.example.test</Sip></Dial></Response>"#
            )
        )]
    );
    // Twilio reports the caller left the queue by that redirect: nothing more to do there.
    let (_, left) = post(
        &server,
        "/twilio/voice/dequeued",
        &with(&[("QueueResult", "redirected")]),
        None,
    );
    assert_eq!(left, format!("{HEAD}</Response>"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(api.requests().len(), 1, "one redirect, not one per step");
}

/// A caller of a Twilio number asks to be called back; when sara accepts, Twilio's Calls API
/// is asked (exactly as documented) to call her phone; her call's TwiML dials the customer
/// from the number they called, greeting them on answer. The first try finds the line busy:
/// the attempt is recorded and Twilio is asked again after the queue's retry interval; the
/// second reaches the customer and the task completes when the call ends.
#[test]
fn a_twilio_callback_calls_the_agent_then_the_customer_and_retries_a_busy_line() {
    let api = TwilioApi::start();
    let dir = tempfile::tempdir().unwrap();
    let server = server_with(
        dir.path(),
        &format!("account_sid = \"{ACCOUNT}\"\napi_url = \"{}\"\n", api.url),
    );
    // Retries 3 s apart: the test reads the first attempt before the second is dialed.
    let queue = json!({"wait_event_secs": 1, "callback_retry_secs": 3});
    let (status, _) = server.call("PUT", "/v1/queues/sales", Some(queue));
    assert_eq!(status, 200);
    let sara = crate::support::agent(
        &server,
        "sara",
        json!({"phone": "+15557770001"}),
        json!({"voice": 1}),
    );
    let activity = |what: &str| {
        let body = Some(json!({"activity": what}));
        let (status, _) = server.call_as(Some(&sara), "PUT", "/agent/v1/activity", body);
        assert_eq!(status, 200);
    };
    activity("break");

    // The caller waits in sales and takes the callback offer.
    post(&server, "/twilio/voice", &CALL, None);
    let (_, queued) = post(
        &server,
        "/twilio/voice/gather",
        &with(&[("Digits", "1")]),
        None,
    );
    assert!(queued.contains(ENQUEUE_SALES), "{queued}");
    let wait = [
        ("QueuePosition", "1"),
        ("QueueTime", "2"),
        ("CurrentQueueSize", "1"),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !post(&server, "/twilio/voice/wait", &with(&wait), None)
        .1
        .contains("You are number 1 in line.")
    {
        assert!(std::time::Instant::now() < deadline, "no callback offer");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, kept) = post(
        &server,
        "/twilio/voice/gather",
        &with(&[("Digits", "1")]),
        None,
    );
    assert!(
        kept.contains("we will call you back") && kept.contains("<Hangup/>"),
        "{kept}"
    );

    activity("available");
    let (_, me) = server.call_as(Some(&sara), "GET", "/agent/v1/me", None);
    let r = me["reservation"]["id"]
        .as_str()
        .expect("offered")
        .to_string();
    let (status, task) = server.call_as(
        Some(&sara),
        "POST",
        &format!("/agent/v1/reservations/{r}/accept"),
        Some(json!({})),
    );
    assert_eq!(status, 200, "{task}");
    let id = task["id"].as_str().unwrap().to_string();

    let calls_json = format!("/2010-04-01/Accounts/{ACCOUNT}/Calls.json");
    let hooks = |n: u32| {
        let q = format!("task={id}&attempt={n}");
        let at = |what: &str| format!("{PUBLIC}/twilio/callback/{what}?{q}");
        (at("answered"), at("status"), at("dialed"), at("greet"))
    };
    let expect_call = |n: usize, attempt: u32| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while api.requests().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "Twilio was not asked to call"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let call = api.requests()[n - 1].clone();
        assert_eq!(
            (call.method.as_str(), call.path.as_str()),
            ("POST", calls_json.as_str())
        );
        assert_eq!(call.content_type, "application/x-www-form-urlencoded");
        let basic = base64_basic(ACCOUNT, TOKEN);
        assert_eq!(call.authorization, basic);
        let (answered, status, _, _) = hooks(attempt);
        let form: Vec<(&str, &str)> = call
            .form
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            form,
            [
                ("To", "+15557770001"),
                ("From", "+15550100"),
                ("Url", answered.as_str()),
                ("Method", "POST"),
                ("StatusCallback", status.as_str()),
                ("StatusCallbackMethod", "POST"),
                ("Timeout", "30"),
            ]
        );
    };
    let agent_call = [
        ("AccountSid", ACCOUNT),
        ("CallSid", "CA22222222222222222222222222222222"),
        ("From", "+15550100"),
        ("To", "+15557770001"),
        ("CallStatus", "in-progress"),
        ("Direction", "outbound-api"),
    ];
    let relative = |url: &str| url.strip_prefix(PUBLIC).unwrap().to_string();
    let attempts = || {
        let (_, t) = server.call("GET", &format!("/v1/tasks/{id}"), None);
        t["callback"]["attempts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };

    // Attempt 1: sara answers, the customer's line is busy.
    expect_call(1, 1);
    let (answered, status_url, dialed, greet) = hooks(1);
    let (status, twiml) = post(&server, &relative(&answered), &agent_call, None);
    assert_eq!(status, 200, "{twiml}");
    assert_eq!(
        twiml,
        format!(
            r#"{HEAD}<Say>Calling the customer back.</Say><Dial callerId="+15550100" action="{}" method="POST" timeout="30"><Number url="{}" method="POST">+15551230002</Number></Dial></Response>"#,
            dialed.replace('&', "&amp;"),
            greet.replace('&', "&amp;")
        )
    );
    let mut busy = agent_call.to_vec();
    busy.push(("DialCallStatus", "busy"));
    let (_, twiml) = post(&server, &relative(&dialed), &busy, None);
    assert!(
        twiml.contains("could not be reached: busy") && twiml.ends_with("<Hangup/></Response>"),
        "{twiml}"
    );
    let mut ended = agent_call.to_vec();
    ended[4] = ("CallStatus", "completed");
    let (status, _) = post(&server, &relative(&status_url), &ended, None);
    assert_eq!(status, 204);
    let first = attempts();
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0]["result"], "busy",
        "the first report stands: {first:?}"
    );

    // Attempt 2, 3 s later: the customer answers, is greeted, and talks to sara.
    expect_call(2, 2);
    let (answered, _, dialed, greet) = hooks(2);
    let (_, twiml) = post(&server, &relative(&answered), &agent_call, None);
    assert!(twiml.contains("<Number"), "{twiml}");
    let (_, hello) = post(&server, &relative(&greet), &agent_call, None);
    assert_eq!(
        hello,
        format!(
            "{HEAD}<Say>Hello. This is the call back you asked for. Connecting you to an agent now.</Say></Response>"
        )
    );
    let mut done = agent_call.to_vec();
    done.push(("DialCallStatus", "completed"));
    post(&server, &relative(&dialed), &done, None);
    let all = attempts();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[1]["result"], "answered");
    let (_, t) = server.call("GET", &format!("/v1/tasks/{id}"), None);
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(api.requests().len(), 2, "one call per attempt");
}

fn base64_basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
