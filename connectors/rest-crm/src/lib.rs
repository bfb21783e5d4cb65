//! A CRM connector for a plain REST CRM.
//!
//! Deployed as the flow `crm`, it answers every flow's `crm.lookup` by asking the CRM:
//!
//! | lookup | request |
//! |---|---|
//! | by phone | `GET {base_url}/customers?phone=%2B15551230001` |
//! | by e-mail | `GET {base_url}/customers?email=ada%40example.com` |
//! | by id | `GET {base_url}/customers/{id}` |
//!
//! The CRM answers with a customer object, a list of them (the first one counts), or such a
//! list under `customers`, `data` or `results`; an empty list or HTTP 404 means "no such
//! customer". A customer has `id` and `name` (or `first_name` and `last_name`), optionally
//! `phone`, `email` and `tier`; its other scalar fields become attributes.
//!
//! Settings (`switchboard settings crm KEY=VALUE`): `base_url` (required, http or https),
//! `api_key` (sent as `Authorization: Bearer ...`, when set), `tier_field` (the field holding
//! the tier, when it is not `tier`).

// Natively (unit tests) only the parsing is compiled; the component is wasm32 only.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

mod customer;
mod request;

#[cfg(target_arch = "wasm32")]
mod connector;
