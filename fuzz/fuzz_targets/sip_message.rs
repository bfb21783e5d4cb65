//! Any bytes on the SIP port: parsed or refused, never a panic; what parses builds back into
//! bytes that parse again to the same message, and a response to a request can always be made.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_sip::message::{Message, head_end};

fuzz_target!(|data: &[u8]| {
    let _ = head_end(data);
    let Ok(message) = Message::parse(data) else {
        return;
    };
    let _ = (
        message.call_id(),
        message.cseq(),
        message.branch(),
        message.to_tag(),
        message.from_tag(),
    );
    let bytes = message.to_bytes();
    let again = Message::parse(&bytes).expect("what we build from a parsed message parses");
    assert_eq!(again.to_bytes(), bytes, "building is stable");
    if message.is_request() {
        let _ = message
            .response(400, "Bad Request", Some("t"))
            .with_warning("fuzz")
            .to_bytes();
    }
});
