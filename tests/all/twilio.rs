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
    let config = dir.join("switchboard.toml");
    std::fs::write(
        &config,
        format!("[twilio]\nauth_token = \"{TOKEN}\"\npublic_url = \"{PUBLIC}\"\n"),
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
        format!("{HEAD}<Say>Hello Grace, thank you for calling Acme.</Say>{MENU}</Response>")
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
        format!("{HEAD}<Say>Sorry, that is not a valid choice.</Say>{MENU}</Response>")
    );
    let (_, sales) = post(
        &server,
        "/twilio/voice/gather",
        &with(&[("Digits", "1")]),
        None,
    );
    assert_eq!(
        sales,
        format!("{HEAD}<Say>Connecting you to sales.</Say><Enqueue>sales</Enqueue></Response>")
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
    let sms = |sid: &'static str, body: &'static str| {
        post(
            &server,
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
    };
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
