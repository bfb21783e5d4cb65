//! Historical reports for supervisors: `GET /v1/reports/queues` and `/v1/reports/agents`,
//! as JSON or, with `format=csv`, as a CSV download (the console's export).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{Api, ApiError, blocking};
use crate::router::reports::{self, Interval, ReportQuery};
use crate::runtime::Runtime;

/// The report routes, mounted under `/v1`.
pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/reports/queues", get(queues))
        .route("/reports/agents", get(agents))
}

/// A report's query string.
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Params {
    /// Start: `2026-06-01`, `2026-06-01T08:00` (in `tz`) or RFC 3339; today's midnight when
    /// absent.
    from: Option<String>,
    /// End (exclusive), as `from`; now when absent.
    to: Option<String>,
    /// `15m`, `1h` (default) or `1d`.
    interval: Option<String>,
    /// IANA time zone the intervals start in (UTC when absent).
    tz: Option<String>,
    /// Overrides each queue's short-abandon threshold.
    short_abandon_secs: Option<u64>,
    /// One queue (queue report).
    queue: Option<String>,
    /// One agent (agent report).
    agent: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// The query, checked.
fn query(params: &Params, only: Option<String>) -> Result<ReportQuery, ApiError> {
    let bad = |e: crate::router::RouterError| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.to_string())
    };
    let zone = reports::parse_zone(params.tz.as_deref().unwrap_or("")).map_err(bad)?;
    let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let from_ms = match &params.from {
        Some(t) => reports::parse_time(t, zone).map_err(bad)?,
        None => reports::start_of_day(now, zone),
    };
    let to_ms = match &params.to {
        Some(t) => reports::parse_time(t, zone).map_err(bad)?,
        None => now,
    };
    let interval = Interval::parse(params.interval.as_deref().unwrap_or("1h")).map_err(bad)?;
    if params
        .format
        .as_deref()
        .is_some_and(|f| f != "json" && f != "csv")
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "format is json or csv",
        ));
    }
    Ok(ReportQuery {
        from_ms,
        to_ms,
        interval,
        zone,
        short_abandon_secs: params.short_abandon_secs,
        only,
    })
}

/// The report as JSON, or as a CSV attachment named after its kind and period.
fn answer<T: serde::Serialize>(
    kind: &str,
    params: &Params,
    query: &ReportQuery,
    rows: Vec<T>,
    csv: impl FnOnce(&[T]) -> Result<String, crate::router::RouterError>,
) -> Result<Response, ApiError> {
    if params.format.as_deref() == Some("csv") {
        let text = csv(&rows)?;
        let day = chrono::DateTime::from_timestamp_millis(query.from_ms as i64)
            .map(|t| t.with_timezone(&query.zone).format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        let name = format!("switchboard-{kind}-{day}-{}.csv", query.interval.name());
        return Ok((
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ),
            ],
            text,
        )
            .into_response());
    }
    let stamp = |ms: u64| {
        chrono::DateTime::from_timestamp_millis(ms as i64)
            .map(|t| {
                t.with_timezone(&query.zone)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            })
            .unwrap_or_default()
    };
    Ok(Json(json!({
        "from": stamp(query.from_ms),
        "to": stamp(query.to_ms),
        "interval": query.interval.name(),
        "tz": query.zone.name(),
        "rows": rows,
    }))
    .into_response())
}

fn params(found: Result<Query<Params>, QueryRejection>) -> Result<Params, ApiError> {
    found.map(|Query(p)| p).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!(
                "{} (short_abandon_secs is a whole number of seconds)",
                e.body_text()
            ),
        )
    })
}

/// Queue figures per interval: offered, answered, abandoned, SLA, waits, handle times.
#[utoipa::path(get, path = "/v1/reports/queues", tag = "reports", params(Params), responses(
    (status = 200, description = "`{from, to, interval, tz, rows}` (one row per queue and interval); with `format=csv`, the same rows as a CSV download", content((Object = "application/json"), (String = "text/csv"))),
    (status = 400, description = "A time, interval, zone or format that does not read (`invalid_query`)", body = super::openapi::ErrorBody)))]
async fn queues(
    State(rt): Api,
    found: Result<Query<Params>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = params(found)?;
    let query = query(&params, params.queue.clone())?;
    let (rows, query) = blocking(move || {
        let rows = rt.admin().queue_report(&query)?;
        Ok((rows, query))
    })
    .await?;
    answer("queues", &params, &query, rows, reports::queue_csv)
}

/// Agent figures per interval: tasks handled, talk, hold and wrap-up times, time per activity.
#[utoipa::path(get, path = "/v1/reports/agents", tag = "reports", params(Params), responses(
    (status = 200, description = "`{from, to, interval, tz, rows}` (one row per agent and interval); with `format=csv`, the same rows as a CSV download", content((Object = "application/json"), (String = "text/csv"))),
    (status = 400, description = "A time, interval, zone or format that does not read (`invalid_query`)", body = super::openapi::ErrorBody)))]
async fn agents(
    State(rt): Api,
    found: Result<Query<Params>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = params(found)?;
    let query = query(&params, params.agent.clone())?;
    let (rows, query) = blocking(move || {
        let rows = rt.admin().agent_report(&query)?;
        Ok((rows, query))
    })
    .await?;
    answer("agents", &params, &query, rows, reports::agent_csv)
}

/// The operations of this module (see `openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(queues, agents))]
pub(super) struct Doc;
