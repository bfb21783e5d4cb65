//! The HTTP API. Handlers are thin: parse, call the domain (on a blocking thread: steps and
//! store flushes block), map the result to a status and JSON. Domain code never sees axum.

mod chat;
mod email;
mod error;
mod openapi;
mod pages;
mod people;
mod reports;
mod routing;
mod twilio;
mod voice;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use error::{ApiError, AppJson};

use crate::audit::AuditEntry;
use crate::contract::Event;
use crate::flows::{
    Canary, DeployOptions, Deployed, EntryPoint, FlowRecord, FlowVersion, Match, VersionStatus,
};
use crate::replay::{Golden, ReplayReport};
use crate::runtime::Runtime;
use crate::sessions::{NewContact, Said, Session, StepReport, TraceEntry};
use openapi::{Bytes as Body, ErrorBody};

/// Largest component a deploy accepts.
const MAX_COMPONENT: usize = 64 << 20;

/// The person who made a request, for the audit trail.
#[derive(Clone)]
struct Caller(String);

type Api = State<Arc<Runtime>>;
type Answer = Result<Response, ApiError>;

/// The API's routes over `runtime`.
pub fn router(runtime: Arc<Runtime>) -> Router {
    let v1 = Router::new()
        .route("/flows", get(list_flows))
        .route(
            "/flows/{flow}/versions",
            get(list_versions)
                .post(deploy)
                .layer(DefaultBodyLimit::max(MAX_COMPONENT)),
        )
        .route("/flows/{flow}/versions/{version}", get(show_version))
        .route("/flows/{flow}/rollback", post(rollback))
        .route("/flows/{flow}/canary/promote", post(promote))
        .route("/flows/{flow}/canary/abort", post(abort))
        .route("/flows/{flow}/settings", get(show_settings).put(configure))
        .route("/entry-points", get(list_entry_points))
        .route("/entry-points/{address}", put(bind))
        .route(
            "/customers",
            post(load_customers).layer(DefaultBodyLimit::max(MAX_COMPONENT)),
        )
        .route("/contacts", post(start_contact).get(list_contacts))
        .route("/contacts/{id}", get(show_contact))
        .route("/contacts/{id}/events", post(send_event))
        .route("/contacts/{id}/trace", get(show_trace))
        .route("/contacts/{id}/transcript", get(show_transcript))
        .route("/contacts/{id}/golden", get(show_golden))
        .route("/contacts/{id}/replay", post(replay_contact))
        .route("/audit", get(show_audit))
        .route("/cluster", get(show_cluster))
        .merge(routing::supervisor())
        .merge(reports::routes())
        .merge(voice::admin())
        .merge(email::admin())
        .merge(people::routes())
        .route_layer(middleware::from_fn_with_state(
            runtime.clone(),
            people::authenticate,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/reference", get(openapi::reference))
        .nest("/v1", v1)
        .nest("/agent/v1", routing::agent(runtime.clone()))
        .nest("/twilio", twilio::routes())
        .merge(chat::routes())
        .merge(voice::public())
        .merge(email::public(&runtime))
        .merge(people::auth_routes())
        .merge(pages::routes())
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; see /reference (or /openapi.json) for the API",
            )
        })
        .layer(middleware::map_response(json_errors))
        .with_state(runtime)
}

/// Errors axum answers in plain text (a path segment that does not parse, a body that is not
/// the JSON asked for, a WebSocket request without its upgrade, a body over its limit, a
/// method the route does not have) answered in the API's JSON error shape, so every error
/// reads the same and matches the contract. HTML pages and JSON answers pass untouched.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|t| t.starts_with("text/plain"));
    if !plain {
        return response;
    }
    let (parts, body) = response.into_parts();
    let said = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let (code, next) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "the Allow header lists the methods this path takes",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", "send a smaller body"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "send the Content-Type /openapi.json gives for this operation",
        ),
        StatusCode::UNPROCESSABLE_ENTITY => (
            "invalid_body",
            "the body's fields and types are in /openapi.json",
        ),
        StatusCode::UPGRADE_REQUIRED => ("upgrade_required", "open this path as a WebSocket"),
        s if s.is_server_error() => ("internal", "try again; the node's log says more"),
        _ => (
            "bad_request",
            "check the path, query and headers against /openapi.json",
        ),
    };
    let message = if said.is_empty() {
        next.to_string()
    } else {
        format!("{said}: {next}")
    };
    let mut answer = ApiError::new(status, code, message).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(value) = parts.headers.get(&name) {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

/// The operations of this module (see [`openapi`]).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    healthz,
    ready,
    metrics,
    show_cluster,
    list_flows,
    deploy,
    list_versions,
    show_version,
    rollback,
    promote,
    abort,
    show_settings,
    configure,
    list_entry_points,
    bind,
    load_customers,
    start_contact,
    list_contacts,
    show_contact,
    send_event,
    show_trace,
    show_transcript,
    show_golden,
    replay_contact,
    show_audit,
))]
struct Doc;

/// A flow's name, as in its path.
const FLOW: &str = "The flow's name";

/// Whether the process answers.
#[utoipa::path(get, path = "/healthz", tag = "node",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object)))]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The nodes sharing this node's store and which of them leads (runs the router's clock);
/// `single` for a node on its own embedded store.
#[utoipa::path(get, path = "/v1/cluster", tag = "node",
    responses((status = 200, description = "`mode` (`single` or `cluster`), and in a cluster `node`, `leader`, `nodes` and `lost`", body = Object)))]
async fn show_cluster(State(rt): Api) -> Answer {
    let body = match rt.membership() {
        Some(m) => json!({
            "mode": "cluster",
            "node": m.node(),
            "leader": m.leader(),
            "nodes": m.live(),
            // Silent past their heartbeat, their calls not yet ended by the leader.
            "lost": m.lost(),
        }),
        None => json!({"mode": "single"}),
    };
    ok(StatusCode::OK, body)
}

/// Whether a load balancer should send this node work: 503 once it drains.
#[utoipa::path(get, path = "/readyz", tag = "node", responses(
    (status = 200, description = "`{\"status\": \"ready\"}`", body = Object),
    (status = 503, description = "`{\"status\": \"draining\"}`: the node is stopping", body = Object)))]
async fn ready(State(rt): Api) -> Response {
    if *rt.draining.borrow() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining"})),
        )
            .into_response()
    } else {
        Json(json!({"status": "ready"})).into_response()
    }
}

/// The close frame a socket gets when its node drains: 1001, going away; reconnect.
pub(crate) fn going_away() -> axum::extract::ws::Message {
    axum::extract::ws::Message::Close(Some(axum::extract::ws::CloseFrame {
        code: 1001,
        reason: "this node is shutting down; reconnect".into(),
    }))
}

/// Runs blocking domain work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the request's worker failed: {e}"),
        )
    })?
}

fn ok<T: serde::Serialize>(status: StatusCode, value: T) -> Answer {
    Ok((status, Json(value)).into_response())
}

/// Prometheus metrics of this node (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "node", responses(
    (status = 200, description = "Metrics in the Prometheus text format", content_type = "text/plain", body = String),
    (status = 401, description = "api.metrics_token is set and was not sent", body = ErrorBody)))]
async fn metrics(State(rt): Api, headers: axum::http::HeaderMap) -> Response {
    if let Some(wanted) = &rt.config().api.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !crate::tokens::same_secret(given.as_bytes(), wanted.as_bytes()) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "/metrics needs the metrics token (api.metrics_token): send Authorization: Bearer <token>",
            )
            .into_response();
        }
    }
    let text = rt.metrics().render();
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}

/// Every flow with its live version and since when.
#[utoipa::path(get, path = "/v1/flows", tag = "flows",
    responses((status = 200, description = "The flows", body = Vec<FlowRecord>)))]
async fn list_flows(State(rt): Api) -> Answer {
    let flows = blocking(move || rt.admin().flows().list().map_err(ApiError::from)).await?;
    ok(StatusCode::OK, flows)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeployQuery {
    /// Deploy as a canary taking this share of new contacts.
    canary: Option<u32>,
    /// Canary rules, comma-separated `field=value`.
    canary_match: Option<String>,
    /// Replay this many recent contacts of the live version against the candidate first.
    #[serde(default)]
    check_recent: usize,
    /// Deploy even when the replays differ.
    #[serde(default)]
    force: bool,
    /// CRM connectors: the hosts it may reach, comma-separated.
    allow: Option<String>,
    /// CRM connectors: the lookup timeout in milliseconds.
    timeout_ms: Option<u64>,
    /// CRM connectors: the response body cap in KiB.
    max_response_kib: Option<u64>,
}

/// Deploys a component (the body) as the flow's next version: live at once, or a canary.
///
/// The component is checked (it must be a component of a contract version the host serves,
/// within the sandbox's limits) before it is stored; a refused one changes nothing. With
/// `check_recent`, the most recent contacts of the live version are replayed against it first
/// and a change in behaviour refuses the deploy unless `force`.
#[utoipa::path(post, path = "/v1/flows/{flow}/versions", tag = "flows",
    params(("flow" = String, Path, description = FLOW), DeployQuery),
    request_body(content((Body = "application/wasm"), (Body = "application/octet-stream")), description = "The component's bytes"),
    responses(
        (status = 201, description = "Deployed; with `checked_contacts` and `changed_contacts` when checked", body = Deployed),
        (status = 400, description = "An empty body or a bad query", body = ErrorBody),
        (status = 409, description = "Replays differ (`replay_changed`, details list them): deploy with force to go on", body = ErrorBody),
        (status = 413, description = "Larger than 64 MiB", body = ErrorBody),
        (status = 422, description = "Not a component the host can run (`deploy_rejected`)", body = ErrorBody)))]
async fn deploy(
    State(rt): Api,
    Extension(Caller(who)): Extension<Caller>,
    Path(flow): Path<String>,
    query: Result<Query<DeployQuery>, QueryRejection>,
    body: Bytes,
) -> Answer {
    let Query(query) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!(
                "{} (canary takes a whole percentage, 0-100; timeout_ms and max_response_kib whole numbers; allow a comma-separated list of hosts)",
                e.body_text()
            ),
        )
    })?;
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "send the component's bytes as the request body (Content-Type: application/wasm)",
        ));
    }
    let matches = query
        .canary_match
        .iter()
        .flat_map(|m| m.split(','))
        .filter(|m| !m.trim().is_empty())
        .map(Match::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, "invalid_canary", why))?;
    let options = DeployOptions {
        canary_percent: query.canary,
        canary_matches: matches,
        allow: query.allow.into_iter().collect(),
        timeout_ms: query.timeout_ms,
        max_response_bytes: query.max_response_kib.map(|k| k.saturating_mul(1024)),
    };
    let (check, force) = (query.check_recent, query.force);
    let (deployed, checked, changed) = blocking(move || {
        rt.admin()
            .deploy_checked(&flow, &body, &who, &options, check, force)
            .map_err(ApiError::from)
    })
    .await?;
    let mut answer = serde_json::to_value(deployed).unwrap_or_default();
    if check > 0 {
        answer["checked_contacts"] = json!(checked);
        answer["changed_contacts"] = serde_json::to_value(changed).unwrap_or_default();
    }
    ok(StatusCode::CREATED, answer)
}

/// The answer to `GET /v1/flows/{flow}/versions`; `switchboard versions` reads it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionList {
    /// The version new contacts get.
    pub live: u64,
    /// The candidate taking part of the new contacts, or null.
    pub canary: Option<Canary>,
    /// Every version, oldest first, with its role and health.
    pub versions: Vec<VersionStatus>,
}

/// The flow's versions with their roles (live, canary) and health.
#[utoipa::path(get, path = "/v1/flows/{flow}/versions", tag = "flows",
    params(("flow" = String, Path, description = FLOW)),
    responses(
        (status = 200, description = "The versions", body = VersionList),
        (status = 404, description = "No such flow", body = ErrorBody)))]
async fn list_versions(State(rt): Api, Path(flow): Path<String>) -> Answer {
    let (record, versions) =
        blocking(move || rt.admin().flows().statuses(&flow).map_err(ApiError::from)).await?;
    let list = VersionList {
        live: record.live,
        canary: record.canary,
        versions,
    };
    ok(StatusCode::OK, list)
}

/// Makes the canary the live version.
#[utoipa::path(post, path = "/v1/flows/{flow}/canary/promote", tag = "flows",
    params(("flow" = String, Path, description = FLOW)),
    responses(
        (status = 200, description = "The flow, its canary now live", body = FlowRecord),
        (status = 404, description = "No such flow", body = ErrorBody),
        (status = 409, description = "The flow has no canary (`no_canary`)", body = ErrorBody)))]
async fn promote(
    State(rt): Api,
    Extension(Caller(who)): Extension<Caller>,
    Path(flow): Path<String>,
) -> Answer {
    let record = blocking(move || {
        rt.admin()
            .flows()
            .promote(&flow, &who)
            .map_err(ApiError::from)
    })
    .await?;
    ok(StatusCode::OK, record)
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
struct AbortBody {
    /// Why, for the audit trail.
    reason: Option<String>,
}

/// Ends the canary: new contacts all get the live version again.
#[utoipa::path(post, path = "/v1/flows/{flow}/canary/abort", tag = "flows",
    params(("flow" = String, Path, description = FLOW)),
    request_body(content = Option<AbortBody>, description = "Optional: why"),
    responses(
        (status = 200, description = "The flow without its canary", body = FlowRecord),
        (status = 404, description = "No such flow", body = ErrorBody),
        (status = 409, description = "The flow has no canary (`no_canary`)", body = ErrorBody)))]
async fn abort(
    State(rt): Api,
    Extension(Caller(who)): Extension<Caller>,
    Path(flow): Path<String>,
    body: Option<Json<AbortBody>>,
) -> Answer {
    let reason = body
        .and_then(|Json(b)| b.reason)
        .unwrap_or_else(|| format!("aborted by {who}"));
    let record = blocking(move || {
        rt.admin()
            .flows()
            .abort(&flow, &who, &reason)
            .map_err(ApiError::from)
    })
    .await?;
    ok(StatusCode::OK, record)
}

/// One version of a flow: its hash, contract, size, who deployed it and when.
#[utoipa::path(get, path = "/v1/flows/{flow}/versions/{version}", tag = "flows",
    params(("flow" = String, Path, description = FLOW), ("version" = u64, Path, description = "The version number")),
    responses(
        (status = 200, description = "The version", body = FlowVersion),
        (status = 404, description = "No such flow or version", body = ErrorBody)))]
async fn show_version(State(rt): Api, Path((flow, version)): Path<(String, u64)>) -> Answer {
    let version = blocking(move || {
        rt.admin()
            .flows()
            .version(&flow, version)
            .map_err(ApiError::from)
    })
    .await?;
    ok(StatusCode::OK, version)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct RollbackBody {
    /// The version to make live again.
    version: u64,
}

/// Makes an earlier version live again for new contacts (contacts under way stay on theirs).
#[utoipa::path(post, path = "/v1/flows/{flow}/rollback", tag = "flows",
    params(("flow" = String, Path, description = FLOW)),
    request_body = RollbackBody,
    responses(
        (status = 200, description = "The flow with its new live version", body = FlowRecord),
        (status = 404, description = "No such flow or version", body = ErrorBody)))]
async fn rollback(
    State(rt): Api,
    Extension(Caller(who)): Extension<Caller>,
    Path(flow): Path<String>,
    AppJson(body): AppJson<RollbackBody>,
) -> Answer {
    let record = blocking(move || {
        rt.admin()
            .flows()
            .rollback(&flow, body.version, &who)
            .map_err(ApiError::from)
    })
    .await?;
    ok(StatusCode::OK, record)
}

/// The flow's settings (what its component reads with `setting`).
#[utoipa::path(get, path = "/v1/flows/{flow}/settings", tag = "flows",
    params(("flow" = String, Path, description = FLOW)),
    responses(
        (status = 200, description = "Name to value", body = std::collections::BTreeMap<String, String>),
        (status = 404, description = "No such flow", body = ErrorBody)))]
async fn show_settings(State(rt): Api, Path(flow): Path<String>) -> Answer {
    let settings =
        blocking(move || rt.admin().flows().settings(&flow).map_err(ApiError::from)).await?;
    ok(
        StatusCode::OK,
        settings
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    )
}

/// Sets some of the flow's settings; the others stay.
#[utoipa::path(put, path = "/v1/flows/{flow}/settings", tag = "flows",
    params(("flow" = String, Path, description = FLOW)),
    request_body(content = std::collections::BTreeMap<String, String>, description = "Name to value"),
    responses(
        (status = 200, description = "All the flow's settings now", body = std::collections::BTreeMap<String, String>),
        (status = 404, description = "No such flow", body = ErrorBody)))]
async fn configure(
    State(rt): Api,
    Extension(Caller(who)): Extension<Caller>,
    Path(flow): Path<String>,
    AppJson(settings): AppJson<std::collections::BTreeMap<String, String>>,
) -> Answer {
    let settings: Vec<(String, String)> = settings.into_iter().collect();
    let result = blocking(move || {
        rt.admin().flows().configure(&flow, &settings, &who)?;
        Ok(rt.admin().flows().settings(&flow)?)
    })
    .await?;
    ok(
        StatusCode::OK,
        result
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    )
}

/// The addresses (numbers, chat and mail addresses) bound to flows.
#[utoipa::path(get, path = "/v1/entry-points", tag = "flows",
    responses((status = 200, description = "The entry points", body = Vec<EntryPoint>)))]
async fn list_entry_points(State(rt): Api) -> Answer {
    let entries =
        blocking(move || rt.admin().flows().entry_points().map_err(ApiError::from)).await?;
    ok(StatusCode::OK, entries)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct BindBody {
    /// The flow that answers the address.
    flow: String,
    /// Attributes every contact on the address gets.
    #[serde(default)]
    /// `[key, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    attributes: Vec<(String, String)>,
}

/// Binds an address (a number, a chat or mail address) to a flow.
#[utoipa::path(put, path = "/v1/entry-points/{address}", tag = "flows",
    params(("address" = String, Path, description = "The address: +15550100, support@acme.test...")),
    request_body = BindBody,
    responses(
        (status = 200, description = "The entry point", body = EntryPoint),
        (status = 400, description = "Not an address (`invalid_entry_point`)", body = ErrorBody),
        (status = 404, description = "No such flow", body = ErrorBody)))]
async fn bind(
    State(rt): Api,
    Extension(Caller(who)): Extension<Caller>,
    Path(address): Path<String>,
    AppJson(body): AppJson<BindBody>,
) -> Answer {
    let entry = EntryPoint {
        address,
        flow: body.flow,
        attributes: body.attributes,
    };
    let saved = entry.clone();
    blocking(move || rt.admin().flows().bind(entry, &who).map_err(ApiError::from)).await?;
    ok(StatusCode::OK, saved)
}

/// Loads customer records (CSV: phone, name, tier...), looked up by flows through `customer`.
#[utoipa::path(post, path = "/v1/customers", tag = "contacts",
    request_body(content((Body = "text/csv"), (Body = "application/octet-stream")), description = "The customer file"),
    responses(
        (status = 200, description = "`{\"loaded\": N}`", body = Object),
        (status = 400, description = "Not UTF-8, or a line that does not read (`invalid_customers`)", body = ErrorBody)))]
async fn load_customers(
    State(rt): Api,
    Extension(Caller(who)): Extension<Caller>,
    body: Bytes,
) -> Answer {
    let text = String::from_utf8(body.to_vec()).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_customers",
            "the customer file is not UTF-8 text",
        )
    })?;
    let loaded = blocking(move || {
        let customers = crate::customers::parse(&text)?;
        Ok(rt.admin().load_customers(&customers, &who)?)
    })
    .await?;
    ok(StatusCode::OK, json!({"loaded": loaded}))
}

/// Starts a contact on the flow its address is bound to (or `flow`) and runs its first step.
#[utoipa::path(post, path = "/v1/contacts", tag = "contacts",
    request_body = NewContact,
    responses(
        (status = 201, description = "The contact and what its first step did", body = StepReport),
        (status = 404, description = "No flow answers the address (`no_flow`)", body = ErrorBody)))]
async fn start_contact(State(rt): Api, AppJson(new): AppJson<NewContact>) -> Answer {
    let report = blocking(move || rt.contacts().start(new).map_err(ApiError::from)).await?;
    ok(StatusCode::CREATED, report)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ContactsQuery {
    /// Most contacts to return (newest first).
    #[serde(default = "default_contacts_limit")]
    limit: usize,
    /// Only contacts with this attribute, `KEY=VALUE`.
    attribute: Option<String>,
}

fn default_contacts_limit() -> usize {
    50
}

/// The most recent contacts, newest first.
#[utoipa::path(get, path = "/v1/contacts", tag = "contacts",
    params(ContactsQuery),
    responses(
        (status = 200, description = "The contacts", body = Vec<Session>),
        (status = 400, description = "A bad query (`invalid_query`)", body = ErrorBody)))]
async fn list_contacts(
    State(rt): Api,
    query: Result<Query<ContactsQuery>, QueryRejection>,
) -> Answer {
    let Query(query) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!(
                "{} (limit is a number; attribute is KEY=VALUE)",
                e.body_text()
            ),
        )
    })?;
    let filter = match &query.attribute {
        Some(a) => Some(
            a.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_query",
                        "attribute is KEY=VALUE, such as sip_call_id=abc",
                    )
                })?,
        ),
        None => None,
    };
    let sessions = blocking(move || {
        rt.contacts()
            .recent(query.limit, |s| {
                filter.as_ref().is_none_or(|(k, v)| {
                    s.attributes
                        .iter()
                        .any(|(key, value)| key == k && value == v)
                })
            })
            .map_err(ApiError::from)
    })
    .await?;
    ok(StatusCode::OK, sessions)
}

/// One contact: its flow version, status, attributes and where it waits.
#[utoipa::path(get, path = "/v1/contacts/{id}", tag = "contacts",
    params(("id" = String, Path, description = "The contact's id")),
    responses(
        (status = 200, description = "The contact", body = Session),
        (status = 404, description = "No such contact", body = ErrorBody)))]
async fn show_contact(State(rt): Api, Path(id): Path<String>) -> Answer {
    let session = blocking(move || rt.contacts().get(&id).map_err(ApiError::from)).await?;
    ok(StatusCode::OK, session)
}

/// Sends an event (input, a message, a hang-up...) to a contact and runs its step.
#[utoipa::path(post, path = "/v1/contacts/{id}/events", tag = "contacts",
    params(("id" = String, Path, description = "The contact's id")),
    request_body = Event,
    responses(
        (status = 200, description = "What the step did", body = StepReport),
        (status = 404, description = "No such contact", body = ErrorBody),
        (status = 409, description = "The contact has ended, or changed at the same time", body = ErrorBody)))]
async fn send_event(
    State(rt): Api,
    Path(id): Path<String>,
    AppJson(event): AppJson<Event>,
) -> Answer {
    let report = blocking(move || rt.contacts().send(&id, event).map_err(ApiError::from)).await?;
    ok(StatusCode::OK, report)
}

/// Every step of a contact: the event, what the flow did, its calls and time.
#[utoipa::path(get, path = "/v1/contacts/{id}/trace", tag = "contacts",
    params(("id" = String, Path, description = "The contact's id")),
    responses(
        (status = 200, description = "The steps, in order", body = Vec<TraceEntry>),
        (status = 404, description = "No such contact", body = ErrorBody)))]
async fn show_trace(State(rt): Api, Path(id): Path<String>) -> Answer {
    let trace = blocking(move || rt.contacts().trace(&id).map_err(ApiError::from)).await?;
    ok(StatusCode::OK, trace)
}

/// The contact's conversation with agents (chat), in order.
#[utoipa::path(get, path = "/v1/contacts/{id}/transcript", tag = "contacts",
    params(("id" = String, Path, description = "The contact's id")),
    responses(
        (status = 200, description = "What was said, in order", body = Vec<Said>),
        (status = 404, description = "No such contact", body = ErrorBody)))]
async fn show_transcript(State(rt): Api, Path(id): Path<String>) -> Answer {
    let said = blocking(move || rt.contacts().transcript(&id).map_err(ApiError::from)).await?;
    ok(StatusCode::OK, said)
}

/// The contact as a golden record: its events and the actions its version answered, to replay.
#[utoipa::path(get, path = "/v1/contacts/{id}/golden", tag = "contacts",
    params(("id" = String, Path, description = "The contact's id")),
    responses(
        (status = 200, description = "The golden record", body = Golden),
        (status = 404, description = "No such contact", body = ErrorBody)))]
async fn show_golden(State(rt): Api, Path(id): Path<String>) -> Answer {
    let golden = blocking(move || rt.admin().golden(&id).map_err(ApiError::from)).await?;
    ok(StatusCode::OK, golden)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ReplayBody {
    /// The version to replay the contact's events against.
    version: u64,
}

/// Replays a contact's events against another version and says where it behaves differently.
#[utoipa::path(post, path = "/v1/contacts/{id}/replay", tag = "contacts",
    params(("id" = String, Path, description = "The contact's id")),
    request_body = ReplayBody,
    responses(
        (status = 200, description = "Step by step: same or what changed", body = ReplayReport),
        (status = 404, description = "No such contact or version", body = ErrorBody)))]
async fn replay_contact(
    State(rt): Api,
    Path(id): Path<String>,
    AppJson(body): AppJson<ReplayBody>,
) -> Answer {
    let report =
        blocking(move || rt.admin().replay(&id, body.version).map_err(ApiError::from)).await?;
    ok(StatusCode::OK, report)
}

/// Who changed what and when: deploys, rollbacks, canaries, settings, bindings, people.
#[utoipa::path(get, path = "/v1/audit", tag = "flows",
    responses((status = 200, description = "The audit trail, oldest first", body = Vec<AuditEntry>)))]
async fn show_audit(State(rt): Api) -> Answer {
    let entries = blocking(move || rt.admin().audit().map_err(ApiError::from)).await?;
    ok(StatusCode::OK, entries)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    runtime: Arc<Runtime>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // As a made service, each connection gets a handle on the one router. Served as a
    // `Router` itself, axum rebuilds the whole router (every route's service, allocated anew)
    // for each connection and drops it at the end: with clients that open a connection per
    // request (webhooks, scripts) that was a third of the HTTP work (perf, three nodes).
    axum::serve(listener, router(runtime).into_make_service())
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
