//! Channels: where contacts come from and where their actions are carried out. Each channel
//! turns its protocol into contact events and renders step actions back into it; none of them
//! runs a flow itself (that is [`crate::sessions`]). Steps a channel did not ask for (a flow
//! hearing task news) reach it as step reports it subscribes to ([`follow_reports`]); the core
//! never calls a channel.

pub mod chat;
pub mod sip;
pub mod terminal;
pub mod twilio;

/// Renders, with `deliver`, every step report the sessions publish (steps of task news),
/// until the sessions go away. Needs a Tokio runtime.
pub fn follow_reports(
    mut reports: tokio::sync::broadcast::Receiver<crate::sessions::StepReport>,
    channel: &'static str,
    deliver: impl Fn(&crate::sessions::StepReport) + Send + 'static,
) {
    use tokio::sync::broadcast::error::RecvError;
    tokio::spawn(async move {
        loop {
            match reports.recv().await {
                Ok(report) => deliver(&report),
                Err(RecvError::Lagged(missed)) => {
                    tracing::error!(
                        channel,
                        missed,
                        "the channel fell behind the step reports; some contacts did not see their flow's answer to task news"
                    );
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}
