//! A component of the right world that traps while it is being instantiated: its
//! `_initialize` export, which the component model runs at instantiation, panics.

use switchboard_sdk::prelude::*;

switchboard_sdk::export_flow!(Never);

#[derive(Default, serde::Serialize, serde::Deserialize)]
/// Hangs up at once (never reached: instantiation fails first).
pub struct Never;

impl Flow for Never {
    fn handle(&mut self, _cx: &mut Context<'_>, _event: Event) -> Result<Vec<Action>, FlowError> {
        Ok(vec![Action::Hangup])
    }
}

/// Run by the component's instantiation before any export is called.
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
pub extern "C" fn _initialize() {
    panic!("init-trap: failing during instantiation on purpose");
}
