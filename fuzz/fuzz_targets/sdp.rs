//! Any SDP body an INVITE or re-INVITE may carry: negotiated or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_sip::sdp::negotiate;

fuzz_target!(|data: &[u8]| {
    let _ = negotiate(data);
});
