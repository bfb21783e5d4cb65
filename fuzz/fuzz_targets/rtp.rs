//! Any datagram on an RTP port: parsed or dropped, never a panic; telephone events in it are
//! turned into presses or ignored; G.711 payloads decode.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use switchboard_sip::g711;
use switchboard_sip::rtp::{DtmfDetector, parse};

fuzz_target!(|data: &[u8]| {
    let Some(packet) = parse(data) else {
        return;
    };
    assert!(packet.payload.len() <= data.len());
    let mut dtmf = DtmfDetector::default();
    let now = Instant::now();
    let _ = dtmf.feed(packet.timestamp, packet.payload, now);
    let _ = dtmf.feed(packet.timestamp, packet.payload, now);
    for &byte in packet.payload {
        assert_eq!(
            g711::ulaw_encode(g711::ulaw_decode(byte)),
            g711::ulaw_encode(g711::ulaw_decode(g711::ulaw_encode(g711::ulaw_decode(
                byte
            ))))
        );
        let _ = g711::alaw_to_ulaw(g711::ulaw_to_alaw(byte));
        let _ = g711::alaw_decode(byte);
    }
});
