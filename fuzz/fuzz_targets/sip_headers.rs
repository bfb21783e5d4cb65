//! Header values as peers write them (To, From, Contact, Refer-To, Via, WWW-Authenticate):
//! parameters, URIs, users and host:port pulled out or not, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_sip::message::{host_port_of, param, uri_of, user_of};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let uri = uri_of(value);
    let _ = user_of(uri);
    let _ = host_port_of(uri);
    for name in [
        "tag",
        "branch",
        "expires",
        "transport",
        "lr",
        "realm",
        "nonce",
    ] {
        let _ = param(value, name);
    }
});
