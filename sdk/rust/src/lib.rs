//! Write Switchboard contact flows in plain Rust.
//!
//! A flow is a step function: Switchboard calls it once per event of a contact (the call
//! started, the caller pressed digits, a message arrived...) and it answers with the actions
//! to take. Between two events the flow remembers what it needs in a typed state of its own,
//! which this crate serialises for you.
//!
//! ```
//! use switchboard_sdk::prelude::*;
//!
//! #[derive(Default, serde::Serialize, serde::Deserialize)]
//! pub struct Menu {
//!     attempts: u32,
//! }
//!
//! impl Flow for Menu {
//!     fn handle(&mut self, cx: &mut Context<'_>, event: Event) -> Result<Vec<Action>, FlowError> {
//!         Ok(match event {
//!             Event::Started => vec![
//!                 Action::say("Thanks for calling."),
//!                 Action::gather(Gather::digits(1).say("Press 1 for sales.")),
//!             ],
//!             Event::Input(input) if input.digits == "1" => vec![Action::enqueue("sales")],
//!             _ => vec![Action::say("Goodbye."), Action::Hangup],
//!         })
//!     }
//! }
//!
//! // In the flow crate: `switchboard_sdk::export_flow!(Menu);`
//! let mut call = switchboard_sdk::testing::Conversation::<Menu>::voice("+15551230000", "+15550100");
//! let actions = call.start();
//! assert_eq!(actions[0], Action::say("Thanks for calling."));
//! assert_eq!(call.press("1")[0], Action::enqueue("sales"));
//! ```
#![deny(missing_docs)]

mod actions;
mod context;
pub mod testing;

/// The bindings generated from the `switchboard:flow` WIT contract. Flow authors rarely need
/// them directly: [`prelude`] re-exports the types and [`Context`] wraps the host calls.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "flow",
        pub_export_macro: true,
        export_macro_name: "__export_flow_world",
        default_bindings_module: "switchboard_sdk::bindings",
        additional_derives: [PartialEq],
    });
}

pub use actions::GatherBuilder as Gather;
pub use bindings::switchboard::flow::clock::{LocalTime, Weekday};
pub use bindings::switchboard::flow::crm::{Customer, LookupKey};
pub use bindings::switchboard::flow::log::Level;
pub use bindings::switchboard::flow::types::{
    Action, Attachment, Channel, Contact, Enqueue, Event, FlowError, Input, Mail, Prompt,
    QueueWait, Say, Step, TaskOutcome, TaskStatus,
};
pub use context::{Context, Host};

/// Everything a flow author needs, in one `use`.
pub mod prelude {
    pub use crate::{
        Action, Attachment, Channel, Contact, Context, Customer, Event, Flow, FlowError, Gather,
        Input, Level, LocalTime, LookupKey, Mail, Prompt, QueueWait, TaskOutcome, TaskStatus,
        Weekday,
    };
}

/// A contact flow. The implementing type is the flow's state: it is created with `Default`
/// on the contact's first event, handed to `handle` on every event, and serialised between
/// events (as JSON, so it shows up readably in a contact's trace).
///
/// ```
/// use switchboard_sdk::prelude::*;
///
/// #[derive(Default, serde::Serialize, serde::Deserialize)]
/// struct Echo;
///
/// impl Flow for Echo {
///     fn handle(&mut self, _cx: &mut Context<'_>, event: Event) -> Result<Vec<Action>, FlowError> {
///         match event {
///             Event::Message(text) => Ok(vec![Action::send(&text)]),
///             _ => Ok(vec![]),
///         }
///     }
/// }
/// ```
pub trait Flow: Default + serde::Serialize + serde::de::DeserializeOwned {
    /// Handle one event; return the actions to take, in order.
    fn handle(&mut self, cx: &mut Context<'_>, event: Event) -> Result<Vec<Action>, FlowError>;
}

/// Runs one step of flow `F`: restores its state, handles the event, saves the state.
/// [`export_flow!`] and the [`testing`] harness both go through here, so a flow behaves the
/// same in `cargo test` and in the runtime.
pub fn run_step<F: Flow>(
    host: &mut dyn Host,
    contact: &Contact,
    state: &[u8],
    event: Event,
) -> Result<Step, FlowError> {
    let mut flow: F = if state.is_empty() {
        F::default()
    } else {
        serde_json::from_slice(state).map_err(|e| FlowError::InvalidState(e.to_string()))?
    };
    let mut cx = Context::new(contact, host);
    let actions = flow.handle(&mut cx, event)?;
    let state = serde_json::to_vec(&flow).map_err(|e| FlowError::Internal(e.to_string()))?;
    Ok(Step { actions, state })
}

/// Makes a [`Flow`] type the component's `handle` export. Put it once in the flow crate's
/// `lib.rs`; it does nothing when the crate is compiled for the host (tests, benchmarks).
///
/// ```ignore
/// switchboard_sdk::export_flow!(MyFlow);
/// ```
#[macro_export]
macro_rules! export_flow {
    ($flow:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct Component;
            impl $crate::bindings::Guest for Component {
                fn handle(
                    contact: $crate::Contact,
                    state: ::std::vec::Vec<u8>,
                    event: $crate::Event,
                ) -> ::std::result::Result<$crate::Step, $crate::FlowError> {
                    $crate::run_step::<$flow>(&mut $crate::WasmHost, &contact, &state, event)
                }
            }
    $crate::bindings::__export_flow_world!(Component with_types_in $crate::bindings);
        };
    };
}

#[doc(hidden)]
pub use context::WasmHost;
