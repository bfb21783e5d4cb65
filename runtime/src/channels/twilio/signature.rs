//! `X-Twilio-Signature`: see [`switchboard_wire::twilio`], where the form and the signature are
//! read (apart from the runtime, so the fuzz targets reach them).

pub use switchboard_wire::twilio::{sign, verify};
