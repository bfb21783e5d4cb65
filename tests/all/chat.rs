//! Web chat over WebSocket: a visitor talks to the flow, is handed to an agent through the
//! router, exchanges messages with the agent both ways, and resumes after reconnecting.

use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::support::{Server, chat_server};

pub type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

pub fn connect(url: &str) -> Socket {
    let (socket, _) = tungstenite::connect(url).expect("the socket opens");
    if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
    }
    socket
}

/// The next JSON message.
pub fn next(socket: &mut Socket) -> Value {
    loop {
        match socket.read().expect("a message within 10 s") {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            _ => continue,
        }
    }
}

pub fn send(socket: &mut Socket, value: Value) {
    socket.send(Message::text(value.to_string())).unwrap();
}

#[test]
fn a_visitor_chats_with_the_flow_then_an_agent_and_resumes_after_a_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = chat_server(dir.path());
    let ws = server.url.replace("http://", "ws://");
    let mut desk = connect(&format!("{ws}/agent/v1/ws?token={token}"));
    assert_eq!(next(&mut desk)["type"], "snapshot");

    // The visitor joins and talks to the flow.
    let mut visitor = connect(&format!("{ws}/chat/v1/ws"));
    send(
        &mut visitor,
        json!({"type": "message", "text": "too early"}),
    );
    assert_eq!(next(&mut visitor)["code"], "join_first");
    send(
        &mut visitor,
        json!({"type": "join", "address": "chat:support", "name": "Ada"}),
    );
    let joined = next(&mut visitor);
    assert_eq!(
        (joined["type"].as_str(), joined["resumed"].as_bool()),
        (Some("joined"), Some(false))
    );
    let contact = joined["contact"].as_str().unwrap().to_string();
    assert!(
        next(&mut visitor)["text"]
            .as_str()
            .unwrap()
            .starts_with("Hi, this is Acme.")
    );
    send(&mut visitor, json!({"type": "message", "text": "1001"}));
    assert_eq!(next(&mut visitor)["text"], "Order 1001 is shipped.");
    visitor.send(Message::text("{not json")).unwrap();
    assert_eq!(next(&mut visitor)["code"], "invalid_json");

    // Handed over: the agent's desk gets the reservation, accepts, and the visitor is told.
    send(
        &mut visitor,
        json!({"type": "message", "text": "I want an agent"}),
    );
    assert_eq!(next(&mut visitor)["text"], "Connecting you with an agent.");
    assert_eq!(next(&mut visitor)["type"], "queued");
    let offer = next(&mut desk);
    assert_eq!(offer["type"], "reservation");
    assert_eq!(offer["task"]["contact"], json!(contact));
    send(
        &mut desk,
        json!({"type": "accept", "reservation": offer["reservation"]["id"]}),
    );
    assert_eq!(next(&mut desk)["type"], "ok");
    let joined = next(&mut visitor);
    assert_eq!(
        (joined["type"].as_str(), joined["agent"].as_str()),
        (Some("agent-joined"), Some("sara"))
    );

    // Both ways, without the flow in between.
    send(
        &mut visitor,
        json!({"type": "message", "text": "My parcel is late"}),
    );
    let heard = next(&mut desk);
    assert_eq!(
        (heard["type"].as_str(), heard["text"].as_str()),
        (Some("message"), Some("My parcel is late"))
    );
    let task = offer["task"]["id"].as_str().unwrap().to_string();
    let (status, _) = server.call_as(
        Some(&token),
        "POST",
        &format!("/agent/v1/tasks/{task}/messages"),
        Some(json!({"text": "Sorry! Sending a new one today."})),
    );
    assert_eq!(status, 200);
    let reply = next(&mut visitor);
    assert_eq!(
        (reply["from"].as_str(), reply["text"].as_str()),
        (Some("agent"), Some("Sorry! Sending a new one today."))
    );

    // The visitor reloads the page: the chat resumes, with the agent still there.
    drop(visitor);
    let mut visitor = connect(&format!("{ws}/chat/v1/ws"));
    send(
        &mut visitor,
        json!({"type": "join", "address": "chat:support", "resume": contact}),
    );
    let resumed = next(&mut visitor);
    assert_eq!(
        (resumed["contact"].as_str(), resumed["resumed"].as_bool()),
        (Some(contact.as_str()), Some(true))
    );
    send(
        &mut desk,
        json!({"type": "message", "task": task, "text": "Anything else?"}),
    );
    assert_eq!(next(&mut desk)["type"], "ok");
    assert_eq!(next(&mut visitor)["text"], "Anything else?");

    // Another agent cannot write into this conversation.
    let (_, other) = server.call(
        "PUT",
        "/v1/agents/bob",
        Some(json!({"attributes": {}, "capacity": {"chat": 1}})),
    );
    let bob = other["token"].as_str().unwrap();
    let (status, err) = server.call_as(
        Some(bob),
        "POST",
        &format!("/agent/v1/tasks/{task}/messages"),
        Some(json!({"text": "hi"})),
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("not_yours"))
    );
    // Sara reads the conversation of her task; Bob may not.
    let (status, hers) = server.call_as(
        Some(&token),
        "GET",
        &format!("/agent/v1/tasks/{task}/messages"),
        None,
    );
    assert_eq!(status, 200, "{hers}");
    assert_eq!(hers[0]["text"], "My parcel is late", "{hers}");
    assert_eq!(hers.as_array().unwrap().len(), 3, "{hers}");
    let (status, _) = server.call_as(
        Some(bob),
        "GET",
        &format!("/agent/v1/tasks/{task}/messages"),
        None,
    );
    assert_eq!(status, 403);

    // The conversation is kept with the contact, in order, and still there after a restart.
    let said = |server: &Server| -> Vec<(String, String)> {
        let (status, transcript) =
            server.call("GET", &format!("/v1/contacts/{contact}/transcript"), None);
        assert_eq!(status, 200, "{transcript}");
        transcript
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                assert_eq!(s["task"], json!(task), "{s}");
                assert_eq!(s["agent"], "sara", "{s}");
                (
                    s["from"].as_str().unwrap().to_string(),
                    s["text"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let expected = [
        ("customer", "My parcel is late"),
        ("agent", "Sorry! Sending a new one today."),
        ("agent", "Anything else?"),
    ]
    .map(|(from, text)| (from.to_string(), text.to_string()));
    assert_eq!(said(&server), expected);
    drop((desk, visitor));
    drop(server);
    let server = Server::start(dir.path(), &[]);
    assert_eq!(said(&server), expected, "kept across a restart");
    let (status, _) = server.call("GET", "/v1/contacts/nobody/transcript", None);
    assert_eq!(status, 404);
}

#[test]
fn the_widget_and_demo_page_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (status, page) = server.call_as(None, "GET", "/chat", None);
    assert_eq!(status, 200);
    assert!(
        page.as_str()
            .unwrap()
            .contains(r#"<script src="/widget.js" data-address="chat:support"></script>"#)
    );
    let (status, script) = server.call_as(None, "GET", "/widget.js", None);
    assert_eq!(status, 200);
    let script = script.as_str().unwrap();
    assert!(
        script.contains("/chat/v1/ws") && script.contains("textContent"),
        "messages are shown as text"
    );
    // A join to an address no flow answers is a clear error, not a dropped socket.
    let mut visitor = connect(&format!(
        "{}/chat/v1/ws",
        server.url.replace("http://", "ws://")
    ));
    send(
        &mut visitor,
        json!({"type": "join", "address": "chat:nobody"}),
    );
    let err = next(&mut visitor);
    assert_eq!(err["code"], "cannot_start");
    assert!(err["message"].as_str().unwrap().contains("no flow answers"));
}

/// The close frame's code, skipping any message still on its way.
fn closed_with(socket: &mut Socket) -> u16 {
    loop {
        match socket.read().expect("a close frame within 10 s") {
            Message::Close(Some(frame)) => return u16::from(frame.code),
            Message::Close(None) => return 1005,
            _ => continue,
        }
    }
}

#[test]
fn sigterm_drains_readiness_fails_sockets_are_told_to_reconnect_then_the_node_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = chat_server(dir.path());
    let ws = server.url.replace("http://", "ws://");
    let mut desk = connect(&format!("{ws}/agent/v1/ws?token={token}"));
    assert_eq!(next(&mut desk)["type"], "snapshot");
    let mut visitor = connect(&format!("{ws}/chat/v1/ws"));
    send(
        &mut visitor,
        json!({"type": "join", "address": "chat:support", "name": "Ada"}),
    );
    assert_eq!(next(&mut visitor)["type"], "joined");
    let (status, ready) = server.call_as(None, "GET", "/readyz", None);
    assert_eq!((status, ready), (200, json!({"status": "ready"})));

    server.terminate();
    // Going away (1001): the widget and the desk reconnect, through a load balancer to
    // another node.
    assert_eq!(closed_with(&mut visitor), 1001);
    assert_eq!(closed_with(&mut desk), 1001);
    // Not ready while it drains, so a load balancer sends nobody new.
    let (status, ready) = server.call_as(None, "GET", "/readyz", None);
    assert_eq!((status, ready), (503, json!({"status": "draining"})));
    let (status, _) = server.call_as(None, "GET", "/healthz", None);
    assert_eq!(status, 200, "alive while draining");
    // With no call up, it stops by itself soon after, cleanly.
    let exit = server.exit_status(Duration::from_secs(20));
    assert!(exit.success(), "{exit}");
}

#[test]
fn an_agent_hands_a_chat_to_another_queue_with_its_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let (server, sara) = chat_server(dir.path());
    let (status, _) = server.call(
        "PUT",
        "/v1/queues/billing",
        Some(json!({"members": r#""billing" in worker.skills"#})),
    );
    assert_eq!(status, 200);
    let bob = crate::support::agent(
        &server,
        "bob",
        json!({"skills": ["billing"]}),
        json!({"chat": 1}),
    );
    let activity = |token: &str, what: &str| {
        let (status, _) = server.call_as(
            Some(token),
            "PUT",
            "/agent/v1/activity",
            Some(json!({"activity": what})),
        );
        assert_eq!(status, 200);
    };
    activity(&bob, "break");
    let ws = server.url.replace("http://", "ws://");
    let mut visitor = connect(&format!("{ws}/chat/v1/ws"));
    send(
        &mut visitor,
        json!({"type": "join", "address": "chat:support", "name": "Ada"}),
    );
    let contact = next(&mut visitor)["contact"].as_str().unwrap().to_string();
    next(&mut visitor);
    send(
        &mut visitor,
        json!({"type": "message", "text": "agent please"}),
    );
    assert_eq!(next(&mut visitor)["text"], "Connecting you with an agent.");
    assert_eq!(next(&mut visitor)["type"], "queued");
    let (_, me) = server.call_as(Some(&sara), "GET", "/agent/v1/me", None);
    let r = me["reservation"]["id"]
        .as_str()
        .expect("offered to sara")
        .to_string();
    let task = me["reservation"]["task"].as_str().unwrap().to_string();
    server.call_as(
        Some(&sara),
        "POST",
        &format!("/agent/v1/reservations/{r}/accept"),
        Some(json!({})),
    );
    assert_eq!(next(&mut visitor)["type"], "agent-joined", "sara joined");
    send(
        &mut visitor,
        json!({"type": "message", "text": "I was charged twice"}),
    );
    let said = |server: &Server| {
        server
            .call("GET", &format!("/v1/contacts/{contact}/transcript"), None)
            .1
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while said(&server).as_array().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the message never reached sara"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Bad transfers change nothing.
    let transfer = |token: &str, queue: &str| {
        server.call_as(
            Some(token),
            "POST",
            &format!("/agent/v1/tasks/{task}/transfer"),
            Some(json!({"queue": queue})),
        )
    };
    let (status, unknown) = transfer(&sara, "nowhere");
    assert_eq!(status, 404, "{unknown}");
    let (status, _) = transfer(&bob, "billing");
    assert_eq!(status, 403, "not bob's conversation");

    // Sara hands it to billing: she is free, the task waits there, not offered back to her.
    let (status, moved) = transfer(&sara, "billing");
    assert_eq!(status, 200, "{moved}");
    assert_eq!(
        (moved["status"].as_str(), moved["queue"].as_str()),
        (Some("pending"), Some("billing"))
    );
    assert_eq!(moved["attributes"]["transferred_from"], "sara");
    let (_, me) = server.call_as(Some(&sara), "GET", "/agent/v1/me", None);
    assert_eq!(me["busy"]["chat"], 0, "{me}");
    let (status, _) = server.call_as(
        Some(&sara),
        "POST",
        &format!("/agent/v1/tasks/{task}/messages"),
        Some(json!({"text": "still me"})),
    );
    assert_eq!(status, 403, "no longer hers");

    // Bob takes it, reads what was said, and the customer talks to him.
    activity(&bob, "available");
    let (_, me) = server.call_as(Some(&bob), "GET", "/agent/v1/me", None);
    let r = me["reservation"]["id"]
        .as_str()
        .expect("offered to bob")
        .to_string();
    let (status, _) = server.call_as(
        Some(&bob),
        "POST",
        &format!("/agent/v1/reservations/{r}/accept"),
        Some(json!({})),
    );
    assert_eq!(status, 200);
    let (status, history) = server.call_as(
        Some(&bob),
        "GET",
        &format!("/agent/v1/tasks/{task}/messages"),
        None,
    );
    assert_eq!(status, 200, "{history}");
    assert_eq!(history[0]["text"], "I was charged twice");
    assert_eq!(history[0]["agent"], "sara");
    let mut joined = next(&mut visitor);
    while joined["type"] != "agent-joined" || joined["agent"] != "bob" {
        joined = next(&mut visitor);
    }
    let mut desk = crate::support::desk(&server, &bob);
    assert_eq!(desk.next()["type"], "snapshot");
    send(
        &mut visitor,
        json!({"type": "message", "text": "hello bob"}),
    );
    let heard = desk.next();
    assert_eq!(
        (heard["type"].as_str(), heard["text"].as_str()),
        (Some("message"), Some("hello bob")),
        "{heard}"
    );
}
