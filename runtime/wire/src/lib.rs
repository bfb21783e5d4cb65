//! What Switchboard's web channels read from anyone who reaches them, before any of it means
//! anything: a Twilio webhook's form and `X-Twilio-Signature` ([`twilio`]), and the JSON
//! messages of the web chat widget's and the agent desk's sockets ([`chat`]); and what it
//! writes back to Twilio: flows' actions as TwiML ([`twiml`]). No I/O: the fuzz targets run
//! these on arbitrary bytes and arbitrary actions.

pub mod chat;
pub mod twilio;
pub mod twiml;
