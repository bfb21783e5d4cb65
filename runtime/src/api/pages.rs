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

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => ([(header::CONTENT_TYPE, *kind)], *body).into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// The desk for a signed-in agent; the sign-in form for anyone else not signed in.
async fn desk(State(rt): Api, headers: HeaderMap) -> Response {
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
        return Redirect::to("/sign-in?next=/desk").into_response();
    };
    let found = blocking(move || Ok(rt.admin().people().by_session(&cookie)?)).await;
    match found {
        Ok(Some(found)) => match found.who {
            Ok(who) if who.role == Role::Agent => page(StatusCode::OK, DESK.to_string()),
            Ok(who) => page(
                StatusCode::FORBIDDEN,
                format!(
                    "<!doctype html><title>Not an agent</title><p>The desk is for agents; {} is a {}. <a href=\"/sign-in\">Sign in as someone else</a>.</p>",
                    who.person, who.role
                ),
            ),
            Err(_) => Redirect::to("/sign-in?next=/desk").into_response(),
        },
        Ok(None) => Redirect::to("/sign-in?next=/desk").into_response(),
        Err(e) => e.into_response(),
    }
}
