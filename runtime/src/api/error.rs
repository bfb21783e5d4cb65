//! Every API error is JSON: `{"error": {"code": "...", "message": "..."}}`, where the code is
//! stable for programs and the message says what to do next.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::customers::CustomersError;
use crate::flows::FlowsError;
use crate::sessions::ContactError;
use crate::store::StoreError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Option<serde_json::Value>,
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, a stable code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// The error as JSON, for answers that are not HTTP responses (WebSocket messages).
    pub fn to_json(&self) -> serde_json::Value {
        json!({"type": "error", "code": self.code, "message": self.message})
    }

    /// Its stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Tells the client when to try again (`Retry-After`, in seconds).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Attaches machine-readable details (such as replay diffs).
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(details) = self.details {
            error["details"] = details;
        }
        let mut answer = (self.status, Json(json!({ "error": error }))).into_response();
        if let Some(secs) = self.retry_after {
            answer
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        answer
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let (status, code) = match &e {
            // Someone else changed the same record first; nothing was written.
            StoreError::Conflict { .. } => (StatusCode::CONFLICT, "concurrent_change"),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<FlowsError> for ApiError {
    fn from(e: FlowsError) -> Self {
        let (status, code) = match &e {
            FlowsError::Rejected(_) => (StatusCode::UNPROCESSABLE_ENTITY, "deploy_rejected"),
            FlowsError::BadName(_) => (StatusCode::BAD_REQUEST, "invalid_flow_name"),
            FlowsError::UnknownFlow(_) => (StatusCode::NOT_FOUND, "unknown_flow"),
            FlowsError::UnknownVersion { .. } => (StatusCode::NOT_FOUND, "unknown_version"),
            FlowsError::BadEntryPoint(_) => (StatusCode::BAD_REQUEST, "invalid_entry_point"),
            FlowsError::BadCanary(_) => (StatusCode::BAD_REQUEST, "invalid_canary"),
            FlowsError::BadConnector(_) => (StatusCode::BAD_REQUEST, "invalid_connector"),
            FlowsError::NoCanary(_) => (StatusCode::CONFLICT, "no_canary"),
            FlowsError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            FlowsError::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "component_storage"),
            FlowsError::NotLoaded(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_loaded_everywhere"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<ContactError> for ApiError {
    fn from(e: ContactError) -> Self {
        match e {
            ContactError::Flows(e) => e.into(),
            ContactError::Store(e) => e.into(),
            ContactError::Routing(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "routing_failed",
                e.to_string(),
            ),
            ContactError::NoFlow(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "no_flow", e.to_string())
            }
            ContactError::UnknownContact(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_contact", e.to_string())
            }
            ContactError::Ended(_) => {
                ApiError::new(StatusCode::CONFLICT, "contact_ended", e.to_string())
            }
            ContactError::BadEvent(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_event", e.to_string())
            }
        }
    }
}

impl From<CustomersError> for ApiError {
    fn from(e: CustomersError) -> Self {
        match e {
            CustomersError::Store(e) => e.into(),
            CustomersError::Malformed(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_customers", e.to_string())
            }
        }
    }
}

/// A JSON request body. A body that is not the JSON a route takes is refused with the API's
/// own error (400 `invalid_json`, saying what is wrong), before the handler runs.
pub struct AppJson<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for AppJson<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let Json(value) = Json::<T>::from_request(request, state).await?;
        Ok(AppJson(value))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is over 2 MiB: send less (components, prompts and customer files have their own routes)",
            );
        }
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!(
                "{} (see README, section HTTP API, for the expected body)",
                e.body_text()
            ),
        )
    }
}

impl From<crate::runtime::CheckedDeployError> for ApiError {
    fn from(e: crate::runtime::CheckedDeployError) -> Self {
        use crate::runtime::CheckedDeployError as E;
        match e {
            E::Flows(e) => e.into(),
            E::Contacts(e) => e.into(),
            E::BehaviourChanged { ref reports, .. } => {
                let details = serde_json::to_value(reports).unwrap_or_default();
                ApiError::new(StatusCode::CONFLICT, "behaviour_changed", e.to_string())
                    .with_details(details)
            }
        }
    }
}

impl From<crate::router::RouterError> for ApiError {
    fn from(e: crate::router::RouterError) -> Self {
        use crate::router::RouterError as E;
        let (status, code) = match &e {
            E::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            E::UnknownQueue(_) => (StatusCode::NOT_FOUND, "unknown_queue"),
            E::UnknownAgent(_) => (StatusCode::NOT_FOUND, "unknown_agent"),
            E::UnknownTask(_) => (StatusCode::NOT_FOUND, "unknown_task"),
            E::UnknownReservation(_) => (StatusCode::NOT_FOUND, "unknown_reservation"),
            E::NotYours(_) => (StatusCode::FORBIDDEN, "not_yours"),
            E::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            // Other nodes kept changing the router first, try after try: nothing was
            // written, and the same request a moment later goes through.
            E::Store(crate::store::StoreError::Conflict { .. }) => {
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "router_busy",
                    "the router is busy with changes from other nodes and nothing was changed: send the same request again in a moment",
                )
                .retry_after(1);
            }
            E::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
        };
        ApiError::new(status, code, e.to_string())
    }
}
