//! The component: `crm.lookup` over `wasi:http`.

wit_bindgen::generate!({
    path: "../../wit",
    world: "crm-connector",
    generate_all,
});

// Shared with the 0.1.0 build of this connector (see lookup.rs).
include!("lookup.rs");
