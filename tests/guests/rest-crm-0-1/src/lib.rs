//! The sample REST CRM connector (`connectors/rest-crm`) built against contract 0.1.0:
//! connectors deployed before 0.2.0 keep answering lookups.

#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

#[path = "../../../../connectors/rest-crm/src/customer.rs"]
mod customer;
#[path = "../../../../connectors/rest-crm/src/request.rs"]
mod request;

#[cfg(target_arch = "wasm32")]
mod connector {
    wit_bindgen::generate!({
        path: "../../../wit/0.1.0",
        world: "crm-connector",
        generate_all,
    });

    include!("../../../../connectors/rest-crm/src/lookup.rs");
}
