//! SDP offer/answer (RFC 3264) for one audio stream: G.711 (PCMU, PCMA) and RFC 4733
//! telephone-events. Everything else in an offer is ignored; an offer with no G.711 is
//! refused by the caller of [`negotiate`].

use std::net::{IpAddr, SocketAddr};

/// A G.711 law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// u-law, payload type 0.
    Pcmu,
    /// A-law, payload type 8.
    Pcma,
}

impl Codec {
    /// Its static payload type.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
}

/// Which way media flows, as one side declares it (RFC 3264 section 6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Both ways (the default).
    SendRecv,
    /// The declaring side only sends: it put the other on hold.
    SendOnly,
    /// The declaring side only receives.
    RecvOnly,
    /// Neither way.
    Inactive,
}

impl Direction {
    /// The direction an answer declares for this offered one.
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// What an offer (or answer) asks for, reduced to what we use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Media {
    /// Where to send RTP.
    pub addr: SocketAddr,
    /// The first G.711 law in the peer's order of preference.
    pub codec: Codec,
    /// The payload type of telephone-event, when offered.
    pub dtmf: Option<u8>,
    /// The peer asked not to receive (sendonly, inactive, or a 0.0.0.0 hold).
    pub on_hold: bool,
    /// The direction the peer declared (a 0.0.0.0 hold reads as inactive).
    pub direction: Direction,
}

/// Why an offer cannot be served.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SdpError {
    /// Not SDP, or no audio line or address.
    #[error("unreadable SDP: {0}")]
    Malformed(String),
    /// No codec in common.
    #[error(
        "no codec in common: the offer has payload types {0:?}; Switchboard speaks PCMU (0) and PCMA (8)"
    )]
    NoCommonCodec(Vec<String>),
}

/// Reads the peer's offer or answer.
pub fn negotiate(body: &[u8]) -> Result<Media, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::Malformed("not UTF-8".into()))?;
    let mut session_addr: Option<IpAddr> = None;
    let mut media_addr: Option<IpAddr> = None;
    let mut port: Option<u16> = None;
    let mut formats: Vec<String> = Vec::new();
    let mut rtpmap: Vec<(String, String)> = Vec::new();
    let mut direction = Direction::SendRecv;
    let mut in_audio = false;
    let mut seen_audio = false;
    for line in text.lines().map(str::trim) {
        let Some((kind, value)) = line.split_once('=') else {
            continue;
        };
        match kind {
            "m" => {
                in_audio = false;
                let mut parts = value.split_whitespace();
                if parts.next() == Some("audio") && !seen_audio {
                    seen_audio = true;
                    in_audio = true;
                    port = parts.next().and_then(|p| p.split('/').next()?.parse().ok());
                    let _proto = parts.next();
                    formats = parts.map(str::to_string).collect();
                }
            }
            "c" => {
                let addr = value
                    .split_whitespace()
                    .nth(2)
                    .and_then(|a| a.split('/').next()?.parse::<IpAddr>().ok());
                if in_audio {
                    media_addr = addr;
                } else if !seen_audio {
                    session_addr = addr;
                }
            }
            "a" if in_audio || !seen_audio => {
                if let Some(map) = value.strip_prefix("rtpmap:") {
                    if let Some((pt, name)) = map.split_once(' ') {
                        rtpmap.push((pt.to_string(), name.to_ascii_lowercase()));
                    }
                } else {
                    match value {
                        "sendonly" => direction = Direction::SendOnly,
                        "recvonly" => direction = Direction::RecvOnly,
                        "inactive" => direction = Direction::Inactive,
                        "sendrecv" => direction = Direction::SendRecv,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if !seen_audio {
        return Err(SdpError::Malformed("no audio stream (m=audio)".into()));
    }
    let ip = media_addr
        .or(session_addr)
        .ok_or_else(|| SdpError::Malformed("no connection address (c=)".into()))?;
    let port = port.ok_or_else(|| SdpError::Malformed("bad audio port".into()))?;
    let name_of = |pt: &str| {
        rtpmap
            .iter()
            .find(|(p, _)| p == pt)
            .map(|(_, n)| n.as_str())
    };
    let codec = formats
        .iter()
        .find_map(|pt| match (pt.as_str(), name_of(pt)) {
            (_, Some(n)) if n.starts_with("pcmu/8000") => Some(Codec::Pcmu),
            (_, Some(n)) if n.starts_with("pcma/8000") => Some(Codec::Pcma),
            ("0", None) => Some(Codec::Pcmu),
            ("8", None) => Some(Codec::Pcma),
            _ => None,
        });
    let Some(codec) = codec else {
        return Err(SdpError::NoCommonCodec(formats));
    };
    let dtmf = formats.iter().find_map(|pt| {
        name_of(pt)
            .filter(|n| n.starts_with("telephone-event/8000"))
            .and_then(|_| pt.parse().ok())
    });
    if ip.is_unspecified() || port == 0 {
        direction = Direction::Inactive;
    }
    Ok(Media {
        addr: SocketAddr::new(ip, port),
        codec,
        dtmf,
        on_hold: matches!(direction, Direction::SendOnly | Direction::Inactive),
        direction,
    })
}

/// Our answer (or offer, with `codecs` listing both laws) for a stream at `local`, media
/// flowing `direction` as seen from our side.
pub fn describe(
    local: SocketAddr,
    codecs: &[Codec],
    dtmf: u8,
    version: u64,
    direction: Direction,
) -> Vec<u8> {
    let family = if local.is_ipv4() { "IP4" } else { "IP6" };
    let ip = local.ip();
    let mut formats: Vec<String> = codecs
        .iter()
        .map(|c| c.payload_type().to_string())
        .collect();
    formats.push(dtmf.to_string());
    let mut sdp = format!(
        "v=0\r\no=switchboard 1 {version} IN {family} {ip}\r\ns=switchboard\r\nc=IN {family} {ip}\r\nt=0 0\r\nm=audio {} RTP/AVP {}\r\n",
        local.port(),
        formats.join(" ")
    );
    for codec in codecs {
        sdp.push_str(&format!(
            "a=rtpmap:{} {}/8000\r\n",
            codec.payload_type(),
            codec.name()
        ));
    }
    sdp.push_str(&format!(
        "a=rtpmap:{dtmf} telephone-event/8000\r\na=fmtp:{dtmf} 0-15\r\na=ptime:20\r\na={}\r\n",
        direction.attribute()
    ));
    sdp.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_first_g711_and_telephone_event() {
        let offer = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 9 8 0 96\r\na=rtpmap:9 G722/8000\r\na=rtpmap:96 telephone-event/8000\r\n";
        let m = negotiate(offer).unwrap();
        assert_eq!(m.addr, "10.0.0.1:4000".parse().unwrap());
        assert_eq!(m.codec, Codec::Pcma);
        assert_eq!(m.dtmf, Some(96));
        assert!(!m.on_hold);
    }

    #[test]
    fn refuses_an_offer_without_g711() {
        let offer = b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 9 18\r\na=rtpmap:9 G722/8000\r\na=rtpmap:18 G729/8000\r\n";
        assert!(matches!(negotiate(offer), Err(SdpError::NoCommonCodec(_))));
        assert!(matches!(negotiate(b"hello"), Err(SdpError::Malformed(_))));
        assert!(matches!(
            negotiate(b"m=audio 4000 RTP/AVP 0\r\n"),
            Err(SdpError::Malformed(_))
        ));
    }

    #[test]
    fn our_description_reads_back() {
        let at = "127.0.0.1:20000".parse().unwrap();
        let sdp = describe(at, &[Codec::Pcmu], 101, 1, Direction::SendRecv);
        let m = negotiate(&sdp).unwrap();
        assert_eq!(m.addr.port(), 20000);
        assert_eq!(m.codec, Codec::Pcmu);
        assert_eq!(m.dtmf, Some(101));
        assert_eq!(m.direction, Direction::SendRecv);
        // Answering a hold: they send only, so we receive only; they are not on hold to us.
        let held = describe(at, &[Codec::Pcma], 96, 2, Direction::SendOnly.answer());
        let m = negotiate(&held).unwrap();
        assert_eq!(
            (m.codec, m.dtmf, m.direction),
            (Codec::Pcma, Some(96), Direction::RecvOnly)
        );
        assert!(!m.on_hold);
        let zero = b"v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let m = negotiate(zero).unwrap();
        assert_eq!((m.direction, m.on_hold), (Direction::Inactive, true));
    }
}
