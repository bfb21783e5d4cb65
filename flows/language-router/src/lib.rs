//! A routing decision written as code, for the `router` world of `wit/router.wit`. Deployed as
//! the flow named `router`, it plans every new task:
//! - a task whose `language` is not English is first offered only to agents who speak it,
//!   for 20 seconds (setting `language_wait_secs`), then to everyone in the queue;
//! - a VIP (`tier` = `vip`) gets 10 more priority points.

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "router",
    });
}

// Shared with the 0.1.0 build of this router (see route.rs).
include!("route.rs");
