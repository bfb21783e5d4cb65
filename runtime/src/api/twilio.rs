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

/// The contract of these webhooks. Twilio posts a form (`application/x-www-form-urlencoded`)
/// with many more fields than these: the schemas name the ones Switchboard reads, and any
/// other is accepted and ignored. The answer is TwiML, the call's next document.
mod doc {
    #![allow(dead_code)]

    use serde::Deserialize;
    use utoipa::ToSchema;

    use crate::api::openapi::ErrorBody;

    /// A new call: Twilio's request to the number's voice webhook.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "PascalCase")]
    pub struct TwilioCall {
        /// The call's id; a retried webhook with the same id continues the same contact.
        call_sid: String,
        /// The caller's number.
        from: String,
        /// The number called: it selects the flow (its entry point).
        to: String,
        /// `inbound` or `outbound-api`, kept as the contact's `twilio_direction`.
        direction: Option<String>,
    }

    /// A `<Gather>`'s answer: the digits pressed or the words heard. Neither (or `no_input=1`
    /// in the query) is no input.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "PascalCase")]
    pub struct TwilioGathered {
        call_sid: String,
        /// The keys the caller pressed.
        digits: Option<String>,
        /// What speech recognition heard.
        speech_result: Option<String>,
    }

    /// A call's status callback.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "PascalCase")]
    pub struct TwilioCallStatus {
        call_sid: String,
        /// `completed`, `busy`, `no-answer`, `failed` and `canceled` end the contact (its
        /// flow hears `hangup`); other statuses change nothing.
        call_status: String,
    }

    /// A request about a call already known: the `<Enqueue>` wait URL.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "PascalCase")]
    pub struct TwilioCallRef {
        call_sid: String,
    }

    /// The `<Enqueue>` action: the caller left the queue.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "PascalCase")]
    pub struct TwilioDequeued {
        call_sid: String,
        /// `redirected` (sent to the agent), `hangup` (the caller hung up while waiting,
        /// which ends the contact), or another result (`leave`, `error`...).
        queue_result: Option<String>,
    }

    /// A `<Dial>` action: the dialed call ended.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "PascalCase")]
    pub struct TwilioDialed {
        call_sid: String,
        /// `completed` or `answered` (a conversation happened); `busy`, `no-answer`, `failed`
        /// or `canceled` (it did not).
        dial_call_status: Option<String>,
        /// The status of the call that dialed: `completed` when that caller is gone too.
        call_status: Option<String>,
    }

    /// A callback call's status (the agent's leg).
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "PascalCase")]
    pub struct TwilioCallbackStatus {
        call_sid: String,
        /// `busy`, `no-answer`, `failed` or `canceled`: the agent missed it (another agent
        /// takes the callback); `completed` before the customer answered: the attempt missed.
        call_status: Option<String>,
    }

    /// An inbound SMS.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "PascalCase")]
    pub struct TwilioSms {
        message_sid: String,
        /// The sender's number: with `To`, it names the conversation.
        from: String,
        /// The number written to: it selects the flow.
        to: String,
        /// The message's text.
        body: Option<String>,
    }

    #[utoipa::path(post, path = "/twilio/voice", tag = "twilio", operation_id = "twilio_voice",
        request_body(content = TwilioCall, content_type = "application/x-www-form-urlencoded"),
        responses(
            (status = 200, description = "TwiML: what the flow says first, and a `<Gather>` when it waits for input", content_type = "application/xml", body = String),
            (status = 400, description = "A required field is missing (`missing_parameter`) or the body is no form (`invalid_form`)", body = ErrorBody),
            (status = 403, description = "A missing or wrong X-Twilio-Signature (`invalid_signature`), when twilio.auth_token is set", body = ErrorBody),
            (status = 404, description = "No flow answers the number called (`no_flow`)", body = ErrorBody),
            (status = 413, description = "A body over 64 KiB", body = ErrorBody)))]
    fn voice() {}

    #[utoipa::path(post, path = "/twilio/voice/gather", tag = "twilio", operation_id = "twilio_gathered",
        params(("no_input" = Option<String>, Query, description = "`1`: the gather timed out (set by Switchboard in the action URL)")),
        request_body(content = TwilioGathered, content_type = "application/x-www-form-urlencoded"),
        responses(
            (status = 200, description = "TwiML: the prompt again (the gather's retries), or the flow's next step", content_type = "application/xml", body = String),
            (status = 400, description = "No `CallSid` (`missing_parameter`) or no form", body = ErrorBody),
            (status = 403, description = "A wrong X-Twilio-Signature", body = ErrorBody),
            (status = 404, description = "A call Switchboard does not know (`unknown_call`)", body = ErrorBody),
            (status = 409, description = "The contact has ended (`contact_ended`)", body = ErrorBody)))]
    fn gather() {}

    #[utoipa::path(post, path = "/twilio/voice/status", tag = "twilio", operation_id = "twilio_call_status",
        request_body(content = TwilioCallStatus, content_type = "application/x-www-form-urlencoded"),
        responses(
            (status = 204, description = "Taken; a call Switchboard does not know is ignored"),
            (status = 400, description = "No `CallSid` or `CallStatus`, or no form", body = ErrorBody),
            (status = 403, description = "A wrong X-Twilio-Signature", body = ErrorBody)))]
    fn status() {}

    #[utoipa::path(post, path = "/twilio/voice/wait", tag = "twilio", operation_id = "twilio_waiting",
        request_body(content = TwilioCallRef, content_type = "application/x-www-form-urlencoded"),
        responses(
            (status = 200, description = "TwiML: the flow's newest queue-wait news (once) and hold music while the task waits; `<Leave/>` once an agent took it or it is over", content_type = "application/xml", body = String),
            (status = 400, description = "No `CallSid`, or no form", body = ErrorBody),
            (status = 403, description = "A wrong X-Twilio-Signature", body = ErrorBody),
            (status = 404, description = "A call Switchboard does not know (`unknown_call`)", body = ErrorBody)))]
    fn wait() {}

    #[utoipa::path(post, path = "/twilio/voice/dequeued", tag = "twilio", operation_id = "twilio_dequeued",
        request_body(content = TwilioDequeued, content_type = "application/x-www-form-urlencoded"),
        responses(
            (status = 200, description = "TwiML: a `<Dial>` of the agent who took the task, else what the flow said to the task's outcome", content_type = "application/xml", body = String),
            (status = 400, description = "No `CallSid`, or no form", body = ErrorBody),
            (status = 403, description = "A wrong X-Twilio-Signature", body = ErrorBody),
            (status = 404, description = "A call Switchboard does not know (`unknown_call`)", body = ErrorBody)))]
    fn dequeued() {}

    #[utoipa::path(post, path = "/twilio/voice/dialed", tag = "twilio", operation_id = "twilio_dialed",
        request_body(content = TwilioDialed, content_type = "application/x-www-form-urlencoded"),
        responses(
            (status = 200, description = "TwiML: what the flow says after the conversation (or after an agent who did not answer: the task is canceled and the agent made unavailable)", content_type = "application/xml", body = String),
            (status = 400, description = "No `CallSid`, or no form", body = ErrorBody),
            (status = 403, description = "A wrong X-Twilio-Signature", body = ErrorBody),
            (status = 404, description = "A call Switchboard does not know (`unknown_call`)", body = ErrorBody)))]
    fn dialed() {}

    #[utoipa::path(post, path = "/twilio/callback/answered", tag = "twilio", operation_id = "twilio_callback_answered",
        params(
            ("task" = String, Query, description = "The callback task (set by Switchboard when it places the call)"),
            ("attempt" = u32, Query, description = "Which attempt")),
        request_body(content = TwilioCallRef, content_type = "application/x-www-form-urlencoded"),
        responses(
            (status = 200, description = "TwiML: the agent answered; the customer is dialed from the number they called", content_type = "application/xml", body = String),
            (status = 400, description = "No `task` or `attempt` in the query (`missing_parameter`)", body = ErrorBody),
            (status = 403, description = "A wrong X-Twilio-Signature", body = ErrorBody),
            (status = 404, description = "No such callback task (`unknown_call`)", body = ErrorBody)))]
    fn callback_answered() {}

    #[utoipa::path(post, path = "/twilio/callback/greet", tag = "twilio", operation_id = "twilio_callback_greet",
        params(
            ("task" = String, Query, description = "The callback task"),
            ("attempt" = u32, Query, description = "Which attempt")),
        request_body(content = TwilioCallRef, content_type = "application/x-www-form-urlencoded"),
        responses(
            (status = 200, description = "TwiML: the customer answered; they are greeted, then connected (the attempt reached them)", content_type = "application/xml", body = String),
            (status = 400, description = "No `task` or `attempt` in the query", body = ErrorBody),
            (status = 403, description = "A wrong X-Twilio-Signature", body = ErrorBody),
            (status = 404, description = "No such callback task", body = ErrorBody)))]
    fn callback_greet() {}

    #[utoipa::path(post, path = "/twilio/callback/dialed", tag = "twilio", operation_id = "twilio_callback_dialed",
        params(
            ("task" = String, Query, description = "The callback task"),
            ("attempt" = u32, Query, description = "Which attempt")),
        request_body(content = TwilioDialed, content_type = "application/x-www-form-urlencoded"),
        responses(
            (status = 200, description = "TwiML: the call to the customer ended; a busy line, no answer or a failure is the attempt's result and is retried per the callback policy", content_type = "application/xml", body = String),
            (status = 400, description = "No `task` or `attempt` in the query", body = ErrorBody),
            (status = 403, description = "A wrong X-Twilio-Signature", body = ErrorBody),
            (status = 404, description = "No such callback task", body = ErrorBody)))]
    fn callback_dialed() {}

    #[utoipa::path(post, path = "/twilio/callback/status", tag = "twilio", operation_id = "twilio_callback_status",
        params(
            ("task" = String, Query, description = "The callback task"),
            ("attempt" = u32, Query, description = "Which attempt")),
        request_body(content = TwilioCallbackStatus, content_type = "application/x-www-form-urlencoded"),
        responses(
            (status = 204, description = "Taken: an attempt still open ends as the status says"),
            (status = 400, description = "No `task` or `attempt` in the query", body = ErrorBody),
            (status = 403, description = "A wrong X-Twilio-Signature", body = ErrorBody),
            (status = 404, description = "No such callback task", body = ErrorBody)))]
    fn callback_status() {}

    #[utoipa::path(get, path = "/twilio/hold.wav", tag = "twilio", operation_id = "twilio_hold_music",
        responses((status = 200, description = "The hold music callers hear while they wait (Twilio fetches it for `<Play>`)", content_type = "audio/wav", body = crate::api::openapi::Bytes)))]
    fn hold() {}

    #[utoipa::path(post, path = "/twilio/sms", tag = "twilio", operation_id = "twilio_sms",
        request_body(content = TwilioSms, content_type = "application/x-www-form-urlencoded"),
        responses(
            (status = 200, description = "TwiML: the flow's replies as `<Message>`s (none while an agent holds the conversation: the text went to them)", content_type = "application/xml", body = String),
            (status = 400, description = "No `From`, `To` or `MessageSid`, or no form", body = ErrorBody),
            (status = 403, description = "A wrong X-Twilio-Signature", body = ErrorBody),
            (status = 404, description = "No flow answers the number written to (`no_flow`)", body = ErrorBody)))]
    fn sms() {}

    /// The operations of this module (see `openapi`).
    #[derive(utoipa::OpenApi)]
    #[openapi(paths(
        voice,
        gather,
        status,
        wait,
        dequeued,
        dialed,
        callback_answered,
        callback_greet,
        callback_dialed,
        callback_status,
        hold,
        sms
    ))]
    pub struct Doc;
}

pub(super) use doc::Doc;
