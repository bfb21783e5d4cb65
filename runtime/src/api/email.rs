//! The e-mail channel's HTTP side: the inbound-parse webhook mail providers forward mail to
//! (`POST /email/inbound`, authenticated by `email.inbound_secret`), and a contact's mail
//! (`GET /v1/contacts/{id}/mail`).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::routing::Agent;
use super::{Answer, Api, ApiError, blocking, ok};
use crate::channels::email::MailError;
use crate::runtime::Runtime;

/// The webhook, at the top level.
pub fn public(runtime: &Runtime) -> Router<Arc<Runtime>> {
    // Room for the largest mail plus the form's own parts around it.
    let limit = runtime.config().email.max_message_bytes * 2 + (1 << 20);
    Router::new().route(
        "/email/inbound",
        post(inbound).layer(DefaultBodyLimit::max(limit)),
    )
}

/// The routes under `/v1`.
pub fn admin() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/contacts/{id}/mail", get(mail_of_contact))
        .route("/contacts/{id}/attachments", get(attachments_of_contact))
        .route(
            "/contacts/{id}/attachments/{mail}/{n}",
            get(attachment_of_contact),
        )
}

/// The routes under `/agent/v1` (behind the agent's credentials).
pub fn agent() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/tasks/{id}/attachments", get(attachments_of_task))
        .route(
            "/tasks/{id}/attachments/{mail}/{n}",
            get(attachment_of_task),
        )
}

/// Whether the request presents `secret`: as a bearer token, or as the password of HTTP
/// basic authentication (what providers that only take a URL send: `https://u:SECRET@host/`).
fn presents(headers: &HeaderMap, secret: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let given = if let Some(token) = value.strip_prefix("Bearer ") {
        token.trim().to_string()
    } else if let Some(basic) = value.strip_prefix("Basic ") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim()) else {
            return false;
        };
        let decoded = String::from_utf8_lossy(&decoded).into_owned();
        match decoded.split_once(':') {
            Some((_, password)) => password.to_string(),
            None => return false,
        }
    } else {
        return false;
    };
    // Digests of equal length, compared in constant time: the time taken says nothing of
    // the secret's length or of how much of it matched.
    crate::tokens::same_secret(
        crate::tokens::hash(&given).as_bytes(),
        crate::tokens::hash(secret).as_bytes(),
    )
}

#[derive(Deserialize, Default)]
struct InboundQuery {
    /// The recipient, when the post does not say it.
    to: Option<String>,
}

/// What a provider's post carries: the raw mail, and the envelope when it gives one.
struct Post {
    raw: Vec<u8>,
    mail_from: Option<String>,
    to: Vec<String>,
}

/// A provider's post: the raw MIME message as the body (`message/rfc822`), or a form
/// (`multipart/form-data`) with the message in `email` (SendGrid's "post the raw, full MIME
/// message") or `body-mime` (Mailgun), and the envelope in `envelope` (JSON: `to`, `from`) or
/// `recipient`/`sender`. A form is MIME itself (RFC 7578), read with the same parser as mail.
fn read_post(content_type: &str, body: &[u8]) -> Result<Post, ApiError> {
    use mail_parser::MimeHeaders as _;
    if !content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return Ok(Post {
            raw: body.to_vec(),
            mail_from: None,
            to: Vec::new(),
        });
    }
    let mut wrapped = format!("Content-Type: {content_type}\r\n\r\n").into_bytes();
    wrapped.extend_from_slice(body);
    let form = mail_parser::MessageParser::default()
        .parse(&wrapped)
        .ok_or_else(|| bad_form("the form does not parse"))?;
    let mut raw = None;
    let mut mail_from = None;
    let mut to = Vec::new();
    for part in form.parts.iter().skip(1) {
        let Some(name) = part.content_disposition().and_then(|d| d.attribute("name")) else {
            continue;
        };
        let value = part.contents();
        match name {
            "email" | "body-mime" => raw = Some(value.to_vec()),
            "envelope" => {
                let envelope: serde_json::Value = serde_json::from_slice(value)
                    .map_err(|e| bad_form(&format!("`envelope` is not JSON: {e}")))?;
                mail_from = envelope["from"].as_str().map(str::to_string);
                to.extend(
                    envelope["to"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.as_str().map(str::to_string)),
                );
            }
            "recipient" => to.extend(
                String::from_utf8_lossy(value)
                    .split(',')
                    .map(|t| t.trim().to_string()),
            ),
            "sender" => mail_from = Some(String::from_utf8_lossy(value).trim().to_string()),
            _ => {}
        }
    }
    let raw = raw.ok_or_else(|| {
        bad_form("the form has no `email` (SendGrid, raw) or `body-mime` (Mailgun) field holding the message")
    })?;
    Ok(Post { raw, mail_from, to })
}

fn bad_form(why: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_inbound_post", why.to_string())
}

/// `POST /email/inbound`: a mail forwarded by a provider. 202 once stored; 401 without the
/// secret; 404 when the webhook is off; 422 when no flow answers any recipient.
#[utoipa::path(post, path = "/email/inbound", tag = "email",
    request_body(content((super::openapi::Bytes = "message/rfc822"), (super::openapi::Bytes = "multipart/form-data")), description = "The raw message, or a SendGrid (`email`, `envelope`) or Mailgun (`body-mime`, `recipient`) form"),
    responses(
        (status = 202, description = "Stored: `{\"accepted\", \"recipients\"}`", body = Object),
        (status = 400, description = "A form without the message (`bad_inbound_post`)", body = super::openapi::ErrorBody),
        (status = 401, description = "Without the secret (email.inbound_secret)", body = super::openapi::ErrorBody),
        (status = 404, description = "The webhook is off (no email.inbound_secret)", body = super::openapi::ErrorBody),
        (status = 413, description = "Over email.max_message_bytes", body = super::openapi::ErrorBody),
        (status = 422, description = "No flow answers any recipient (`unknown_recipient`)", body = super::openapi::ErrorBody)))]
async fn inbound(
    State(rt): Api,
    Query(query): Query<InboundQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let Some(secret) = rt.config().email.inbound_secret.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "email_webhook_off",
            "the inbound-parse webhook is off: set email.inbound_secret in switchboard.toml (or SWITCHBOARD_EMAIL_INBOUND_SECRET)",
        ));
    };
    if !presents(&headers, &secret) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_secret",
            "this webhook needs email.inbound_secret, as a bearer token or as the password of basic authentication (https://inbound:SECRET@host/email/inbound)",
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("message/rfc822")
        .to_string();
    let post = read_post(&content_type, &body)?;
    let answer = blocking(move || {
        let mut candidates = post.to;
        candidates.extend(query.to);
        if candidates.is_empty() {
            // No envelope: the addresses the mail itself names.
            if let Some(mail) = mail_parser::MessageParser::default().parse(&post.raw) {
                for address in mail.to().into_iter().chain(mail.cc()) {
                    candidates.extend(
                        address
                            .iter()
                            .filter_map(|a| a.address().map(str::to_string)),
                    );
                }
            }
        }
        let mut recipients: Vec<String> = Vec::new();
        for to in &candidates {
            let to = to.trim().to_ascii_lowercase();
            if !recipients.contains(&to) && rt.email.takes(&rt, &to) {
                recipients.push(to);
            }
        }
        if recipients.is_empty() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_recipient",
                MailError::UnknownRecipient(format!("{candidates:?}")).to_string(),
            ));
        }
        let mail_from = post.mail_from.unwrap_or_else(|| {
            mail_parser::MessageParser::default()
                .parse(&post.raw)
                .and_then(|m| {
                    m.from()
                        .and_then(|a| a.first())
                        .and_then(|a| a.address().map(str::to_string))
                })
                .unwrap_or_default()
        });
        match rt.email.accept(&post.raw, &mail_from, &recipients, "webhook") {
            Ok(ids) => Ok(json!({"accepted": ids, "recipients": recipients})),
            Err(MailError::TooLarge { size, max }) => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "message_too_large",
                format!("the message is {size} bytes; this server takes at most {max} (email.max_message_bytes)"),
            )),
            Err(MailError::Store(e)) => Err(e.into()),
            Err(e) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_recipient",
                e.to_string(),
            )),
        }
    })
    .await?;
    ok(StatusCode::ACCEPTED, answer)
}

/// The mail of a contact: sent (with when), waiting in the outbox (with the last error).
#[utoipa::path(get, path = "/v1/contacts/{id}/mail", tag = "email", params(("id" = String, Path, description = "The contact's id")),
    responses(
        (status = 200, description = "The answers, oldest first, each sent, waiting or failed", body = Vec<crate::channels::email::outbox::Outgoing>),
        (status = 404, description = "No such contact", body = super::openapi::ErrorBody)))]
async fn mail_of_contact(State(rt): Api, Path(id): Path<String>) -> Answer {
    let mail = blocking(move || {
        rt.contacts().get(&id)?;
        Ok(rt.email.of_contact(&id)?)
    })
    .await?;
    ok(StatusCode::OK, mail)
}

/// The attachments of an e-mail contact.
#[utoipa::path(get, path = "/v1/contacts/{id}/attachments", tag = "email", params(("id" = String, Path, description = "The contact's id")),
    responses(
        (status = 200, description = "The attachments", body = Vec<crate::channels::email::AttachmentInfo>),
        (status = 404, description = "No such contact", body = super::openapi::ErrorBody)))]
async fn attachments_of_contact(State(rt): Api, Path(id): Path<String>) -> Answer {
    let list = blocking(move || {
        rt.contacts().get(&id)?;
        Ok(rt.email.attachments(&id)?)
    })
    .await?;
    ok(StatusCode::OK, list)
}

/// One attachment's bytes, as a download.
#[utoipa::path(get, path = "/v1/contacts/{id}/attachments/{mail}/{n}", tag = "email", params(("id" = String, Path, description = "The contact's id"), ("mail" = String, Path, description = "The mail it came with (`mail` in the list)"), ("n" = u32, Path, description = "Its place in the mail, from 0")),
    responses(
        (status = 200, description = "The file, with its own Content-Type and name", content_type = "application/octet-stream", body = super::openapi::Bytes),
        (status = 404, description = "No such attachment kept (`no_attachment`)", body = super::openapi::ErrorBody)))]
async fn attachment_of_contact(
    State(rt): Api,
    Path((id, mail, n)): Path<(String, String, u32)>,
) -> Answer {
    let found = blocking(move || Ok(rt.email.attachment(&id, &mail, n)?)).await?;
    download(found)
}

/// The contact of a task the agent holds (or wraps up, or is offered).
fn contact_of_task(rt: &Runtime, agent: &str, task: &str) -> Result<String, ApiError> {
    let task = super::routing::task_of_agent(rt, agent, task)?;
    task.contact.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_contact",
            format!(
                "task {} came from no contact: it has no attachments",
                task.id
            ),
        )
    })
}

/// The attachments of the e-mail contact of a task the agent holds.
#[utoipa::path(get, path = "/agent/v1/tasks/{id}/attachments", tag = "desk", params(("id" = String, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The attachments of the task's e-mail contact", body = Vec<crate::channels::email::AttachmentInfo>),
        (status = 404, description = "Not a task of this agent", body = super::openapi::ErrorBody)))]
async fn attachments_of_task(
    State(rt): Api,
    Extension(Agent(agent)): Extension<Agent>,
    Path(id): Path<String>,
) -> Answer {
    let list = blocking(move || {
        let contact = contact_of_task(&rt, &agent, &id)?;
        Ok(rt.email.attachments(&contact)?)
    })
    .await?;
    ok(StatusCode::OK, list)
}

/// One attachment of a task the agent holds, as a download.
#[utoipa::path(get, path = "/agent/v1/tasks/{id}/attachments/{mail}/{n}", tag = "desk", params(("id" = String, Path, description = "The task's id"), ("mail" = String, Path, description = "The mail it came with (`mail` in the list)"), ("n" = u32, Path, description = "Its place in the mail, from 0")),
    responses(
        (status = 200, description = "The file, with its own Content-Type and name", content_type = "application/octet-stream", body = super::openapi::Bytes),
        (status = 404, description = "Not a task of this agent, or no such attachment kept", body = super::openapi::ErrorBody)))]
async fn attachment_of_task(
    State(rt): Api,
    Extension(Agent(agent)): Extension<Agent>,
    Path((id, mail, n)): Path<(String, String, u32)>,
) -> Answer {
    let found = blocking(move || {
        let contact = contact_of_task(&rt, &agent, &id)?;
        Ok(rt.email.attachment(&contact, &mail, n)?)
    })
    .await?;
    download(found)
}

fn download(found: Option<(crate::channels::email::AttachmentInfo, Vec<u8>)>) -> Answer {
    let Some((info, bytes)) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_attachment",
            "no such attachment kept (list them at .../attachments; one over email.max_attachment_bytes is named but not kept)",
        ));
    };
    // The name as the sender gave it, made safe for the header.
    let name: String = info
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            // Served as a download, never rendered by the browser in this origin.
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_comes_as_a_bearer_token_or_a_basic_password() {
        let mut headers = HeaderMap::new();
        assert!(!presents(&headers, "s3cret"));
        headers.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(presents(&headers, "s3cret"));
        assert!(!presents(&headers, "other"));
        let basic = base64::engine::general_purpose::STANDARD.encode("inbound:s3cret");
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {basic}").parse().unwrap(),
        );
        assert!(presents(&headers, "s3cret"));
        assert!(!presents(&headers, "s3cre"));
    }

    #[test]
    fn a_sendgrid_form_gives_the_raw_mail_and_its_envelope() {
        let body = "--xYzZY\r\n\
Content-Disposition: form-data; name=\"envelope\"\r\n\r\n\
{\"to\":[\"support@acme.test\"],\"from\":\"jane@example.com\"}\r\n\
--xYzZY\r\n\
Content-Disposition: form-data; name=\"email\"\r\n\r\n\
From: jane@example.com\r\nTo: support@acme.test\r\nSubject: Hi\r\n\r\nHello\r\n\
--xYzZY--\r\n";
        let post = read_post("multipart/form-data; boundary=xYzZY", body.as_bytes()).unwrap();
        assert_eq!(post.to, ["support@acme.test"]);
        assert_eq!(post.mail_from.as_deref(), Some("jane@example.com"));
        let mail = crate::channels::email::parse::read(&post.raw, false);
        assert_eq!(mail.subject, "Hi");
        assert_eq!(mail.text, "Hello");
        assert!(read_post("multipart/form-data; boundary=xYzZY", b"--xYzZY--\r\n").is_err());
    }
}

/// The operations of this module (see `openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    inbound,
    mail_of_contact,
    attachments_of_contact,
    attachment_of_contact,
    attachments_of_task,
    attachment_of_task
))]
pub(super) struct Doc;
