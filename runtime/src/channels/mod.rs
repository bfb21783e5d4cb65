//! Channels: where contacts come from and where their actions are carried out. Each channel
//! turns its protocol into contact events and renders step actions back into it; none of them
//! runs a flow itself (that is [`crate::sessions`]). Steps a channel did not ask for (a flow
//! hearing task news) reach it as step reports it subscribes to ([`follow_reports`]); the core
//! never calls a channel.

pub mod chat;
pub mod email;
pub mod sip;
pub mod terminal;
pub mod twilio;

/// Renders, with `deliver`, every step report the sessions publish (steps of task news),
/// until the sessions go away. Needs a Tokio runtime.
pub fn follow_reports(
    mut reports: tokio::sync::mpsc::UnboundedReceiver<crate::sessions::StepReport>,
    deliver: impl Fn(&crate::sessions::StepReport) + Send + 'static,
) {
    tokio::spawn(async move {
        while let Some(report) = reports.recv().await {
            deliver(&report);
        }
    });
}
