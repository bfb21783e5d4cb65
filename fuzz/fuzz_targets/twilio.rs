//! Any webhook body and signature anyone may post to `/twilio/...`: the form is read or
//! refused, never a panic; a signature is checked without a panic whatever it holds, the
//! right one always passes, and a changed URL never does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_wire::twilio;

fuzz_target!(|data: &[u8]| {
    // The body, then (after a NUL) the presented signature.
    let (body, presented) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(params) = twilio::form(body) else {
        return;
    };
    let presented = String::from_utf8_lossy(presented);
    let url = "https://cc.example.com/twilio/voice?x=1";
    let _ = twilio::verify("token", url, &params, &presented);
    let right = twilio::sign("token", url, &params);
    assert!(twilio::verify("token", url, &params, &right));
    assert!(!twilio::verify(
        "token",
        "https://cc.example.com/twilio/sms",
        &params,
        &right
    ));
});
