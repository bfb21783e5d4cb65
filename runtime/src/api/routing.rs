//! The task router's doors: supervisors (admin token) define queues and agents, create and
//! cancel tasks and watch the numbers; agents (their own token) change activity, accept or
//! reject reservations, complete tasks, and hold a WebSocket that pushes reservations.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{Answer, Api, ApiError, AppJson, blocking, ok};
use crate::contract::Channel;
use crate::router::{NewTask, QueueConfig};
use crate::runtime::Runtime;

/// Supervisor routes, mounted under `/v1` behind the admin token.
pub fn supervisor() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/queues", get(list_queues))
        .route("/queues/{name}", put(define_queue))
        .route("/queues/{name}/stats", get(queue_stats))
        .route("/agents", get(list_agents))
        .route("/agents/{name}", put(upsert_agent).get(show_agent))
        .route("/agents/{name}/activity", put(supervisor_activity))
        .route("/tasks", post(create_task).get(list_tasks))
        .route("/tasks/{id}", get(show_task))
        .route("/tasks/{id}/cancel", post(cancel_task))
        .route("/tasks/{id}/move", post(move_task))
        .route("/workflow", get(show_workflow).put(set_workflow))
        .route("/stats", get(all_stats))
        .route("/stats/stream", get(stats_stream))
}

/// Agent routes, mounted under `/agent/v1` behind agent tokens.
pub fn agent(runtime: Arc<Runtime>) -> Router<Arc<Runtime>> {
    Router::new()
        .route("/me", get(me))
        .route("/activity", put(my_activity))
        .route("/reservations/{id}/accept", post(accept))
        .route("/reservations/{id}/reject", post(reject))
        .route("/tasks/{id}", get(my_task))
        .route("/tasks/{id}/context", get(task_context))
        .route("/history", get(history))
        .route("/tasks/{id}/wrap", post(wrap))
        .route("/tasks/{id}/transfer", post(transfer))
        .route("/tasks/{id}/hold", post(hold))
        .route("/tasks/{id}/consult", post(consult))
        .route("/tasks/{id}/consult/complete", post(consult_complete))
        .route("/tasks/{id}/consult/cancel", post(consult_cancel))
        .route("/tasks/{id}/complete", post(complete))
        .route(
            "/tasks/{id}/messages",
            post(say_to_customer).get(conversation),
        )
        .route("/ws", get(socket))
        .merge(super::email::agent())
        .route_layer(middleware::from_fn_with_state(runtime, authenticate_agent))
}

/// The agent a request is from.
#[derive(Clone)]
pub(super) struct Agent(pub(super) String);

async fn authenticate_agent(State(rt): Api, mut request: Request, next: Next) -> Answer {
    // Browsers cannot set headers on a WebSocket: the token may come as `?token=`.
    let from_header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let from_query = request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("token=")))
        .map(str::to_string);
    let token = from_header.or(from_query).unwrap_or_default();
    if let Some(name) = rt.desk().authenticate(&token) {
        super::people::within_rate(&rt, &format!("agent:{name}"))?;
        request.extensions_mut().insert(Agent(name));
        return Ok(next.run(request).await);
    }
    // A person signed in (browser session) or with their own API token: a user whose role is
    // agent works the desk of the agent of the same name.
    let who = super::people::principal_of(&rt, &request)
        .await
        .map_err(|e| match e.code() {
            "unauthorized" => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong agent credentials: send `Authorization: Bearer sbw_...` with the token given when the agent was created, or sign in as an agent at /auth/sign-in",
            ),
            // A session over, a missing CSRF token, a disabled user: said as such.
            _ => e,
        })?;
    let agent_exists = rt.desk().agent_exists(&who.person);
    if who.role != crate::users::Role::Agent || !agent_exists {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_an_agent",
            format!(
                "{} is a {} with no agent desk: the desk is for users whose role is agent and who have an agent of the same name (PUT /v1/agents/{})",
                who.person, who.role, who.person
            ),
        ));
    }
    super::people::within_rate(&rt, &format!("user:{}", who.person))?;
    request.extensions_mut().insert(Agent(who.person));
    Ok(next.run(request).await)
}

/// Router work changes durable state and may have news for flows: flush, then tell them.
async fn routed<T: Send + 'static>(
    rt: Arc<Runtime>,
    work: impl FnOnce(&Runtime) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    blocking(move || {
        let value = work(&rt)?;
        rt.admin().flush()?;
        rt.deliver_news();
        Ok(value)
    })
    .await
}

async fn list_queues(State(rt): Api) -> Answer {
    ok(StatusCode::OK, rt.admin().queues())
}

async fn define_queue(
    State(rt): Api,
    Extension(super::Caller(who)): Extension<super::Caller>,
    Path(name): Path<String>,
    AppJson(mut config): AppJson<QueueConfig>,
) -> Answer {
    config.name = name;
    let queue = routed(rt, move |rt| {
        let detail = serde_json::to_value(&config).unwrap_or_default();
        let (name, queue) = (config.name.clone(), rt.admin().define_queue(config)?);
        rt.admin().note(&who, "define-queue", &name, detail)?;
        Ok(queue)
    })
    .await?;
    ok(StatusCode::OK, queue)
}

async fn queue_stats(State(rt): Api, Path(name): Path<String>) -> Answer {
    ok(StatusCode::OK, rt.admin().stats(&name)?)
}

#[derive(Deserialize)]
struct AgentBody {
    #[serde(default = "empty_object")]
    attributes: serde_json::Value,
    #[serde(default)]
    capacity: BTreeMap<Channel, u32>,
}

fn empty_object() -> serde_json::Value {
    json!({})
}

async fn upsert_agent(
    State(rt): Api,
    Extension(super::Caller(who)): Extension<super::Caller>,
    Path(name): Path<String>,
    AppJson(body): AppJson<AgentBody>,
) -> Answer {
    let (record, token) = routed(rt, move |rt| {
        let detail = json!({"attributes": body.attributes, "capacity": body.capacity});
        let done = rt
            .admin()
            .upsert_agent(&name, body.attributes, body.capacity)?;
        rt.admin().note(&who, "upsert-agent", &name, detail)?;
        Ok(done)
    })
    .await?;
    let mut answer = json!({"agent": record.name, "attributes": record.attributes, "capacity": record.capacity, "activity": record.activity});
    if let Some(token) = token {
        answer["token"] = json!(token);
    }
    ok(StatusCode::OK, answer)
}

async fn list_agents(State(rt): Api) -> Answer {
    ok(StatusCode::OK, rt.admin().agents())
}

async fn show_agent(State(rt): Api, Path(name): Path<String>) -> Answer {
    ok(StatusCode::OK, rt.admin().agent(&name)?)
}

#[derive(Deserialize)]
struct ActivityBody {
    activity: String,
}

async fn supervisor_activity(
    State(rt): Api,
    Extension(super::Caller(who)): Extension<super::Caller>,
    Path(name): Path<String>,
    AppJson(body): AppJson<ActivityBody>,
) -> Answer {
    let detail = json!({"activity": body.activity});
    let answer = set_activity(rt.clone(), name.clone(), body).await?;
    blocking(move || Ok(rt.admin().note(&who, "set-activity", &name, detail)?)).await?;
    Ok(answer)
}

/// Changes an agent's activity, for the supervisor's and the agent's own route alike.
async fn set_activity(rt: Arc<Runtime>, name: String, body: ActivityBody) -> Answer {
    let record = routed(rt, move |rt| {
        Ok(rt.admin().set_activity(&name, &body.activity)?)
    })
    .await?;
    ok(
        StatusCode::OK,
        json!({"agent": record.name, "activity": record.activity}),
    )
}

/// The open tasks (waiting, offered, with an agent, wrapping), oldest first.
async fn list_tasks(State(rt): Api) -> Answer {
    ok(StatusCode::OK, rt.admin().open_tasks())
}

async fn create_task(State(rt): Api, AppJson(new): AppJson<NewTask>) -> Answer {
    let task = routed(rt, move |rt| Ok(rt.admin().create_task(new)?)).await?;
    ok(StatusCode::CREATED, task)
}

async fn show_task(State(rt): Api, Path(id): Path<String>) -> Answer {
    let task = blocking(move || Ok(rt.admin().task(&id)?)).await?;
    ok(StatusCode::OK, task)
}

#[derive(Deserialize, Default)]
struct ReasonBody {
    reason: Option<String>,
}

async fn cancel_task(
    State(rt): Api,
    Extension(super::Caller(who)): Extension<super::Caller>,
    Path(id): Path<String>,
    body: Option<Json<ReasonBody>>,
) -> Answer {
    let reason = body
        .and_then(|Json(b)| b.reason)
        .unwrap_or_else(|| format!("canceled by {who}"));
    let task = routed(rt, move |rt| {
        let task = rt.admin().cancel(&id, &reason)?;
        rt.admin()
            .note(&who, "cancel-task", &id, json!({"reason": reason}))?;
        Ok(task)
    })
    .await?;
    ok(StatusCode::OK, task)
}

#[derive(Deserialize)]
struct MoveBody {
    queue: String,
    priority: Option<i32>,
}

async fn move_task(
    State(rt): Api,
    Extension(super::Caller(who)): Extension<super::Caller>,
    Path(id): Path<String>,
    AppJson(body): AppJson<MoveBody>,
) -> Answer {
    let task = routed(rt, move |rt| {
        let task = rt.admin().move_task(&id, &body.queue, body.priority)?;
        let detail = json!({"queue": body.queue, "priority": body.priority});
        rt.admin().note(&who, "move-task", &id, detail)?;
        Ok(task)
    })
    .await?;
    ok(StatusCode::OK, task)
}

async fn show_workflow(State(rt): Api) -> Answer {
    ok(StatusCode::OK, rt.admin().workflow())
}

async fn set_workflow(
    State(rt): Api,
    Extension(super::Caller(who)): Extension<super::Caller>,
    AppJson(workflow): AppJson<crate::router::Workflow>,
) -> Answer {
    let saved = routed(rt, move |rt| {
        let detail = serde_json::to_value(&workflow).unwrap_or_default();
        let saved = rt.admin().set_workflow(workflow)?;
        rt.admin().note(&who, "set-workflow", "workflow", detail)?;
        Ok(saved)
    })
    .await?;
    ok(StatusCode::OK, saved)
}

async fn all_stats(State(rt): Api) -> Answer {
    ok(
        StatusCode::OK,
        json!({"queues": rt.admin().all_stats(), "agents": rt.admin().agents()}),
    )
}

/// Server-sent events for dashboards: at once and then every second, every queue's numbers
/// and every agent, as `event: stats`.
async fn stats_stream(State(rt): Api) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let stream = futures_util::stream::unfold((rt, true), |(rt, first)| async move {
        if !first {
            // A draining node ends the stream (the client reconnects elsewhere); an open
            // stream would hold the server's graceful stop forever.
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                () = rt.drained() => return None,
            }
        }
        if *rt.draining.borrow() {
            return None;
        }
        let value = json!({"queues": rt.admin().all_stats(), "agents": rt.admin().agents()});
        let event = Event::default().event("stats").json_data(value);
        Some((event, (rt, false)))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn me(State(rt): Api, Extension(Agent(name)): Extension<Agent>) -> Answer {
    ok(StatusCode::OK, rt.desk().agent(&name)?)
}

async fn my_activity(
    State(rt): Api,
    Extension(Agent(name)): Extension<Agent>,
    AppJson(body): AppJson<ActivityBody>,
) -> Answer {
    set_activity(rt, name, body).await
}

async fn accept(
    State(rt): Api,
    Extension(Agent(name)): Extension<Agent>,
    Path(id): Path<String>,
) -> Answer {
    let task = routed(rt, move |rt| {
        callback_can_be_dialed(rt, &name, &id)?;
        Ok(rt.desk().accept(&name, &id)?)
    })
    .await?;
    ok(StatusCode::OK, task)
}

/// Whether task `id` is a call.
fn to_a_call(rt: &Runtime, id: &str) -> bool {
    rt.desk()
        .task(id)
        .is_ok_and(|t| t.channel == Channel::Voice)
}

/// Calls that came by the Twilio webhooks are bridged by Twilio, which does not follow a
/// transfer made from the desk yet: refused (409) rather than freeing an agent who is still
/// on the call. Other tasks pass.
fn calls_here_only(rt: &Runtime, id: &str, what: &str) -> Result<(), ApiError> {
    let Ok(task) = rt.desk().task(id) else {
        return Ok(());
    };
    let twilio = task.channel == Channel::Voice
        && task
            .contact
            .as_deref()
            .and_then(|c| rt.contacts().get(c).ok())
            .is_some_and(|s| s.attributes.iter().any(|(k, _)| k == "twilio_call_sid"));
    if twilio {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_transferable",
            format!(
                "task {id} is a call through Twilio: it cannot be {what} from the desk yet; use the phone"
            ),
        ));
    }
    Ok(())
}

/// A callback offered by reservation `id` is accepted only where it can be dialed: SIP on,
/// and a trunk for a plain number (else the agent would wait for a call that never comes).
fn callback_can_be_dialed(rt: &Runtime, agent: &str, id: &str) -> Result<(), ApiError> {
    let desk = rt.desk();
    let Some(reservation) = desk.reservations_of(agent).into_iter().find(|r| r.id == id) else {
        return Ok(());
    };
    let Some(task) = desk.task(&reservation.task).ok() else {
        return Ok(());
    };
    let Some(callback) = task.callback.clone() else {
        return Ok(());
    };
    let sip = &rt.config().sip;
    let why = if crate::channels::twilio::callback::by_twilio(rt, &task) {
        if rt.config().twilio.public_url.is_some() {
            return Ok(());
        }
        "Twilio needs a URL to ask for the call's TwiML: set twilio.public_url"
    } else if sip.listen.is_none() {
        "SIP is off on this server: set sip.listen (or --sip) so it can dial"
    } else if sip.trunk.is_none()
        && !(callback.number.starts_with("sip:") || callback.number.starts_with("sips:"))
    {
        "there is no trunk to dial a number through: set sip.trunk (or SWITCHBOARD_SIP_TRUNK)"
    } else {
        return Ok(());
    };
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "callback_cannot_dial",
        format!(
            "the callback to {} cannot be dialed: {why}; the offer stays open",
            callback.number
        ),
    ))
}

async fn reject(
    State(rt): Api,
    Extension(Agent(name)): Extension<Agent>,
    Path(id): Path<String>,
) -> Answer {
    let task = routed(rt, move |rt| Ok(rt.desk().reject(&name, &id)?)).await?;
    ok(StatusCode::OK, task)
}

#[derive(Deserialize, Default)]
struct CompleteBody {
    wrapup: Option<String>,
    disposition: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    queue: Option<String>,
    agent: Option<String>,
    number: Option<String>,
}

/// The agent hands the conversation to another queue or a named agent (any channel; blind),
/// or a call to a number or SIP URI.
async fn transfer(
    State(rt): Api,
    Extension(Agent(name)): Extension<Agent>,
    Path(id): Path<String>,
    AppJson(body): AppJson<TransferBody>,
) -> Answer {
    use crate::router::TransferTo;
    let to = match (body.queue, body.agent, body.number) {
        (Some(queue), None, None) => TransferTo::Queue(queue),
        (None, Some(agent), None) => TransferTo::Agent(agent),
        (None, None, Some(number)) if !number.trim().is_empty() => {
            TransferTo::Number(number.trim().to_string())
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_transfer",
                "name exactly one target: {\"queue\": ...}, {\"agent\": ...} or (a call) {\"number\": \"+1555... or sip:...\"}",
            ));
        }
    };
    let task = routed(rt, move |rt| {
        if to_a_call(rt, &id) {
            calls_here_only(rt, &id, "transferred")?;
        }
        Ok(rt.desk().transfer(&name, &id, &to)?)
    })
    .await?;
    ok(StatusCode::OK, task)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldBody {
    /// `true` (the default): on hold; `false`: back.
    #[serde(default = "yes")]
    on: bool,
}

fn yes() -> bool {
    true
}

/// Puts the caller of a call the agent holds on hold (music) or takes them back.
async fn hold(
    State(rt): Api,
    Extension(Agent(name)): Extension<Agent>,
    Path(id): Path<String>,
    body: Option<Json<HoldBody>>,
) -> Answer {
    let on = body.is_none_or(|Json(b)| b.on);
    let task = routed(rt, move |rt| {
        calls_here_only(rt, &id, "put on hold")?;
        Ok(rt.desk().hold(&name, &id, on)?)
    })
    .await?;
    ok(StatusCode::OK, task)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsultBody {
    agent: String,
}

/// Warm transfer of a call: the caller waits with music while the agent's phone is bridged to
/// the consulted agent's (rung at once).
async fn consult(
    State(rt): Api,
    Extension(Agent(name)): Extension<Agent>,
    Path(id): Path<String>,
    AppJson(body): AppJson<ConsultBody>,
) -> Answer {
    let task = routed(rt, move |rt| {
        calls_here_only(rt, &id, "transferred")?;
        Ok(rt.desk().consult(&name, &id, &body.agent)?)
    })
    .await?;
    ok(StatusCode::OK, task)
}

/// Hands the call over to the consulted agent: the caller talks to them, the agent is free.
async fn consult_complete(
    State(rt): Api,
    Extension(agent): Extension<Agent>,
    Path(id): Path<String>,
) -> Answer {
    consult_to(rt, agent, id, crate::router::ConsultStage::Completing).await
}

/// Takes the call back: the consulted agent's leg is hung up, the caller talks to the agent.
async fn consult_cancel(
    State(rt): Api,
    Extension(agent): Extension<Agent>,
    Path(id): Path<String>,
) -> Answer {
    consult_to(rt, agent, id, crate::router::ConsultStage::Canceling).await
}

/// The agent moves their warm transfer on; the call's channel carries it out.
async fn consult_to(
    rt: Arc<Runtime>,
    Agent(name): Agent,
    id: String,
    stage: crate::router::ConsultStage,
) -> Answer {
    let task = routed(rt, move |rt| {
        Ok(rt.desk().consult_stage(Some(&name), &id, stage)?)
    })
    .await?;
    ok(StatusCode::OK, task)
}

/// The agent ends the conversation: wrap-up begins (the task `wrapping`, the agent still
/// busy with it) or, in a queue without wrap-up, the task completes.
async fn wrap(
    State(rt): Api,
    Extension(Agent(name)): Extension<Agent>,
    Path(id): Path<String>,
) -> Answer {
    let task = routed(rt, move |rt| Ok(rt.desk().wrap(&name, &id)?)).await?;
    ok(StatusCode::OK, task)
}

async fn complete(
    State(rt): Api,
    Extension(Agent(name)): Extension<Agent>,
    Path(id): Path<String>,
    body: Option<Json<CompleteBody>>,
) -> Answer {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let task = routed(rt, move |rt| {
        Ok(rt
            .desk()
            .complete(&name, &id, body.wrapup, body.disposition)?)
    })
    .await?;
    ok(StatusCode::OK, task)
}

#[derive(Deserialize)]
struct MessageBody {
    text: String,
}

async fn say_to_customer(
    State(rt): Api,
    Extension(Agent(name)): Extension<Agent>,
    Path(id): Path<String>,
    AppJson(body): AppJson<MessageBody>,
) -> Answer {
    blocking(move || rt.agent_message(&name, &id, &body.text)).await?;
    ok(StatusCode::OK, json!({"sent": true}))
}

/// The conversation of a task offered to or held by the agent (chat, SMS), in order: what
/// the customer and earlier agents said, for an agent who takes it over.
/// The tasks the agent handled lately, newest first (`?limit=`, 20 by default, 200 at most).
async fn history(
    State(rt): Api,
    Extension(Agent(name)): Extension<Agent>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Answer {
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 200);
    let tasks = blocking(move || Ok(rt.desk().history(&name, limit)?)).await?;
    ok(StatusCode::OK, tasks)
}

/// Who the customer of a task offered to or held by the agent is, and what they did in the
/// flow: what the desk shows while the offer rings.
async fn task_context(
    State(rt): Api,
    Extension(Agent(name)): Extension<Agent>,
    Path(id): Path<String>,
) -> Answer {
    let context = blocking(move || Ok(rt.desk().context(&name, &id)?)).await?;
    ok(StatusCode::OK, context)
}

async fn conversation(
    State(rt): Api,
    Extension(Agent(name)): Extension<Agent>,
    Path(id): Path<String>,
) -> Answer {
    let said = blocking(move || {
        let task = task_of_agent(&rt, &name, &id)?;
        let Some(contact) = task.contact else {
            return Err(crate::router::RouterError::NotYours(format!(
                "task {id} came from no contact: it has no conversation"
            ))
            .into());
        };
        Ok(rt.contacts().transcript(&contact)?)
    })
    .await?;
    ok(StatusCode::OK, said)
}

/// A task offered to or held by the agent (its transfer, its attributes); 403 for anyone else.
async fn my_task(
    State(rt): Api,
    Extension(Agent(name)): Extension<Agent>,
    Path(id): Path<String>,
) -> Answer {
    let task = blocking(move || Ok(task_of_agent(&rt, &name, &id)?)).await?;
    ok(StatusCode::OK, task)
}

/// The task `id` if it is offered to, held or being wrapped up by `agent`.
pub(super) fn task_of_agent(
    rt: &Runtime,
    agent: &str,
    id: &str,
) -> Result<crate::router::Task, crate::router::RouterError> {
    let task = rt.desk().task(id)?;
    let theirs = task.agent.as_deref() == Some(agent)
        && matches!(
            task.status,
            crate::router::TaskStatus::Reserved
                | crate::router::TaskStatus::Assigned
                | crate::router::TaskStatus::Wrapping
        );
    if !theirs {
        return Err(crate::router::RouterError::NotYours(format!(
            "task {id} is not offered to or held by {agent}"
        )));
    }
    Ok(task)
}

/// A live connection for an agent's desktop: first a snapshot of the agent, then every change
/// of the agent's world as it happens: `{"type": "reservation", "reservation": ..., "task":
/// ...}` for a new offer, and `rescinded`, `timed-out`, `canceled`, `wrapping`, `completed`
/// (with the task and the reason) and `activity` (with the new activity).
/// The desktop answers with `{"type": "accept"|"reject", "reservation": "rs_..."}` or
/// `{"type": "complete", "task": "tk_...", "wrapup": "..."}`; each answer is acknowledged with
/// `{"type": "ok", ...}` or `{"type": "error", "code": ..., "message": ...}`.
async fn socket(
    State(rt): Api,
    Extension(Agent(name)): Extension<Agent>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .on_upgrade(move |ws| agent_session(rt, name, ws))
        .into_response()
}

async fn agent_session(rt: Arc<Runtime>, name: String, mut ws: WebSocket) {
    let mut notices = rt.desk().subscribe();
    let mut chats = rt.chat.agent_messages();
    let snapshot = rt
        .desk()
        .agent(&name)
        .map(|w| json!({"type": "snapshot", "agent": w}))
        .unwrap_or_default();
    if ws
        .send(Message::Text(snapshot.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            () = rt.drained() => {
                let _ = ws.send(crate::api::going_away()).await;
                return;
            }
            notice = notices.recv() => match notice {

                Ok(n) if n.agent == name => {
                    let text = json!(n).to_string();
                    if ws.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            },
            chat = chats.recv() => match chat {
                Ok(m) if m.agent == name => {
                    if ws.send(Message::Text(m.message.to_string().into())).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            },
            incoming = ws.recv() => {
                let Some(Ok(message)) = incoming else { return };
                let Message::Text(text) = message else { continue };
                // Typing is shown, never answered (unless refused).
                let Some(answer) = handle_agent_message(rt.clone(), name.clone(), text.to_string()).await else {
                    continue;
                };
                if ws.send(Message::Text(answer.to_string().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}

use switchboard_wire::chat::{DeskMessage, desk_message};

async fn handle_agent_message(
    rt: Arc<Runtime>,
    name: String,
    text: String,
) -> Option<serde_json::Value> {
    let message = match desk_message(&text) {
        Ok(message) => message,
        Err(refusal) if refusal.code == "invalid_json" => {
            return Some(
                json!({"type": "error", "code": refusal.code, "message": refusal.message}),
            );
        }
        Err(refusal) => {
            return Some(
                ApiError::new(StatusCode::BAD_REQUEST, refusal.code, refusal.message).to_json(),
            );
        }
    };
    if let DeskMessage::Message { task, text } = message {
        let text = text.unwrap_or_default();
        let result = blocking(move || rt.agent_message(&name, &task, &text)).await;
        return Some(match result {
            Ok(()) => json!({"type": "ok", "sent": true}),
            Err(e) => e.to_json(),
        });
    }
    if let DeskMessage::Typing { task } = message {
        let result = blocking(move || rt.agent_typing(&name, &task)).await;
        return result.err().map(|e| e.to_json());
    }
    let result = routed(rt, move |rt| {
        Ok(match message {
            DeskMessage::Accept { reservation } => rt.desk().accept(&name, &reservation)?,
            DeskMessage::Reject { reservation } => rt.desk().reject(&name, &reservation)?,
            DeskMessage::Wrap { task } => rt.desk().wrap(&name, &task)?,
            DeskMessage::Complete {
                task,
                wrapup,
                disposition,
            } => {
                let wrapup = wrapup.and_then(|w| w.as_str().map(str::to_string));
                rt.desk().complete(&name, &task, wrapup, disposition)?
            }
            DeskMessage::Message { .. } | DeskMessage::Typing { .. } => {
                unreachable!("handled above")
            }
        })
    })
    .await;
    Some(match result {
        Ok(task) => json!({"type": "ok", "task": task}),
        Err(e) => e.to_json(),
    })
}
