//! The pages people use in the browser: the sign-in form and the agent desk, served from
//! the binary itself (no CDN: they work with no internet). A signed-out browser asking for
//! the desk is sent to the sign-in form; a person who is not an agent is refused.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::{Api, blocking};
use crate::runtime::Runtime;
use crate::users::Role;

const SIGN_IN: &str = include_str!("assets/sign-in.html");
const DESK: &str = include_str!("assets/desk.html");
const CONSOLE: &str = include_str!("assets/console.html");
/// Scripts and styles, by the name they are served under (`/assets/NAME`).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "switchboard.css",
        "text/css; charset=utf-8",
        include_str!("assets/switchboard.css"),
    ),
    (
        "sign-in.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/sign-in.js"),
    ),
    (
        "desk.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/desk.js"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    ),
    // Chart.js 4.5.1 (MIT, assets/vendor/chart.js-LICENSE.md), shipped in the binary so the
    // console's charts need no CDN.
    (
        "chart.umd.min.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/vendor/chart.umd.min.js"),
    ),
    // Redoc 2.5.4 (MIT, assets/vendor/redoc-LICENSE.md) renders the API reference
    // (`/reference`) from the node's own /openapi.json, with no CDN.
    (
        "redoc.standalone.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/vendor/redoc.standalone.js"),
    ),
    (
        "reference.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/reference.js"),
    ),
];
/// Our pages load only their own scripts, styles and connections.
const POLICY: &str =
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'";

pub fn routes() -> Router<Arc<Runtime>> {
    Router::new()
        .route(
            "/sign-in",
            get(|| async { page(StatusCode::OK, SIGN_IN.to_string()) }),
        )
        .route("/desk", get(desk))
        .route("/console", get(console))
        .route("/assets/{name}", get(asset))
}

fn page(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

/// The pages' scripts and styles (and the vendored Chart.js and Redoc), served by the node.
#[utoipa::path(get, path = "/assets/{name}", tag = "pages",
    params(("name" = String, Path, description = "The file's name, such as desk.js")),
    responses(
        (status = 200, description = "The file", content((String = "text/javascript"), (String = "text/css"))),
        (status = 404, description = "No such asset", body = super::openapi::ErrorBody)))]
async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => ([(header::CONTENT_TYPE, *kind)], *body).into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// The desk, for agents.
#[utoipa::path(get, path = "/desk", tag = "pages", responses(
    (status = 200, description = "The agent desk", content_type = "text/html", body = String),
    (status = 303, description = "Not signed in: to /sign-in, coming back here"),
    (status = 403, description = "Signed in, but not an agent", content_type = "text/html", body = String)))]
async fn desk(State(rt): Api, headers: HeaderMap) -> Response {
    gated(rt, &headers, "/desk", DESK, "The desk is for agents", |r| {
        r == Role::Agent
    })
    .await
}

/// The console, for admins, supervisors and developers.
#[utoipa::path(get, path = "/console", tag = "pages", responses(
    (status = 200, description = "The console", content_type = "text/html", body = String),
    (status = 303, description = "Not signed in: to /sign-in, coming back here"),
    (status = 403, description = "Signed in as an agent", content_type = "text/html", body = String)))]
async fn console(State(rt): Api, headers: HeaderMap) -> Response {
    gated(
        rt,
        &headers,
        "/console",
        CONSOLE,
        "The console is for supervisors, developers and admins",
        |r| r != Role::Agent,
    )
    .await
}

/// `html` for a signed-in person whose role `fits`; the sign-in form (coming back to `path`)
/// for anyone not signed in; 403 for the others.
async fn gated(
    rt: Arc<Runtime>,
    headers: &HeaderMap,
    path: &str,
    html: &str,
    who_for: &str,
    fits: fn(Role) -> bool,
) -> Response {
    let back = Redirect::to(&format!("/sign-in?next={path}")).into_response();
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{}=", super::people::SESSION_COOKIE))
        })
        .map(str::to_string);
    let Some(cookie) = cookie else {
        return back;
    };
    let found = blocking(move || Ok(rt.admin().people().by_session(&cookie)?)).await;
    match found {
        Ok(Some(found)) => match found.who {
            Ok(who) if fits(who.role) => page(StatusCode::OK, html.to_string()),
            Ok(who) => page(
                StatusCode::FORBIDDEN,
                format!(
                    "<!doctype html><title>Not for you</title><p>{who_for}; {} is a {}. <a href=\"/sign-in\">Sign in as someone else</a>.</p>",
                    who.person, who.role
                ),
            ),
            Err(_) => back,
        },
        Ok(None) => back,
        Err(e) => e.into_response(),
    }
}

/// The sign-in form (`?next=` is where it goes once signed in).
#[utoipa::path(get, path = "/sign-in", tag = "pages",
    responses((status = 200, description = "The form", content_type = "text/html", body = String)))]
#[allow(dead_code)]
fn sign_in_doc() {}

/// The operations of this module (see `openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(sign_in_doc, desk, console, asset))]
pub(super) struct Doc;
