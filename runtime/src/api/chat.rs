//! Web chat: the visitors' WebSocket (`/chat/v1/ws`), the embeddable widget (`/widget.js`)
//! and a demo page (`/chat`). Visitors need no token: they are customers.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::Api;
use crate::contract::{Channel, Event};
use crate::runtime::Runtime;
use crate::sessions::{NewContact, Status};

/// The widget script: one `<script src=".../widget.js" data-address="chat:support">` tag.
const WIDGET: &str = include_str!("widget.js");

/// The chat routes.
pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/chat/v1/ws", get(socket))
        .route(
            "/widget.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    WIDGET,
                )
            }),
        )
        .route("/chat", get(demo))
}

/// The demo page; `?name=` plays a site that knows its signed-in customer.
#[utoipa::path(get, path = "/chat", tag = "chat",
    params(("name" = Option<String>, Query, description = "The customer's name, as a site that knows them would give it")),
    responses((status = 200, description = "A page with the chat widget", content_type = "text/html", body = String)))]
async fn demo(
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Html<String> {
    let name = query
        .get("name")
        .map(|n| {
            let escaped: String = n
                .chars()
                .filter(|c| !c.is_control())
                .take(100)
                .map(|c| match c {
                    '&' => "&amp;".to_string(),
                    '"' => "&quot;".to_string(),
                    '<' => "&lt;".to_string(),
                    '>' => "&gt;".to_string(),
                    c => c.to_string(),
                })
                .collect();
            format!(" data-name=\"{escaped}\"")
        })
        .unwrap_or_default();
    Html(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Acme support</title></head>
<body><h1>Acme support</h1><p>Questions about an order? Chat with us.</p>
<script src="/widget.js" data-address="chat:support"{name}></script></body></html>"#
    ))
}

/// The visitor's WebSocket: the widget sends `join` (with the chat address and, to resume, its
/// contact) and `message`s; the node answers `joined` (with the conversation so far as
/// `history` when resumed, on whichever node) and sends what the flow and the agent say,
/// typing, and `error`s with a code. Messages up to 16 KiB.
#[utoipa::path(get, path = "/chat/v1/ws", tag = "chat", responses(
    (status = 101, description = "Switched to the WebSocket"),
    (status = 400, description = "Not a WebSocket request", body = super::openapi::ErrorBody),
    (status = 426, description = "Not a WebSocket request", body = super::openapi::ErrorBody)))]
async fn socket(State(rt): Api, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .max_message_size(16 * 1024)
        .on_upgrade(move |ws| visitor(rt, ws))
        .into_response()
}

fn error(code: &str, message: &str) -> Message {
    Message::Text(
        json!({"type": "error", "code": code, "message": message})
            .to_string()
            .into(),
    )
}

/// Runs blocking contact work (flow steps, store flushes) off the async threads.
async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(work).await.ok()
}

use switchboard_wire::chat::{VisitorMessage, visitor_message};

/// Waits for a `join`, starts or resumes the contact, then relays both ways.
async fn visitor(rt: Arc<Runtime>, mut ws: WebSocket) {
    let contact = loop {
        let Some(Ok(message)) = ws.recv().await else {
            return;
        };
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(join) = serde_json::from_str::<Value>(&text) else {
            let _ = ws
                .send(error(
                    "invalid_json",
                    "send JSON, starting with {\"type\": \"join\", \"address\": \"chat:...\"}",
                ))
                .await;
            continue;
        };
        if join["type"] != "join" {
            let _ = ws
                .send(error(
                    "join_first",
                    "the first message is {\"type\": \"join\", \"address\": \"chat:...\"}",
                ))
                .await;
            continue;
        }
        match start_or_resume(rt.clone(), join).await {
            Ok(contact) => break contact,
            Err(message) => {
                let _ = ws.send(message).await;
            }
        }
    };
    // Attached before the history is read, so no line is missed; a line in the history that
    // also arrives live (sent meanwhile, or relayed late from another node) is not sent again.
    let mut outgoing = rt.chat.attach(&contact.0);
    let mut in_history: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut joined = json!({"type": "joined", "contact": contact.0, "resumed": contact.1});
    if contact.1 {
        let (rt2, id) = (rt.clone(), contact.0.clone());
        type Resumed = (Vec<Value>, Option<String>);
        let history = run(move || -> Result<Resumed, crate::sessions::ContactError> {
            let agent = match rt2.contacts().get(&id)?.status {
                Status::WithAgent { agent, .. } => agent,
                _ => None,
            };
            let trace = rt2.contacts().trace(&id)?;
            let said = rt2.contacts().transcript(&id)?;
            Ok((crate::channels::chat::history(&trace, &said), agent))
        })
        .await;
        match history {
            Some(Ok((lines, agent))) => {
                in_history.extend(
                    lines
                        .iter()
                        .filter_map(|l| l["id"].as_str().map(str::to_string)),
                );
                joined["history"] = Value::from(lines);
                if let Some(agent) = agent {
                    joined["agent"] = Value::from(agent);
                }
            }
            Some(Err(e)) => {
                tracing::warn!(contact = %contact.0, error = %e, "cannot read a resumed chat's history");
            }
            None => {}
        }
    }
    if ws
        .send(Message::Text(joined.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    if let Some(report) = contact.2 {
        rt.chat.deliver(&report);
    }
    let id = contact.0;
    loop {
        tokio::select! {
            () = rt.drained() => {
                let _ = ws.send(crate::api::going_away()).await;
                return;
            }
            out = outgoing.recv() => {
                let Some(out) = out else { return };
                if out["id"].as_str().is_some_and(|id| in_history.contains(id)) {
                    continue;
                }
                if ws.send(Message::Text(out.to_string().into())).await.is_err() {
                    return;
                }
            }
            incoming = ws.recv() => {
                let Some(Ok(message)) = incoming else { return };
                let Message::Text(text) = message else { continue };
                let msg = match visitor_message(&text) {
                    Ok(msg) => msg,
                    Err(refusal) => {
                        let _ = ws.send(error(refusal.code, &refusal.message)).await;
                        continue;
                    }
                };
                let (rt2, id2) = (rt.clone(), id.clone());
                match msg {
                    VisitorMessage::Message { text } => {
                        let text = text.unwrap_or_default();
                        if text.trim().is_empty() {
                            continue;
                        }
                        if let Some(Err(e)) = run(move || rt2.chat_message(&id2, &text)).await {
                            let _ = ws.send(error("not_delivered", &e.to_string())).await;
                        }
                    }
                    VisitorMessage::Typing => {
                        if let Ok(session) = rt.contacts().get(&id)
                            && let Status::WithAgent { agent: Some(agent), .. } = session.status
                        {
                            rt.chat.to_agent(&agent, json!({"type": "typing", "contact": id}));
                        }
                    }
                    VisitorMessage::Close => {
                        if let Some(Ok(report)) = run(move || rt2.contacts().send(&id2, Event::Hangup)).await {
                            rt.chat.deliver(&report);
                        }
                        return;
                    }
                }
            }
        }
    }
}

/// The contact id, whether it was resumed, and the first step's report of a new contact.
type Joined = (String, bool, Option<crate::sessions::StepReport>);

async fn start_or_resume(rt: Arc<Runtime>, join: Value) -> Result<Joined, Message> {
    if let Some(resume) = join["resume"].as_str()
        && let Ok(session) = rt.contacts().get(resume)
        && session.channel == Channel::Chat
        && !matches!(session.status, Status::Ended { .. })
    {
        return Ok((resume.to_string(), true, None));
    }
    let address = join["address"].as_str().unwrap_or_default().to_string();
    if address.is_empty() {
        return Err(error(
            "missing_address",
            "join needs the chat address the widget serves, such as chat:support",
        ));
    }
    let name = join["name"].as_str().unwrap_or_default().to_string();
    let new = NewContact {
        channel: Some(Channel::Chat),
        from: format!("visitor:{}", uuid::Uuid::new_v4().simple()),
        to: address,
        flow: None,
        attributes: if name.is_empty() {
            Vec::new()
        } else {
            vec![("name".into(), name)]
        },
        held: true,
    };
    match run(move || rt.contacts().start(new)).await {
        Some(Ok(report)) => Ok((report.contact.clone(), false, Some(report))),
        Some(Err(e)) => Err(error("cannot_start", &e.to_string())),
        None => Err(error("internal", "the chat could not be started")),
    }
}

/// The chat widget a site includes with `<script src=".../widget.js" data-to="...">`.
#[utoipa::path(get, path = "/widget.js", tag = "chat",
    responses((status = 200, description = "The widget's script", content_type = "text/javascript", body = String)))]
#[allow(dead_code)]
fn widget_doc() {}

/// The operations of this module (see `openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(socket, widget_doc, demo))]
pub(super) struct Doc;
