//! RTP packets on the wire: the header Switchboard sends, parsing what it receives (CSRCs,
//! extensions and padding skipped), and RFC 4733 telephone events turned into key presses.

use std::time::{Duration, Instant};

/// A 12-byte RTP header (version 2, no CSRC, no extension).
pub fn header(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = 0x80;
    h[1] = pt | if marker { 0x80 } else { 0 };
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[4..8].copy_from_slice(&ts.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    h
}

/// A received RTP packet's header fields and payload.
#[derive(Debug, PartialEq)]
pub struct Packet<'a> {
    /// Payload type.
    pub pt: u8,
    /// Marker bit.
    pub marker: bool,
    /// Timestamp.
    pub timestamp: u32,
    /// Payload.
    pub payload: &'a [u8],
}

/// Parses an RTP packet; `None` when it is not one.
pub fn parse(bytes: &[u8]) -> Option<Packet<'_>> {
    if bytes.len() < 12 || bytes[0] >> 6 != 2 {
        return None;
    }
    let csrc = usize::from(bytes[0] & 0x0f);
    let mut start = 12 + csrc * 4;
    if bytes[0] & 0x10 != 0 {
        let ext = bytes.get(start + 2..start + 4)?;
        start += 4 + usize::from(u16::from_be_bytes([ext[0], ext[1]])) * 4;
    }
    let mut end = bytes.len();
    if bytes[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*bytes.last()?))?;
    }
    let payload = bytes.get(start..end)?;
    Some(Packet {
        pt: bytes[1] & 0x7f,
        marker: bytes[1] & 0x80 != 0,
        timestamp: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        payload,
    })
}

/// The digit of an RFC 4733 event code.
pub fn event_digit(code: u8) -> Option<char> {
    match code {
        0..=9 => Some(char::from(b'0' + code)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + code - 12)),
        _ => None,
    }
}

/// Turns telephone-event packets into presses: a press is reported once, at its first end
/// packet (senders repeat the end packet three times). A press with the timestamp of the last
/// one counts only after a guard time, since replayed captures reuse timestamps.
#[derive(Default)]
pub struct DtmfDetector {
    last: Option<(u32, Instant)>,
}

impl DtmfDetector {
    /// Feeds one telephone-event payload.
    pub fn feed(&mut self, timestamp: u32, payload: &[u8], now: Instant) -> Option<char> {
        let [code, flags, ..] = *payload else {
            return None;
        };
        if flags & 0x80 == 0 {
            return None;
        }
        if let Some((ts, at)) = self.last
            && ts == timestamp
            && now.duration_since(at) < Duration::from_millis(300)
        {
            return None;
        }
        self.last = Some((timestamp, now));
        event_digit(code)
    }
}
