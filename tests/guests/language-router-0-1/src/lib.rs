//! The sample language router (`flows/language-router`) built against contract 0.1.0: routers
//! deployed before 0.2.0 keep planning tasks.

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/0.1.0",
        world: "router",
    });
}

include!("../../../../flows/language-router/src/route.rs");
