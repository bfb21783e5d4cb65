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

use super::openapi::ErrorBody;
use super::{Answer, Api, ApiError, AppJson, blocking, ok};
use crate::contract::Channel;
use crate::router::{NewTask, QueueConfig, QueueStats, Task};
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

/// A task's id, as in its path.
const TASK: &str = "The task's id (`tk_...`)";

/// An agent's name, as in its path.
const AGENT: &str = "The agent's name (1-64 letters, digits, '-', '_', '.' or '@')";

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

/// Every queue with its members, routing plan, timeouts and wrap-up settings.
#[utoipa::path(get, path = "/v1/queues", tag = "routing",
    responses((status = 200, description = "The queues, by name", body = Vec<QueueConfig>)))]
async fn list_queues(State(rt): Api) -> Answer {
    ok(StatusCode::OK, rt.admin().queues())
}

/// Defines a queue, or redefines it (its waiting tasks and counts stay).
///
/// Expressions (members, targets) are compiled first: a bad one changes nothing.
#[utoipa::path(put, path = "/v1/queues/{name}", tag = "routing",
    params(("name" = String, Path, description = "The queue's name (1-64 letters, digits, '-', '_', '.' or '@'); a `name` in the body is ignored")),
    request_body = QueueConfig,
    responses(
        (status = 200, description = "The queue as defined", body = QueueConfig),
        (status = 400, description = "A bad name, expression, timeout or disposition list (`invalid`), or a body that does not read (`invalid_json`)", body = ErrorBody)))]
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

/// A queue's live numbers: tasks by status, waits, agents available and the service level.
#[utoipa::path(get, path = "/v1/queues/{name}/stats", tag = "routing",
    params(("name" = String, Path, description = "The queue's name")),
    responses(
        (status = 200, description = "The queue's live numbers", body = QueueStats),
        (status = 404, description = "No such queue (`unknown_queue`)", body = ErrorBody)))]
async fn queue_stats(State(rt): Api, Path(name): Path<String>) -> Answer {
    ok(StatusCode::OK, rt.admin().stats(&name)?)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct AgentBody {
    /// Skills, languages, level...: what queue expressions see as `worker` (a JSON object;
    /// `{}` by default).
    #[serde(default = "empty_object")]
    attributes: serde_json::Value,
    /// How many tasks of each channel at once (`{"voice": 1, "chat": 3}`); none by default.
    #[serde(default)]
    capacity: BTreeMap<Channel, u32>,
}

fn empty_object() -> serde_json::Value {
    json!({})
}

/// Creates an agent (answering their desk token, once) or changes their attributes and capacity.
#[utoipa::path(put, path = "/v1/agents/{name}", tag = "routing",
    params(("name" = String, Path, description = AGENT)),
    request_body = AgentBody,
    responses(
        (status = 200, description = "The agent: `agent` (the name), `attributes`, `capacity`, `activity`; and `token` (`sbw_...`) when the agent was just created: shown this once", body = Object),
        (status = 400, description = "A bad name, attributes that are not a JSON object (`invalid`), or a body that does not read (`invalid_json`)", body = ErrorBody)))]
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

/// Every agent with their activity, capacity, open offer and tasks.
#[utoipa::path(get, path = "/v1/agents", tag = "routing",
    responses((status = 200, description = "The agents by name, each with `name`, `attributes`, `activity`, `capacity`, `busy` (tasks per channel), `reservation` (the open offer or null), `tasks` (held or wrapping) and `missed_in_a_row`", body = Vec<Object>)))]
async fn list_agents(State(rt): Api) -> Answer {
    ok(StatusCode::OK, rt.admin().agents())
}

/// One agent with their activity, capacity, open offer and tasks.
#[utoipa::path(get, path = "/v1/agents/{name}", tag = "routing",
    params(("name" = String, Path, description = AGENT)),
    responses(
        (status = 200, description = "The agent: `name`, `attributes`, `activity`, `capacity`, `busy` (tasks per channel), `reservation` (the open offer or null), `tasks` (held or wrapping) and `missed_in_a_row`", body = Object),
        (status = 404, description = "No such agent (`unknown_agent`)", body = ErrorBody)))]
async fn show_agent(State(rt): Api, Path(name): Path<String>) -> Answer {
    ok(StatusCode::OK, rt.admin().agent(&name)?)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ActivityBody {
    /// `available` takes tasks; any other (`break`, `offline`, `unavailable`...) does not.
    activity: String,
}

/// Sets an agent's activity for them (`available` takes tasks; `break`, `offline`... do not).
#[utoipa::path(put, path = "/v1/agents/{name}/activity", tag = "routing",
    params(("name" = String, Path, description = AGENT)),
    request_body = ActivityBody,
    responses(
        (status = 200, description = "`{\"agent\", \"activity\"}`: the agent's activity now", body = Object),
        (status = 400, description = "Not a valid activity name (`invalid`), or a body that does not read (`invalid_json`)", body = ErrorBody),
        (status = 404, description = "No such agent (`unknown_agent`)", body = ErrorBody)))]
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
#[utoipa::path(get, path = "/v1/tasks", tag = "routing",
    responses((status = 200, description = "The open tasks, oldest first", body = Vec<Task>)))]
async fn list_tasks(State(rt): Api) -> Answer {
    ok(StatusCode::OK, rt.admin().open_tasks())
}

/// Creates a task in a queue (the workflow may place it elsewhere); offered if an agent is free.
#[utoipa::path(post, path = "/v1/tasks", tag = "routing",
    request_body = NewTask,
    responses(
        (status = 201, description = "The task, already offered when an agent was free", body = Task),
        (status = 400, description = "Attributes that are not a JSON object (`invalid`), or a body that does not read (`invalid_json`)", body = ErrorBody),
        (status = 404, description = "No such queue (`unknown_queue`)", body = ErrorBody)))]
async fn create_task(State(rt): Api, AppJson(new): AppJson<NewTask>) -> Answer {
    let task = routed(rt, move |rt| Ok(rt.admin().create_task(new)?)).await?;
    ok(StatusCode::CREATED, task)
}

/// One task: its queue, status, agent, attributes and times.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "routing",
    params(("id" = String, Path, description = TASK)),
    responses(
        (status = 200, description = "The task", body = Task),
        (status = 404, description = "No such task (`unknown_task`)", body = ErrorBody)))]
async fn show_task(State(rt): Api, Path(id): Path<String>) -> Answer {
    let task = blocking(move || Ok(rt.admin().task(&id)?)).await?;
    ok(StatusCode::OK, task)
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
struct ReasonBody {
    /// Why, kept with the task.
    reason: Option<String>,
}

/// Cancels an open task; its contact's flow hears `canceled`.
#[utoipa::path(post, path = "/v1/tasks/{id}/cancel", tag = "routing",
    params(("id" = String, Path, description = TASK)),
    request_body(content = Option<ReasonBody>, description = "Optional: why (by default, `canceled by` the caller)"),
    responses(
        (status = 200, description = "The task, canceled", body = Task),
        (status = 404, description = "No such task (`unknown_task`)", body = ErrorBody),
        (status = 409, description = "The task is already over, or in wrap-up (`conflict`)", body = ErrorBody)))]
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

#[derive(Deserialize, utoipa::ToSchema)]
struct MoveBody {
    /// The queue to move it to.
    queue: String,
    /// A new priority (higher first); the task's own by default.
    priority: Option<i32>,
}

/// Moves a waiting task to another queue (withdrawing an open offer of it), maybe reprioritized.
#[utoipa::path(post, path = "/v1/tasks/{id}/move", tag = "routing",
    params(("id" = String, Path, description = TASK)),
    request_body = MoveBody,
    responses(
        (status = 200, description = "The task, waiting in its new queue", body = Task),
        (status = 400, description = "A body that does not read (`invalid_json`)", body = ErrorBody),
        (status = 404, description = "No such task or queue (`unknown_task`, `unknown_queue`)", body = ErrorBody),
        (status = 409, description = "The task is with an agent or over: only waiting (or offered) tasks move (`conflict`)", body = ErrorBody)))]
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

/// The routing workflow: the filters that place new tasks in queues.
#[utoipa::path(get, path = "/v1/workflow", tag = "routing",
    responses((status = 200, description = "The workflow", body = crate::router::Workflow)))]
async fn show_workflow(State(rt): Api) -> Answer {
    ok(StatusCode::OK, rt.admin().workflow())
}

/// Replaces the routing workflow; a bad one changes nothing.
#[utoipa::path(put, path = "/v1/workflow", tag = "routing",
    request_body = crate::router::Workflow,
    responses(
        (status = 200, description = "The workflow now", body = crate::router::Workflow),
        (status = 400, description = "A bad expression, or a filter sending tasks to a queue that does not exist (`invalid`); or a body that does not read (`invalid_json`). Nothing changed", body = ErrorBody)))]
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

/// Every queue's live numbers and every agent, at once: what a dashboard shows.
#[utoipa::path(get, path = "/v1/stats", tag = "routing",
    responses((status = 200, description = "`queues`: every queue's live numbers (as `QueueStats`); `agents`: every agent (as GET /v1/agents)", body = Object)))]
async fn all_stats(State(rt): Api) -> Answer {
    ok(
        StatusCode::OK,
        json!({"queues": rt.admin().all_stats(), "agents": rt.admin().agents()}),
    )
}

/// A live stream of every queue's numbers and every agent, for dashboards (server-sent events).
///
/// Server-sent events for dashboards: at once and then every second, every queue's numbers
/// and every agent, as `event: stats`.
/// Each event's `data` is the JSON of GET /v1/stats (`{"queues": [...], "agents": [...]}`).
/// A node that drains ends the stream: reconnect (to another node).
#[utoipa::path(get, path = "/v1/stats/stream", tag = "routing",
    responses((status = 200, description = "A `text/event-stream` of `stats` events, one a second, each with the JSON of GET /v1/stats as its data", content_type = "text/event-stream", body = String)))]
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

/// The calling agent: their activity, capacity, open offer and tasks.
#[utoipa::path(get, path = "/agent/v1/me", tag = "desk", operation_id = "agent_me",
    responses((status = 200, description = "The agent: `name`, `attributes`, `activity`, `capacity`, `busy` (tasks per channel), `reservation` (the open offer or null), `tasks` (held or wrapping) and `missed_in_a_row`", body = Object)))]
async fn me(State(rt): Api, Extension(Agent(name)): Extension<Agent>) -> Answer {
    ok(StatusCode::OK, rt.desk().agent(&name)?)
}

/// Sets the agent's own activity (`available` takes tasks; `break`, `offline`... do not).
#[utoipa::path(put, path = "/agent/v1/activity", tag = "desk",
    request_body = ActivityBody,
    responses(
        (status = 200, description = "`{\"agent\", \"activity\"}`: the agent's activity now", body = Object),
        (status = 400, description = "Not a valid activity name (`invalid`), or a body that does not read (`invalid_json`)", body = ErrorBody)))]
async fn my_activity(
    State(rt): Api,
    Extension(Agent(name)): Extension<Agent>,
    AppJson(body): AppJson<ActivityBody>,
) -> Answer {
    set_activity(rt, name, body).await
}

/// Accepts a reservation offered to the agent: the task is theirs.
#[utoipa::path(post, path = "/agent/v1/reservations/{id}/accept", tag = "desk",
    params(("id" = String, Path, description = "The reservation's id (`rs_...`), as offered on the desk WebSocket or in GET /agent/v1/me")),
    responses(
        (status = 200, description = "The task, now assigned to the agent", body = Task),
        (status = 404, description = "No such open reservation: it may have timed out and moved on (`unknown_reservation`)", body = ErrorBody),
        (status = 409, description = "A callback this node cannot dial (`callback_cannot_dial`): the offer stays open", body = ErrorBody)))]
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

/// Turns down a reservation offered to the agent: the task is offered to someone else.
#[utoipa::path(post, path = "/agent/v1/reservations/{id}/reject", tag = "desk",
    params(("id" = String, Path, description = "The reservation's id (`rs_...`)")),
    responses(
        (status = 200, description = "The task, waiting again (not offered to this agent again)", body = Task),
        (status = 404, description = "No such open reservation (`unknown_reservation`)", body = ErrorBody)))]
async fn reject(
    State(rt): Api,
    Extension(Agent(name)): Extension<Agent>,
    Path(id): Path<String>,
) -> Answer {
    let task = routed(rt, move |rt| Ok(rt.desk().reject(&name, &id)?)).await?;
    ok(StatusCode::OK, task)
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
struct CompleteBody {
    /// Wrap-up notes.
    wrapup: Option<String>,
    /// A disposition code of the task's queue (`sale`, `refund`...).
    disposition: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    /// To this queue (blind).
    queue: Option<String>,
    /// To this agent, who must be available (blind).
    agent: Option<String>,
    /// A call only: to this number or SIP URI (`+1555...`, `sip:...`).
    number: Option<String>,
}

/// Transfers a conversation the agent holds to a queue, an agent or (a call) a number.
///
/// The agent hands the conversation to another queue or a named agent (any channel; blind),
/// or a call to a number or SIP URI.
#[utoipa::path(post, path = "/agent/v1/tasks/{id}/transfer", tag = "desk",
    params(("id" = String, Path, description = TASK)),
    request_body(content = TransferBody, description = "Exactly one of `queue`, `agent` or `number`"),
    responses(
        (status = 200, description = "The task: waiting in its queue (or for the named agent), or a call with its transfer to the number requested", body = Task),
        (status = 400, description = "Not exactly one target (`invalid_transfer`), a transfer to oneself (`invalid`), or a body that does not read (`invalid_json`)", body = ErrorBody),
        (status = 404, description = "No such task, queue or agent", body = ErrorBody),
        (status = 409, description = "The target agent is not available, the task is consulting, already being transferred or a callback, a number for a task that is not a call (`conflict`); or a call through Twilio (`not_transferable`)", body = ErrorBody)))]
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

#[derive(Deserialize, utoipa::ToSchema)]
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
#[utoipa::path(post, path = "/agent/v1/tasks/{id}/hold", tag = "desk", operation_id = "agent_hold",
    params(("id" = String, Path, description = TASK)),
    request_body(content = Option<HoldBody>, description = "Optional: `{\"on\": false}` takes the caller back; no body puts them on hold"),
    responses(
        (status = 200, description = "The task (`held_since_ms` set while on hold); asking for the state the call is in changes nothing", body = Task),
        (status = 404, description = "No such task (`unknown_task`)", body = ErrorBody),
        (status = 409, description = "Not a call, consulting, a callback (`conflict`), or a call through Twilio (`not_transferable`)", body = ErrorBody),
        (status = 422, description = "A body that is not `{\"on\": true|false}`", body = ErrorBody)))]
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ConsultBody {
    /// The agent to consult: they must be free to take a call.
    agent: String,
}

/// Starts a warm transfer of a call the agent holds to another agent.
///
/// Warm transfer of a call: the caller waits with music while the agent's phone is bridged to
/// the consulted agent's (rung at once).
#[utoipa::path(post, path = "/agent/v1/tasks/{id}/consult", tag = "desk",
    params(("id" = String, Path, description = TASK)),
    request_body = ConsultBody,
    responses(
        (status = 200, description = "The task with its `consult` (ringing)", body = Task),
        (status = 400, description = "Consulting oneself (`invalid`), or a body that does not read (`invalid_json`)", body = ErrorBody),
        (status = 404, description = "No such task or agent", body = ErrorBody),
        (status = 409, description = "Not a call, already consulting, a callback or being transferred, the agent not free (`conflict`); or a call through Twilio (`not_transferable`)", body = ErrorBody)))]
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
#[utoipa::path(post, path = "/agent/v1/tasks/{id}/consult/complete", tag = "desk",
    params(("id" = String, Path, description = TASK)),
    responses(
        (status = 200, description = "The task, its consult `completing` (the call's channel carries it out)", body = Task),
        (status = 404, description = "No such task (`unknown_task`)", body = ErrorBody),
        (status = 409, description = "No warm transfer under way, or it is already completing or canceling (`conflict`)", body = ErrorBody)))]
async fn consult_complete(
    State(rt): Api,
    Extension(agent): Extension<Agent>,
    Path(id): Path<String>,
) -> Answer {
    consult_to(rt, agent, id, crate::router::ConsultStage::Completing).await
}

/// Takes the call back: the consulted agent's leg is hung up, the caller talks to the agent.
#[utoipa::path(post, path = "/agent/v1/tasks/{id}/consult/cancel", tag = "desk",
    params(("id" = String, Path, description = TASK)),
    responses(
        (status = 200, description = "The task, its consult `canceling` (the call's channel carries it out)", body = Task),
        (status = 404, description = "No such task (`unknown_task`)", body = ErrorBody),
        (status = 409, description = "No warm transfer under way, or it is already completing or canceling (`conflict`)", body = ErrorBody)))]
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

/// Ends the conversation of a task the agent holds: wrap-up begins.
///
/// The agent ends the conversation: wrap-up begins (the task `wrapping`, the agent still
/// busy with it) or, in a queue without wrap-up, the task completes.
#[utoipa::path(post, path = "/agent/v1/tasks/{id}/wrap", tag = "desk",
    params(("id" = String, Path, description = TASK)),
    responses(
        (status = 200, description = "The task, `wrapping` or `completed`", body = Task),
        (status = 404, description = "No such task (`unknown_task`)", body = ErrorBody),
        (status = 409, description = "The task is not in a conversation (`conflict`)", body = ErrorBody)))]
async fn wrap(
    State(rt): Api,
    Extension(Agent(name)): Extension<Agent>,
    Path(id): Path<String>,
) -> Answer {
    let task = routed(rt, move |rt| Ok(rt.desk().wrap(&name, &id)?)).await?;
    ok(StatusCode::OK, task)
}

/// Completes a task the agent holds or wraps up, with wrap-up notes and a disposition.
///
/// From a conversation, the conversation ends too (its contact's flow hears `completed`).
#[utoipa::path(post, path = "/agent/v1/tasks/{id}/complete", tag = "desk",
    params(("id" = String, Path, description = TASK)),
    request_body(content = Option<CompleteBody>, description = "Optional: wrap-up notes and a disposition code"),
    responses(
        (status = 200, description = "The task, completed; the agent's capacity is free", body = Task),
        (status = 400, description = "A disposition the queue does not have, or one missing where the queue requires it (`invalid`)", body = ErrorBody),
        (status = 404, description = "No such task (`unknown_task`)", body = ErrorBody)))]
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

#[derive(Deserialize, utoipa::ToSchema)]
struct MessageBody {
    /// What to write to the customer.
    text: String,
}

/// Writes to the customer of a conversation the agent holds: on the chat widget, by SMS or by mail.
///
/// Kept in the contact's transcript.
#[utoipa::path(post, path = "/agent/v1/tasks/{id}/messages", tag = "desk",
    params(("id" = String, Path, description = TASK)),
    request_body = MessageBody,
    responses(
        (status = 200, description = "`{\"sent\": true}`", body = Object),
        (status = 400, description = "A body that does not read (`invalid_json`)", body = ErrorBody),
        (status = 404, description = "No such task (`unknown_task`), or its contact is gone (`unknown_contact`)", body = ErrorBody),
        (status = 409, description = "An SMS conversation on a node without the Twilio account (`sms_not_configured`)", body = ErrorBody),
        (status = 422, description = "Twilio refused the SMS (`sms_refused`)", body = ErrorBody),
        (status = 502, description = "Twilio could not be reached, or did not say whether it sent the SMS (`sms_unavailable`, `sms_in_doubt`)", body = ErrorBody),
        (status = 503, description = "The mail reply could not be queued (`mail_not_queued`): send it again", body = ErrorBody)))]
async fn say_to_customer(
    State(rt): Api,
    Extension(Agent(name)): Extension<Agent>,
    Path(id): Path<String>,
    AppJson(body): AppJson<MessageBody>,
) -> Answer {
    blocking(move || rt.agent_message(&name, &id, &body.text)).await?;
    ok(StatusCode::OK, json!({"sent": true}))
}

/// The tasks the agent handled lately, newest first (`?limit=`, 20 by default, 200 at most).
#[utoipa::path(get, path = "/agent/v1/history", tag = "desk",
    params(("limit" = Option<u32>, Query, description = "How many tasks: 20 by default, 1 to 200 (other values are clamped, and one that is not a number reads as 20)")),
    responses((status = 200, description = "The tasks, newest first", body = Vec<Task>)))]
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
#[utoipa::path(get, path = "/agent/v1/tasks/{id}/context", tag = "desk",
    params(("id" = String, Path, description = TASK)),
    responses(
        (status = 200, description = "The customer, their inputs in the flow, the contact's attributes and the queue's disposition codes", body = switchboard_core::handles::TaskContext),
        (status = 404, description = "No such task (`unknown_task`)", body = ErrorBody)))]
async fn task_context(
    State(rt): Api,
    Extension(Agent(name)): Extension<Agent>,
    Path(id): Path<String>,
) -> Answer {
    let context = blocking(move || Ok(rt.desk().context(&name, &id)?)).await?;
    ok(StatusCode::OK, context)
}

/// The conversation of a task offered to or held by the agent (chat, SMS), in order: what
/// the customer and earlier agents said, for an agent who takes it over.
#[utoipa::path(get, path = "/agent/v1/tasks/{id}/messages", tag = "desk",
    params(("id" = String, Path, description = TASK)),
    responses(
        (status = 200, description = "What was said, in order", body = Vec<crate::sessions::Said>),
        (status = 404, description = "No such task (`unknown_task`), or its contact is gone (`unknown_contact`)", body = ErrorBody)))]
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
#[utoipa::path(get, path = "/agent/v1/tasks/{id}", tag = "desk",
    params(("id" = String, Path, description = TASK)),
    responses(
        (status = 200, description = "The task", body = Task),
        (status = 404, description = "No such task (`unknown_task`)", body = ErrorBody)))]
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

/// The agent desk's WebSocket: offers and task changes pushed, answers sent back.
///
/// A live connection for an agent's desktop: first a snapshot of the agent, then every change
/// of the agent's world as it happens: `{"type": "reservation", "reservation": ..., "task":
/// ...}` for a new offer, and `rescinded`, `timed-out`, `canceled`, `wrapping`, `completed`
/// (with the task and the reason) and `activity` (with the new activity).
/// The desktop answers with `{"type": "accept"|"reject", "reservation": "rs_..."}` or
/// `{"type": "complete", "task": "tk_...", "wrapup": "..."}`; each answer is acknowledged with
/// `{"type": "ok", ...}` or `{"type": "error", "code": ..., "message": ...}`.
/// `{"type": "wrap", "task": ...}` ends a conversation, `{"type": "message", "task": ...,
/// "text": ...}` writes to the customer (answered `{"type": "ok", "sent": true}`) and
/// `{"type": "typing", "task": ...}` shows the agent typing on the chat widget (answered
/// only when refused); messages the customer writes arrive as `{"type": "message", ...}`.
/// A node that drains closes the socket with 1001 (going away): reconnect.
///
/// Browsers cannot set headers on a WebSocket: the agent's token may come as `?token=`
/// (or the browser session's cookie is used).
#[utoipa::path(get, path = "/agent/v1/ws", tag = "desk", operation_id = "agent_socket",
    params(("token" = Option<String>, Query, description = "The agent's token (`sbw_...`), for clients that cannot send `Authorization: Bearer`")),
    responses(
        (status = 101, description = "Switched to the WebSocket: the agent's snapshot, then their notices"),
        (status = 400, description = "Not a WebSocket request", body = ErrorBody),
        (status = 426, description = "Not a WebSocket request", body = ErrorBody)))]
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

/// The operations of this module (see `openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list_queues,
    define_queue,
    queue_stats,
    list_agents,
    upsert_agent,
    show_agent,
    supervisor_activity,
    create_task,
    list_tasks,
    show_task,
    cancel_task,
    move_task,
    show_workflow,
    set_workflow,
    all_stats,
    stats_stream,
    me,
    my_activity,
    accept,
    reject,
    my_task,
    task_context,
    history,
    wrap,
    transfer,
    hold,
    consult,
    consult_complete,
    consult_cancel,
    complete,
    say_to_customer,
    conversation,
    socket
))]
pub(super) struct Doc;
