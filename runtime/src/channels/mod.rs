//! Channels: where contacts come from and where their actions are carried out. Each channel
//! turns its protocol into contact events and renders step actions back into it; none of them
//! runs a flow itself (that is [`crate::sessions`]).

pub mod chat;
pub mod sip;
pub mod terminal;
pub mod twilio;
