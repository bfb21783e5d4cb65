//! The Twilio-compatible webhooks: form posts in, TwiML out. Authenticated by
//! `X-Twilio-Signature` (when an auth token is configured), not by bearer tokens.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::{Api, ApiError, blocking};
use crate::channels::twilio::{self, Params, WebhookError, signature};
use crate::runtime::Runtime;

/// Twilio's own limit on webhook bodies is far below this.
const MAX_BODY: usize = 64 * 1024;

/// The webhook routes, mounted under `/twilio`.
pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/voice", twiml_hook(twilio::incoming_call))
        .route("/voice/gather", post(gather))
        .route("/voice/status", post(status))
        .route("/voice/wait", twiml_hook(twilio::waiting))
        .route("/voice/dequeued", twiml_hook(twilio::dequeued))
        .route("/voice/dialed", twiml_hook(twilio::dialed))
        .route(
            "/callback/answered",
            callback_hook(twilio::callback::answered),
        )
        .route("/callback/greet", callback_hook(twilio::callback::greet))
        .route("/callback/dialed", callback_hook(twilio::callback::dialed))
        .route("/callback/status", post(callback_status))
        .route("/hold.wav", axum::routing::get(hold))
        .route("/sms", post(sms))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Missing(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "missing_parameter", e.to_string())
            }
            WebhookError::UnknownCall(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_call", e.to_string())
            }
            WebhookError::Contact(e) => e.into(),
            WebhookError::Store(e) => e.into(),
        }
    }
}

/// A verified webhook: its parameters and the public base URL.
struct Webhook {
    params: Vec<(String, String)>,
    base: String,
}

/// `uri` is the request's original URI (a nested router sees it without the `/twilio`
/// prefix, but Twilio signed the whole URL).
fn verify(rt: &Runtime, headers: &HeaderMap, uri: &Uri, body: &Bytes) -> Result<Webhook, ApiError> {
    let params: Vec<(String, String)> = switchboard_wire::twilio::form(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_form",
            format!("the webhook body is not a form post: {e}"),
        )
    })?;
    let base = match &rt.config().twilio.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}")
        }
    };
    if let Some(token) = &rt.config().twilio.auth_token {
        let url = format!(
            "{base}{}",
            uri.path_and_query()
                .map(|p| p.as_str())
                .unwrap_or(uri.path())
        );
        let presented = headers
            .get("x-twilio-signature")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if presented.is_empty() || !signature::verify(token, &url, &params, presented) {
            tracing::warn!(
                url,
                "refused a webhook with a missing or wrong X-Twilio-Signature"
            );
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "invalid_signature",
                "missing or wrong X-Twilio-Signature: check the auth token, and that twilio.public_url is the URL Twilio calls",
            ));
        }
    }
    Ok(Webhook { params, base })
}

/// Verifies the webhook, runs `work` on a blocking thread, answers with its TwiML.
async fn webhook(
    rt: Arc<Runtime>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
    work: impl FnOnce(&Runtime, &Params, &str, &Uri) -> Result<Option<String>, WebhookError>
    + Send
    + 'static,
) -> Result<Response, ApiError> {
    let hook = verify(&rt, &headers, &uri, &body)?;
    let answer =
        blocking(move || Ok(work(&rt, &Params::new(&hook.params), &hook.base, &uri)?)).await?;
    Ok(match answer {
        Some(xml) => (
            [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
            xml,
        )
            .into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// A verified webhook whose answer is the TwiML `answer` makes of it (the call's next
/// document).
fn twiml_hook(
    answer: fn(&crate::runtime::Node, &Params, &str) -> Result<String, WebhookError>,
) -> axum::routing::MethodRouter<Arc<Runtime>> {
    post(
        move |State(rt): Api, headers: HeaderMap, OriginalUri(uri): OriginalUri, body: Bytes| async move {
            webhook(rt, headers, uri, body, move |rt, params, base, _| {
                answer(rt, params, base).map(Some)
            })
            .await
        },
    )
}

/// A callback webhook (its task and attempt in the query) answered with TwiML.
fn callback_hook(
    answer: fn(&crate::runtime::Node, &Params, &str, Option<&str>) -> Result<String, WebhookError>,
) -> axum::routing::MethodRouter<Arc<Runtime>> {
    post(
        move |State(rt): Api, headers: HeaderMap, OriginalUri(uri): OriginalUri, body: Bytes| async move {
            webhook(rt, headers, uri, body, move |rt, params, base, uri| {
                answer(rt, params, base, uri.query()).map(Some)
            })
            .await
        },
    )
}

async fn callback_status(
    State(rt): Api,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Result<Response, ApiError> {
    webhook(rt, headers, uri, body, |rt, params, _, uri| {
        twilio::callback::status(rt, params, uri.query()).map(|()| None)
    })
    .await
}

async fn gather(
    State(rt): Api,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Result<Response, ApiError> {
    webhook(rt, headers, uri, body, |rt, params, base, uri| {
        let no_input = uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "no_input=1"));
        twilio::gathered(rt, params, no_input, base).map(Some)
    })
    .await
}

async fn status(
    State(rt): Api,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Result<Response, ApiError> {
    webhook(rt, headers, uri, body, |rt, params, _, _| {
        twilio::call_status(rt, params).map(|()| None)
    })
    .await
}

async fn sms(
    State(rt): Api,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Result<Response, ApiError> {
    webhook(rt, headers, uri, body, |rt, params, _, _| {
        let to_agent = |contact: &str, agent: &str, text: &str| {
            Ok(rt.customer_to_agent(contact, agent, text)?)
        };
        twilio::incoming_sms(rt, params, &to_agent).map(Some)
    })
    .await
}

/// The hold music waiting Twilio callers hear (a WAV file Twilio fetches).
async fn hold() -> Response {
    static HOLD: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let wav = HOLD.get_or_init(crate::channels::sip::prompts::Prompts::hold_wav);
    ([(header::CONTENT_TYPE, "audio/wav")], wav.clone()).into_response()
}
