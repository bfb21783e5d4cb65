//! Voice resources: uploaded prompts (`PUT /v1/prompts/{id}` with a WAV body, listed at
//! `GET /v1/prompts`, served to webhook channels at `GET /prompts/{id}`), and the agent phones
//! registered with the SIP endpoint (`GET /v1/sip/registrations`).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::{Answer, Api, ApiError, blocking, ok};
use crate::channels::sip::prompts::PromptError;
use crate::runtime::Runtime;

/// Routes under `/v1` (authenticated).
pub fn admin() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/prompts", get(list))
        .route(
            "/prompts/{id}",
            axum::routing::put(upload)
                .layer(axum::extract::DefaultBodyLimit::max(super::MAX_COMPONENT)),
        )
        .route("/sip/registrations", get(registrations))
}

/// Public routes (Twilio fetches `<Play>` URLs without a token).
pub fn public() -> Router<Arc<Runtime>> {
    Router::new().route("/prompts/{id}", get(wav))
}

impl From<PromptError> for ApiError {
    fn from(e: PromptError) -> Self {
        let (status, code) = match &e {
            PromptError::BadId(_) => (StatusCode::BAD_REQUEST, "bad_prompt_id"),
            PromptError::Unknown(_) => (StatusCode::NOT_FOUND, "unknown_prompt"),
            PromptError::Tool { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "unreadable_audio"),
            PromptError::MissingTool(_) => (StatusCode::SERVICE_UNAVAILABLE, "audio_tools_missing"),
            PromptError::Fetch { .. } | PromptError::Io(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "prompt_storage")
            }
            PromptError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// Uploads a recorded prompt (any audio ffmpeg reads), kept as 8 kHz WAV for flows to `play`.
#[utoipa::path(put, path = "/v1/prompts/{id}", tag = "voice",
    params(("id" = String, Path, description = "The prompt's id: letters, digits, `-` and `_`")),
    request_body(content((super::openapi::Bytes = "audio/wav"), (super::openapi::Bytes = "application/octet-stream")), description = "The recording"),
    responses(
        (status = 201, description = "`{id, millis}`: its length", body = Object),
        (status = 400, description = "An empty body or a bad id", body = super::openapi::ErrorBody),
        (status = 413, description = "Larger than 64 MiB", body = super::openapi::ErrorBody),
        (status = 422, description = "Not audio that can be read (`unreadable_audio`)", body = super::openapi::ErrorBody)))]
async fn upload(
    State(rt): Api,
    axum::Extension(super::Caller(who)): axum::Extension<super::Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "send the recording (a WAV file) as the request body",
        ));
    }
    let key = id.clone();
    let millis = blocking(move || {
        let millis = rt.prompts.upload(&key, &body).map_err(ApiError::from)?;
        let detail = json!({"millis": millis, "bytes": body.len()});
        rt.admin().note(&who, "upload-prompt", &key, detail)?;
        Ok(millis)
    })
    .await?;
    ok(StatusCode::CREATED, json!({"id": id, "millis": millis}))
}

/// The uploaded prompts with their lengths.
#[utoipa::path(get, path = "/v1/prompts", tag = "voice",
    responses((status = 200, description = "`[{id, millis}]`", body = Vec<Object>)))]
async fn list(State(rt): Api) -> Answer {
    let prompts = rt.prompts.clone();
    let listed = blocking(move || prompts.list().map_err(ApiError::from)).await?;
    let prompts: Vec<_> = listed
        .into_iter()
        .map(|(id, millis)| json!({"id": id, "millis": millis}))
        .collect();
    ok(StatusCode::OK, prompts)
}

/// A prompt as 8 kHz WAV, for webhook channels' `<Play>` (no token: Twilio fetches it).
#[utoipa::path(get, path = "/prompts/{id}", tag = "voice",
    params(("id" = String, Path, description = "The prompt's id")),
    responses(
        (status = 200, description = "The prompt", content_type = "audio/wav", body = super::openapi::Bytes),
        (status = 400, description = "A bad id", body = super::openapi::ErrorBody),
        (status = 404, description = "No such prompt", body = super::openapi::ErrorBody)))]
async fn wav(State(rt): Api, Path(id): Path<String>) -> Result<Response, ApiError> {
    let prompts = rt.prompts.clone();
    let bytes = blocking(move || prompts.wav(&id).map_err(ApiError::from)).await?;
    Ok(([(header::CONTENT_TYPE, "audio/wav")], bytes).into_response())
}

/// The agent phones registered with the SIP endpoint.
#[utoipa::path(get, path = "/v1/sip/registrations", tag = "voice",
    responses((status = 200, description = "`[{agent, contact, expires_in_secs}]`", body = Vec<Object>)))]
async fn registrations(State(rt): Api) -> Answer {
    let list: Vec<_> = rt
        .sip
        .get()
        .map(|sip| sip.registrations())
        .unwrap_or_default()
        .into_iter()
        .map(|(agent, contact, expires)| json!({"agent": agent, "contact": contact, "expires_in_secs": expires}))
        .collect();
    ok(StatusCode::OK, list)
}

/// The operations of this module (see `openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(upload, list, wav, registrations))]
pub(super) struct Doc;
