//! G.711 u-law and A-law (ITU-T G.711), encoded once when a prompt is rendered and decoded
//! only where audio is inspected; a bridge between legs of different laws transcodes each
//! byte through a table (code to code, computed once from the two codecs).

use std::sync::LazyLock;

/// u-law code to A-law code, and A-law to u-law, built once from the codecs below.
static TRANSCODE: LazyLock<([u8; 256], [u8; 256])> = LazyLock::new(|| {
    let mut to_alaw = [0u8; 256];
    let mut to_ulaw = [0u8; 256];
    for code in 0..=255u8 {
        to_alaw[usize::from(code)] = alaw_encode(ulaw_decode(code));
        to_ulaw[usize::from(code)] = ulaw_encode(alaw_decode(code));
    }
    (to_alaw, to_ulaw)
});

/// The A-law code of the sound of a u-law code.
pub fn ulaw_to_alaw(code: u8) -> u8 {
    TRANSCODE.0[usize::from(code)]
}

/// The u-law code of the sound of an A-law code.
pub fn alaw_to_ulaw(code: u8) -> u8 {
    TRANSCODE.1[usize::from(code)]
}

const BIAS: i32 = 0x84;
const CLIP: i32 = 32635;

/// 16-bit linear to u-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let exponent = (7 - ((s as u32).leading_zeros() as i32 - 17)).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// u-law to 16-bit linear.
pub fn ulaw_decode(byte: u8) -> i16 {
    let b = !byte;
    let sign = b & 0x80;
    let exponent = i32::from((b >> 4) & 0x07);
    let mantissa = i32::from(b & 0x0f);
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    (if sign != 0 { -magnitude } else { magnitude }) as i16
}

/// 16-bit linear to A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    let mut s = i32::from(sample) >> 3;
    let sign = if s >= 0 {
        0xd5
    } else {
        s = -s - 1;
        0x55
    };
    s = s.min(0x0fff);
    let code = if s < 32 {
        (s >> 1) as u8
    } else {
        let exponent = 31 - (s as u32).leading_zeros() - 4;
        (((exponent) << 4) as u8) | ((s >> exponent) & 0x0f) as u8
    };
    code ^ sign
}

/// A-law to 16-bit linear.
pub fn alaw_decode(byte: u8) -> i16 {
    let b = byte ^ 0x55;
    let exponent = i32::from((b >> 4) & 0x07);
    let mantissa = i32::from(b & 0x0f);
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    (if b & 0x80 != 0 { magnitude } else { -magnitude }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        // Values from the G.711 tables: silence, and the extremes.
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(ulaw_encode(-1), 0x7f);
        assert_eq!(ulaw_encode(32767), 0x80);
        assert_eq!(ulaw_encode(-32768), 0x00);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0xff), 0);
        assert_eq!(alaw_encode(0), 0xd5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_decode(0xd5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xaa), 32256);
        assert_eq!(alaw_decode(0x2a), -32256);
    }

    #[test]
    fn round_trips_within_the_quantisation_step() {
        for s in (-32768i32..32767).step_by(7) {
            let s = s as i16;
            let u = ulaw_decode(ulaw_encode(s));
            let a = alaw_decode(alaw_encode(s));
            let tolerance = (i32::from(s).abs() / 16).max(16);
            assert!(
                (i32::from(u) - i32::from(s)).abs() <= tolerance,
                "ulaw {s} -> {u}"
            );
            assert!(
                (i32::from(a) - i32::from(s)).abs() <= tolerance,
                "alaw {s} -> {a}"
            );
            // Every code decodes and re-encodes to itself.
        }
        for code in 0..=255u8 {
            assert_eq!(
                ulaw_encode(ulaw_decode(code)),
                if code == 0x7f { 0xff } else { code }
            );
            assert_eq!(alaw_encode(alaw_decode(code)), code);
        }
    }

    #[test]
    fn transcoding_keeps_the_sound() {
        // A 1 kHz tone through u-law -> A-law (and back) stays within one quantisation step.
        for n in 0..80 {
            let s = (12000.0 * (f64::from(n) * std::f64::consts::TAU / 8.0).sin()) as i16;
            let tolerance = (i32::from(s).abs() / 8).max(32);
            let via_alaw = alaw_decode(ulaw_to_alaw(ulaw_encode(s)));
            let via_ulaw = ulaw_decode(alaw_to_ulaw(alaw_encode(s)));
            assert!(
                (i32::from(via_alaw) - i32::from(s)).abs() <= tolerance,
                "{s} -> {via_alaw}"
            );
            assert!(
                (i32::from(via_ulaw) - i32::from(s)).abs() <= tolerance,
                "{s} -> {via_ulaw}"
            );
        }
        // Silence stays (as near as the other law has) silence.
        assert_eq!(alaw_decode(ulaw_to_alaw(0xff)).abs(), 8);
        assert!(ulaw_decode(alaw_to_ulaw(0xd5)).abs() <= 8);
    }
}
