//! Who may call what: every `/v1` request is authenticated (an API token, or a browser
//! session cookie whose changes carry its CSRF token) and its route checked against the
//! caller's role in one table, [`allowed`]. Also the people routes (users, tokens) and the
//! browser's sign-in and sign-out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::json;

use super::{Answer, Api, ApiError, AppJson, Caller, blocking, ok};
use crate::runtime::Runtime;
use crate::users::{self, Principal, Refusal, Role, UserChange, UserError};

/// The browser session cookie.
pub const SESSION_COOKIE: &str = "sb_session";
/// The header a browser session's changes carry its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a browser session lasts.
const SESSION_SECS: u64 = 12 * 3600;
/// Failed sign-ins for one name within [`FAILURE_WINDOW`] before further tries wait.
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(300);

/// Whether `role` may call `method` on the route `path` (as matched, such as
/// `/v1/flows/{flow}/versions`). Admins may call everything.
pub fn allowed(role: Role, method: &Method, path: &str) -> bool {
    let path = path.strip_prefix("/v1").unwrap_or(path);
    let read = method == Method::GET || method == Method::HEAD;
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    match role {
        Role::Admin => true,
        // Everyone signed in may ask who they are.
        _ if path == "/me" => true,
        Role::Supervisor => {
            [
                "/queues",
                "/agents",
                "/tasks",
                "/workflow",
                "/stats",
                "/reports",
            ]
            .iter()
            .any(|p| under(p))
                || (read
                    && [
                        "/flows",
                        "/contacts",
                        "/audit",
                        "/cluster",
                        "/sip",
                        "/prompts",
                    ]
                    .iter()
                    .any(|p| under(p)))
        }
        Role::Developer => {
            [
                "/flows",
                "/entry-points",
                "/contacts",
                "/prompts",
                "/customers",
            ]
            .iter()
            .any(|p| under(p))
                || (read
                    && ["/queues", "/audit", "/cluster", "/sip", "/stats"]
                        .iter()
                        .any(|p| under(p)))
        }
        Role::Agent => false,
    }
}

/// The caller's role, beside [`Caller`] (their name).
#[derive(Clone, Copy)]
pub struct CallerRole(pub Role);

/// What a request presented: an API token, a session cookie, or nothing.
enum Presented {
    Token(String),
    Session(String),
    Nothing,
}

fn presented(headers: &HeaderMap, query: Option<&str>) -> Presented {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        // Browsers cannot set headers on a WebSocket: a token may come as `?token=`.
        .or_else(|| {
            query
                .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("token=")))
                .map(str::to_string)
        });
    if let Some(token) = bearer {
        return Presented::Token(token);
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(&format!("{SESSION_COOKIE}=")))
        .map(str::to_string);
    cookie.map_or(Presented::Nothing, Presented::Session)
}

fn refused(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::Wrong => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong credentials: send `Authorization: Bearer sbt_...` with your API token (the first admin's is in <data-dir>/admin.token), or sign in at /auth/sign-in",
        ),
        Refusal::Disabled(_) => {
            ApiError::new(StatusCode::FORBIDDEN, "user_disabled", refusal.to_string())
        }
        Refusal::Expired(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "token_expired",
            refusal.to_string(),
        ),
    }
}

/// The person behind a request's credentials: an API token, or a browser session whose
/// changes (anything but GET and HEAD) carry its CSRF token. What is needed of the request is
/// taken before the check waits, so the future holds no borrow of it.
pub fn principal_of(
    rt: &Arc<Runtime>,
    request: &Request,
) -> impl std::future::Future<Output = Result<Principal, ApiError>> + Send + use<> {
    let safe = matches!(*request.method(), Method::GET | Method::HEAD);
    let csrf = request
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let presented = presented(request.headers(), request.uri().query());
    let foreign = foreign_origin(request.headers());
    let rt = rt.clone();
    async move {
        if let (Presented::Session(_), Some(origin)) = (&presented, foreign) {
            // Browsers name the page behind every WebSocket and cross-site request: a session
            // used from another site's page (a sibling subdomain too) is refused.
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                format!(
                    "a page of {origin} may not use a Switchboard session: open the desk or the console from this server"
                ),
            ));
        }
        checked(&rt, presented, safe, csrf).await
    }
}

/// The request's `Origin` when it names another host than the one asked (`Host`).
fn foreign_origin(headers: &HeaderMap) -> Option<String> {
    let origin = headers.get(header::ORIGIN)?.to_str().ok()?;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let named = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    (Some(named) != host).then(|| origin.to_string())
}

async fn checked(
    rt: &Arc<Runtime>,
    presented: Presented,
    safe: bool,
    csrf: Option<String>,
) -> Result<Principal, ApiError> {
    match presented {
        Presented::Token(token) => {
            let rt = rt.clone();
            blocking(move || Ok(rt.admin().people().by_token(&token)?))
                .await?
                .map_err(refused)
        }
        Presented::Session(cookie) => {
            let rt = rt.clone();
            let Some(found) =
                blocking(move || Ok(rt.admin().people().by_session(&cookie)?)).await?
            else {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "session_over",
                    "your session is over (signed out, expired, or the user was changed): sign in again at /auth/sign-in",
                ));
            };
            let who = found.who.map_err(refused)?;
            let matches = csrf
                .is_some_and(|c| crate::tokens::same_secret(c.as_bytes(), found.csrf.as_bytes()));
            if !safe && !matches {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf",
                    "this change carries no valid CSRF token: send the session's token (from /auth/session) in the X-CSRF-Token header",
                ));
            }
            Ok(who)
        }
        Presented::Nothing => Err(refused(Refusal::Wrong)),
    }
}

/// `/v1`'s gate: who is calling, and may their role call this route?
pub async fn authenticate(State(rt): Api, mut request: Request, next: Next) -> Answer {
    let who = principal_of(&rt, &request).await?;
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| request.uri().path().to_string());
    if !allowed(who.role, request.method(), &path) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{} is a {}, who may not {} {path}: ask an admin for a role that may",
                who.person,
                who.role,
                request.method()
            ),
        ));
    }
    within_rate(&rt, &format!("user:{}", who.person))?;
    request.extensions_mut().insert(Caller(who.person));
    request.extensions_mut().insert(CallerRole(who.role));
    Ok(next.run(request).await)
}

/// Requests per person (and per agent) over `api.requests_per_second`: 429 with
/// `Retry-After`.
pub fn within_rate(rt: &Runtime, key: &str) -> Result<(), ApiError> {
    static LIMITER: OnceLock<crate::rate::Limiter<String>> = OnceLock::new();
    let limiter =
        LIMITER.get_or_init(|| crate::rate::Limiter::new(rt.config().api.requests_per_second));
    limiter
        .admit(&key.to_string(), Instant::now())
        .map_err(|wait| {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "more than {} requests a second: slow down and try again in {secs} s",
                    rt.config().api.requests_per_second
                ),
            )
            .retry_after(secs)
        })
}

/// The people routes, admins only (by [`allowed`]), and `/me` for everyone.
pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/me", get(me))
        .route("/users", get(list_users).post(create_user))
        .route(
            "/users/{name}",
            get(show_user).patch(change_user).delete(delete_user),
        )
        .route("/users/{name}/tokens", get(user_tokens).post(create_token))
        .route("/tokens", get(all_tokens))
        .route("/tokens/{id}", axum::routing::delete(revoke_token))
}

/// The browser's doors: sign in, sign out, the current session. No credentials needed.
pub fn auth_routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route("/auth/sign-in", post(sign_in))
        .route("/auth/sign-out", post(sign_out))
        .route("/auth/session", get(session))
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        let (status, code) = match &e {
            UserError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_user"),
            UserError::UnknownUser(_) => (StatusCode::NOT_FOUND, "unknown_user"),
            UserError::UnknownToken(_) => (StatusCode::NOT_FOUND, "unknown_token"),
            UserError::Exists(_) => (StatusCode::CONFLICT, "user_exists"),
            UserError::LastAdmin(_) => (StatusCode::CONFLICT, "last_admin"),
            UserError::Store(_) => {
                let UserError::Store(s) = e else {
                    unreachable!()
                };
                return ApiError::from(s);
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// Who the caller is: `{person, role}`.
#[utoipa::path(get, path = "/v1/me", tag = "people",
    responses((status = 200, description = "`{\"person\", \"role\"}`", body = Object)))]
async fn me(
    Extension(Caller(who)): Extension<Caller>,
    Extension(CallerRole(role)): Extension<CallerRole>,
) -> Answer {
    ok(StatusCode::OK, json!({"person": who, "role": role}))
}

/// Every user with their role (never a password hash).
#[utoipa::path(get, path = "/v1/users", tag = "people",
    responses((status = 200, description = "The users", body = Vec<crate::users::UserView>)))]
async fn list_users(State(rt): Api) -> Answer {
    let users = blocking(move || Ok(rt.admin().people().list()?)).await?;
    ok(StatusCode::OK, users)
}

/// One user.
#[utoipa::path(get, path = "/v1/users/{name}", tag = "people",
    params(("name" = String, Path, description = "The user's name")),
    responses(
        (status = 200, description = "The user", body = crate::users::UserView),
        (status = 404, description = "No such user", body = super::openapi::ErrorBody)))]
async fn show_user(State(rt): Api, Path(name): Path<String>) -> Answer {
    let user = blocking(move || {
        rt.admin()
            .people()
            .get(&name)?
            .ok_or_else(|| UserError::UnknownUser(name).into())
    })
    .await?;
    ok(StatusCode::OK, user)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewUser {
    /// Their name (to sign in with, and in the audit trail).
    name: String,
    /// What they may do.
    role: Role,
    /// To sign in in a browser; none: API tokens only.
    #[serde(default)]
    password: Option<String>,
}

/// Creates a user with a role (and a password to sign in in a browser).
#[utoipa::path(post, path = "/v1/users", tag = "people", request_body = NewUser,
    responses(
        (status = 201, description = "The user", body = crate::users::UserView),
        (status = 400, description = "A bad name, role or password (`invalid_user`)", body = super::openapi::ErrorBody),
        (status = 409, description = "The name is taken (`user_exists`)", body = super::openapi::ErrorBody)))]
async fn create_user(
    State(rt): Api,
    Extension(Caller(who)): Extension<Caller>,
    AppJson(new): AppJson<NewUser>,
) -> Answer {
    let user = blocking(move || {
        Ok(rt
            .admin()
            .people()
            .create(&new.name, new.role, new.password.as_deref(), &who)?)
    })
    .await?;
    ok(StatusCode::CREATED, user)
}

/// Changes a user's role, password or whether they are disabled.
#[utoipa::path(patch, path = "/v1/users/{name}", tag = "people",
    params(("name" = String, Path, description = "The user's name")),
    request_body = crate::users::UserChange,
    responses(
        (status = 200, description = "The user", body = crate::users::UserView),
        (status = 400, description = "A bad role or password (`invalid_user`)", body = super::openapi::ErrorBody),
        (status = 404, description = "No such user", body = super::openapi::ErrorBody),
        (status = 409, description = "It would leave no admin (`last_admin`)", body = super::openapi::ErrorBody)))]
async fn change_user(
    State(rt): Api,
    Extension(Caller(who)): Extension<Caller>,
    Path(name): Path<String>,
    AppJson(change): AppJson<UserChange>,
) -> Answer {
    let user = blocking(move || Ok(rt.admin().people().change(&name, &change, &who)?)).await?;
    ok(StatusCode::OK, user)
}

/// Deletes a user and their tokens.
#[utoipa::path(delete, path = "/v1/users/{name}", tag = "people",
    params(("name" = String, Path, description = "The user's name")),
    responses(
        (status = 200, description = "`{\"deleted\": true}`", body = Object),
        (status = 404, description = "No such user", body = super::openapi::ErrorBody),
        (status = 409, description = "It would leave no admin (`last_admin`)", body = super::openapi::ErrorBody)))]
async fn delete_user(
    State(rt): Api,
    Extension(Caller(who)): Extension<Caller>,
    Path(name): Path<String>,
) -> Answer {
    blocking(move || Ok(rt.admin().people().delete(&name, &who)?)).await?;
    ok(StatusCode::OK, json!({"deleted": true}))
}

/// A user's API tokens (never their secrets).
#[utoipa::path(get, path = "/v1/users/{name}/tokens", tag = "people",
    params(("name" = String, Path, description = "The user's name")),
    responses(
        (status = 200, description = "The tokens", body = Vec<crate::tokens::TokenView>),
        (status = 404, description = "No such user", body = super::openapi::ErrorBody)))]
async fn user_tokens(State(rt): Api, Path(name): Path<String>) -> Answer {
    let tokens = blocking(move || Ok(rt.admin().people().tokens(Some(&name))?)).await?;
    ok(StatusCode::OK, tokens)
}

/// Every API token (never their secrets).
#[utoipa::path(get, path = "/v1/tokens", tag = "people",
    responses((status = 200, description = "The tokens", body = Vec<crate::tokens::TokenView>)))]
async fn all_tokens(State(rt): Api) -> Answer {
    let tokens = blocking(move || Ok(rt.admin().people().tokens(None)?)).await?;
    ok(StatusCode::OK, tokens)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewToken {
    /// What it is for (`laptop`, `crm-sync`).
    #[serde(default)]
    label: String,
    /// RFC 3339.
    #[serde(default)]
    expires_at: Option<String>,
}

/// Makes an API token for a user: its secret is in this answer only.
#[utoipa::path(post, path = "/v1/users/{name}/tokens", tag = "people",
    params(("name" = String, Path, description = "The user's name")),
    request_body = NewToken,
    responses(
        (status = 201, description = "`{\"id\", \"token\"}`: the secret, shown once", body = Object),
        (status = 400, description = "A bad expiry time (`invalid_user`)", body = super::openapi::ErrorBody),
        (status = 404, description = "No such user", body = super::openapi::ErrorBody)))]
async fn create_token(
    State(rt): Api,
    Extension(Caller(who)): Extension<Caller>,
    Path(name): Path<String>,
    AppJson(new): AppJson<NewToken>,
) -> Answer {
    let (id, token) = blocking(move || {
        Ok(rt
            .admin()
            .people()
            .create_token(&name, &new.label, new.expires_at, &who)?)
    })
    .await?;
    ok(
        StatusCode::CREATED,
        json!({"id": id, "token": token, "note": "shown once: store it now"}),
    )
}

/// Revokes an API token at once.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "people",
    params(("id" = String, Path, description = "The token's id")),
    responses(
        (status = 200, description = "`{\"revoked\": true}`", body = Object),
        (status = 404, description = "No such token", body = super::openapi::ErrorBody)))]
async fn revoke_token(
    State(rt): Api,
    Extension(Caller(who)): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    blocking(move || Ok(rt.admin().people().revoke_token(&id, &who)?)).await?;
    ok(StatusCode::OK, json!({"revoked": true}))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SignIn {
    /// The user's name.
    name: String,
    /// Their password.
    password: String,
}

/// Failed sign-ins per name: how many, since when.
fn failures() -> &'static Mutex<HashMap<String, (u32, Instant)>> {
    static FAILURES: OnceLock<Mutex<HashMap<String, (u32, Instant)>>> = OnceLock::new();
    FAILURES.get_or_init(Default::default)
}

/// Counts a sign-in attempt for `name` before its password is checked (so that parallel
/// attempts cannot slip past the limit); `Err` with the seconds to wait when it failed too
/// often lately. A success clears the count ([`succeeded`]).
fn attempt(name: &str) -> Result<(), u64> {
    let mut failures = failures().lock().unwrap_or_else(|p| p.into_inner());
    failures.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
    let entry = failures
        .entry(name.to_string())
        .or_insert((0, Instant::now()));
    if entry.0 >= MAX_FAILURES {
        return Err((FAILURE_WINDOW - entry.1.elapsed()).as_secs().max(1));
    }
    entry.0 += 1;
    Ok(())
}

fn succeeded(name: &str) {
    failures()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(name);
}

/// Password checks under way at once, at most: each takes a memory-hard hash's memory, so a
/// burst of sign-ins waits its turn rather than exhausting the machine.
fn checks() -> &'static tokio::sync::Semaphore {
    static CHECKS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    CHECKS.get_or_init(|| tokio::sync::Semaphore::new(4))
}

fn session_cookie(value: &str, max_age: u64) -> String {
    format!("{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}")
}

/// Signs a person in: sets the session cookie and answers its CSRF token.
#[utoipa::path(post, path = "/auth/sign-in", tag = "people", request_body = SignIn,
    responses(
        (status = 200, description = "`{\"person\", \"role\", \"csrf\"}` and the `sb_session` cookie", body = Object),
        (status = 401, description = "Wrong name or password, or a disabled user", body = super::openapi::ErrorBody),
        (status = 429, description = "5 tries for this name in 5 minutes: wait as Retry-After says", body = super::openapi::ErrorBody),
        (status = 503, description = "Too many password checks at once: try again", body = super::openapi::ErrorBody)))]
async fn sign_in(State(rt): Api, AppJson(form): AppJson<SignIn>) -> Result<Response, ApiError> {
    if let Err(wait) = attempt(&form.name) {
        let mut answer = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failures",
            format!(
                "{MAX_FAILURES} wrong passwords for {} in a row: try again in {wait} s",
                form.name
            ),
        )
        .into_response();
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, wait.into());
        return Ok(answer);
    }
    let name = form.name.clone();
    let _turn = checks().acquire().await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the server is stopping: sign in again in a moment",
        )
    })?;
    let opened = blocking(move || {
        let people = rt.admin().people();
        match people.sign_in(&form.name, &form.password)? {
            Ok(who) => {
                let (cookie, csrf) = people.open_session(&who.person, SESSION_SECS * 1000)?;
                Ok(Ok((who, cookie, csrf)))
            }
            Err(refusal) => Ok(Err(refusal)),
        }
    })
    .await?;
    let (who, cookie, csrf) = match opened {
        Ok(opened) => opened,
        Err(refusal) => {
            return Err(match refusal {
                Refusal::Wrong => ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "wrong_password",
                    "wrong name or password",
                ),
                other => refused(other),
            });
        }
    };
    succeeded(&name);
    let body = json!({"person": who.person, "role": who.role, "csrf": csrf});
    let mut answer = ok(StatusCode::OK, body)?;
    if let Ok(value) = session_cookie(&cookie, SESSION_SECS).parse() {
        answer.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(answer)
}

/// Ends the browser's session (its cookie is cleared).
#[utoipa::path(post, path = "/auth/sign-out", tag = "people",
    responses((status = 200, description = "`{\"signed_out\": true}`", body = Object)))]
async fn sign_out(State(rt): Api, headers: HeaderMap) -> Answer {
    if let Presented::Session(cookie) = presented(&headers, None) {
        blocking(move || Ok(rt.admin().people().close_session(&cookie)?)).await?;
    }
    let mut answer = ok(StatusCode::OK, json!({"signed_out": true}))?;
    if let Ok(value) = session_cookie("", 0).parse() {
        answer.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(answer)
}

/// The signed-in person and the session's CSRF token, for a page loaded afresh.
/// The browser's session: who is signed in, and its CSRF token.
#[utoipa::path(get, path = "/auth/session", tag = "people",
    responses(
        (status = 200, description = "`{\"person\", \"role\", \"csrf\"}`", body = Object),
        (status = 401, description = "Not signed in, or the session is over", body = super::openapi::ErrorBody)))]
async fn session(State(rt): Api, headers: HeaderMap) -> Answer {
    let Presented::Session(cookie) = presented(&headers, None) else {
        return Err(refused(Refusal::Wrong));
    };
    let found = blocking(move || Ok(rt.admin().people().by_session(&cookie)?)).await?;
    let Some(users::SessionFound { who, csrf }) = found else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "session_over",
            "your session is over: sign in again at /auth/sign-in",
        ));
    };
    let who = who.map_err(refused)?;
    ok(
        StatusCode::OK,
        json!({"person": who.person, "role": who.role, "csrf": csrf}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_reach_only_their_routes() {
        let get = Method::GET;
        let put = Method::PUT;
        let post = Method::POST;
        assert!(allowed(Role::Admin, &post, "/v1/users"));
        assert!(!allowed(Role::Supervisor, &get, "/v1/users"));
        assert!(!allowed(Role::Developer, &get, "/v1/tokens"));
        assert!(allowed(Role::Supervisor, &put, "/v1/queues/{name}"));
        assert!(allowed(Role::Supervisor, &post, "/v1/tasks/{id}/move"));
        assert!(allowed(Role::Supervisor, &get, "/v1/flows"));
        assert!(!allowed(
            Role::Supervisor,
            &post,
            "/v1/flows/{flow}/versions"
        ));
        assert!(allowed(Role::Developer, &post, "/v1/flows/{flow}/versions"));
        assert!(allowed(Role::Developer, &post, "/v1/flows/{flow}/rollback"));
        assert!(!allowed(Role::Developer, &put, "/v1/queues/{name}"));
        assert!(allowed(Role::Developer, &get, "/v1/queues"));
        assert!(!allowed(Role::Agent, &get, "/v1/queues"));
        assert!(allowed(Role::Agent, &get, "/v1/me"));
        // A prefix is a whole segment: /flows does not open /flowsx.
        assert!(!allowed(Role::Developer, &get, "/v1/flowsx"));
    }

    #[test]
    fn tries_are_counted_before_the_check_and_a_success_clears_them() {
        for _ in 0..MAX_FAILURES {
            assert_eq!(attempt("mallory-test"), Ok(()));
        }
        assert!(attempt("mallory-test").is_err_and(|s| s > 0));
        assert_eq!(attempt("someone-else-test"), Ok(()));
        succeeded("someone-else-test");
        for _ in 0..MAX_FAILURES {
            assert_eq!(attempt("someone-else-test"), Ok(()));
        }
    }
}

/// The operations of this module (see `openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    me,
    list_users,
    show_user,
    create_user,
    change_user,
    delete_user,
    user_tokens,
    all_tokens,
    create_token,
    revoke_token,
    sign_in,
    sign_out,
    session
))]
pub(super) struct Doc;
