//! SIP (RFC 3261) messages, SDP offers and answers (RFC 4566, 3264), RTP packets with RFC 4733
//! telephone events, and G.711 audio: what Switchboard's voice channel reads from and writes to
//! the wire, with no sockets, no clock of its own and no runtime. Anything malformed is an
//! error that says what was wrong, never a panic; the fuzz targets in `fuzz/` hold it to that.
#![deny(missing_docs)]

pub mod g711;
pub mod message;
pub mod rtp;
pub mod sdp;
