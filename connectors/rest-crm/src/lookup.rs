// The lookup, included by `connector.rs` and by the same connector built against contract
// 0.1.0 (`tests/guests/rest-crm-0-1`): each generates the bindings of its contract version.

use crate::customer::Customer as Record;
use crate::request::{Base, Https, encode};
use exports::switchboard::flow::crm::{Customer, Guest, LookupKey};
use switchboard::flow::config;
use switchboard::flow::log::{Level, log};
use wasi::http::outgoing_handler;
use wasi::http::types::{ErrorCode, Fields, Method, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;

struct RestCrm;

export!(RestCrm);

impl Guest for RestCrm {
    fn lookup(key: LookupKey) -> Result<Option<Customer>, String> {
        let base = config::get("base_url").ok_or(
            "the connector has no base_url setting: switchboard settings crm base_url=https://crm.example.com/api",
        )?;
        let base = Base::parse(&base)?;
        let scheme = if base.https == Https::Yes {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let path = match &key {
            LookupKey::Phone(phone) => format!("{}/customers?phone={}", base.path, encode(phone)),
            LookupKey::Email(email) => format!("{}/customers?email={}", base.path, encode(email)),
            LookupKey::Id(id) => format!("{}/customers/{}", base.path, encode(id)),
        };
        let (status, body) = get(&scheme, &base.authority, &path)?;
        match status {
            404 => Ok(None),
            200..=299 => {
                let json: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| format!("the CRM's answer to GET {path} is not JSON: {e}"))?;
                let tier_field = config::get("tier_field").unwrap_or_else(|| "tier".into());
                Ok(crate::customer::from_json(&json, &tier_field)?.map(into_customer))
            }
            other => Err(format!(
                "the CRM answered GET {path} with HTTP {other}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)]).trim()
            )),
        }
    }
}

/// Sends `GET path` to the CRM; the status and the whole body.
fn get(scheme: &Scheme, authority: &str, path: &str) -> Result<(u16, Vec<u8>), String> {
    let headers = Fields::new();
    let set = |name: &str, value: &str| {
        headers
            .append(name, value.as_bytes())
            .map_err(|e| format!("cannot set the {name} header: {e:?}"))
    };
    set("accept", "application/json")?;
    if let Some(key) = config::get("api_key") {
        set("authorization", &format!("Bearer {key}"))?;
    }
    let request = OutgoingRequest::new(headers);
    let fail = |_| "the request cannot be built".to_string();
    request.set_method(&Method::Get).map_err(fail)?;
    request.set_scheme(Some(scheme)).map_err(fail)?;
    request.set_authority(Some(authority)).map_err(fail)?;
    request.set_path_with_query(Some(path)).map_err(fail)?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| explain(authority, &e))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(e))) => return Err(explain(authority, &e)),
        Some(Err(())) | None => return Err("the CRM's response was lost".into()),
    };
    let status = response.status();
    let body = response
        .consume()
        .map_err(|()| "the CRM's response body cannot be read".to_string())?;
    let stream = body
        .stream()
        .map_err(|()| "the CRM's response body cannot be read".to_string())?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(match wasi::http::types::http_error_code(&e) {
                    Some(code) => explain(authority, &code),
                    None => format!("reading the CRM's answer failed: {}", e.to_debug_string()),
                });
            }
        }
    }
    drop(stream);
    log(
        Level::Debug,
        &format!("GET {path}: HTTP {status}, {} bytes", bytes.len()),
    );
    Ok((status, bytes))
}

/// What went wrong, for the flow's log and the contact's trace.
fn explain(authority: &str, code: &ErrorCode) -> String {
    match code {
        ErrorCode::HttpRequestDenied => format!(
            "the host refused the request to {authority}: it is not in the connector's allowlist"
        ),
        ErrorCode::ConnectionRefused => format!("{authority} refused the connection"),
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::HttpResponseTimeout => {
            format!("{authority} did not answer within the connector's timeout")
        }
        ErrorCode::HttpResponseBodySize(_) => {
            format!("{authority}'s answer is larger than the connector's response cap")
        }
        ErrorCode::DnsError(_) => format!("{authority} cannot be resolved"),
        other => format!("the request to {authority} failed: {other:?}"),
    }
}

fn into_customer(r: Record) -> Customer {
    Customer {
        id: r.id,
        name: r.name,
        phone: r.phone,
        email: r.email,
        tier: r.tier,
        attributes: r.attributes,
    }
}
