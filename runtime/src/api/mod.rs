//! The HTTP API. Handlers are thin: parse, call the domain (on a blocking thread: steps and
//! store flushes block), map the result to a status and JSON. Domain code never sees axum.

mod chat;
mod email;
mod error;
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

use crate::contract::Event;
use crate::flows::{Canary, DeployOptions, EntryPoint, Match, VersionStatus};
use crate::runtime::Runtime;
use crate::sessions::NewContact;

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
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
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
                "no such endpoint; see README, section HTTP API",
            )
        })
        .with_state(runtime)
}

/// The nodes sharing this node's store and which of them leads (runs the router's clock);
/// `single` for a node on its own embedded store.
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

async fn list_flows(State(rt): Api) -> Answer {
    let flows = blocking(move || rt.admin().flows().list().map_err(ApiError::from)).await?;
    ok(StatusCode::OK, flows)
}

#[derive(Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionList {
    /// The version new contacts get.
    pub live: u64,
    /// The candidate taking part of the new contacts, or null.
    pub canary: Option<Canary>,
    /// Every version, oldest first, with its role and health.
    pub versions: Vec<VersionStatus>,
}

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

#[derive(Deserialize, Default)]
struct AbortBody {
    reason: Option<String>,
}

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

#[derive(Deserialize)]
struct RollbackBody {
    version: u64,
}

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

async fn list_entry_points(State(rt): Api) -> Answer {
    let entries =
        blocking(move || rt.admin().flows().entry_points().map_err(ApiError::from)).await?;
    ok(StatusCode::OK, entries)
}

#[derive(Deserialize)]
struct BindBody {
    flow: String,
    #[serde(default)]
    attributes: Vec<(String, String)>,
}

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

async fn start_contact(State(rt): Api, AppJson(new): AppJson<NewContact>) -> Answer {
    let report = blocking(move || rt.contacts().start(new).map_err(ApiError::from)).await?;
    ok(StatusCode::CREATED, report)
}

#[derive(Deserialize)]
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

async fn show_contact(State(rt): Api, Path(id): Path<String>) -> Answer {
    let session = blocking(move || rt.contacts().get(&id).map_err(ApiError::from)).await?;
    ok(StatusCode::OK, session)
}

async fn send_event(
    State(rt): Api,
    Path(id): Path<String>,
    AppJson(event): AppJson<Event>,
) -> Answer {
    let report = blocking(move || rt.contacts().send(&id, event).map_err(ApiError::from)).await?;
    ok(StatusCode::OK, report)
}

async fn show_trace(State(rt): Api, Path(id): Path<String>) -> Answer {
    let trace = blocking(move || rt.contacts().trace(&id).map_err(ApiError::from)).await?;
    ok(StatusCode::OK, trace)
}

/// The contact's conversation with agents (chat), in order.
async fn show_transcript(State(rt): Api, Path(id): Path<String>) -> Answer {
    let said = blocking(move || rt.contacts().transcript(&id).map_err(ApiError::from)).await?;
    ok(StatusCode::OK, said)
}

async fn show_golden(State(rt): Api, Path(id): Path<String>) -> Answer {
    let golden = blocking(move || rt.admin().golden(&id).map_err(ApiError::from)).await?;
    ok(StatusCode::OK, golden)
}

#[derive(Deserialize)]
struct ReplayBody {
    version: u64,
}

async fn replay_contact(
    State(rt): Api,
    Path(id): Path<String>,
    AppJson(body): AppJson<ReplayBody>,
) -> Answer {
    let report =
        blocking(move || rt.admin().replay(&id, body.version).map_err(ApiError::from)).await?;
    ok(StatusCode::OK, report)
}

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
    axum::serve(listener, router(runtime))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
