//! SIP messages (RFC 3261 §7): parsing what arrives, building what we send. Headers keep
//! their order; compact forms are expanded at parse time so lookups use one name. Parsing
//! never panics: anything malformed is a [`ParseError`] that says what was wrong.

use std::fmt::Write as _;

/// A request or a response.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The first line.
    pub start: Start,
    /// Headers in order, names as received (compact forms expanded).
    pub headers: Vec<(String, String)>,
    /// The body (Content-Length bytes).
    pub body: Vec<u8>,
}

/// The start line.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// `METHOD uri SIP/2.0`.
    Request {
        /// INVITE, ACK, BYE...
        method: String,
        /// The Request-URI.
        uri: String,
    },
    /// `SIP/2.0 code reason`.
    Response {
        /// Status code.
        code: u16,
        /// Reason phrase.
        reason: String,
    },
}

/// Why bytes are not a SIP message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// Nothing but whitespace (a keep-alive CRLF).
    #[error("empty datagram (keep-alive)")]
    Empty,
    /// Not UTF-8 in the head, no blank line, a bad start line...
    #[error("malformed SIP message: {0}")]
    Malformed(String),
    /// A required header is missing.
    #[error("the request has no {0} header")]
    Missing(&'static str),
    /// The head is complete but the body is shorter than Content-Length (a stream needs more).
    #[error("the body is shorter than its Content-Length")]
    Incomplete,
}

const COMPACT: &[(&str, &str)] = &[
    ("i", "Call-ID"),
    ("f", "From"),
    ("t", "To"),
    ("v", "Via"),
    ("m", "Contact"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("k", "Supported"),
    ("s", "Subject"),
];

/// Where the head ends (index of the body) in a buffer, if a blank line is there yet.
pub fn head_end(bytes: &[u8]) -> Option<usize> {
    if let Some(i) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        return Some(i + 4);
    }
    bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)
}

impl Message {
    /// Parses one message. With `stream`, a body shorter than Content-Length is
    /// [`ParseError::Incomplete`]; on a datagram it is malformed.
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        let trimmed = bytes
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .map(|start| &bytes[start..])
            .ok_or(ParseError::Empty)?;
        let end = head_end(trimmed)
            .ok_or_else(|| ParseError::Malformed("no blank line after the headers".into()))?;
        let head = std::str::from_utf8(&trimmed[..end])
            .map_err(|_| ParseError::Malformed("the headers are not UTF-8".into()))?;
        if head
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\r' | '\n' | '\t'))
        {
            return Err(ParseError::Malformed(
                "control characters in the start line or the headers".into(),
            ));
        }
        if head
            .split('\n')
            .any(|line| line.trim_end_matches('\r').contains('\r'))
        {
            return Err(ParseError::Malformed(
                "a carriage return inside a header line (lines end in CRLF)".into(),
            ));
        }
        let mut lines = head.split('\n').map(|l| l.trim_end_matches('\r'));
        let first = lines.next().unwrap_or_default();
        let start = parse_start(first)?;
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.is_empty() {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                // A folded continuation of the previous header.
                let last = headers.last_mut().ok_or_else(|| {
                    ParseError::Malformed("a continuation line comes first".into())
                })?;
                // Folded onto an empty value, the continuation is the value; a blank one
                // adds nothing.
                let more = line.trim();
                if !last.1.is_empty() && !more.is_empty() {
                    last.1.push(' ');
                }
                last.1.push_str(more);
                continue;
            }
            let (name, value) = line.split_once(':').ok_or_else(|| {
                ParseError::Malformed(format!("header line without a colon: {line:?}"))
            })?;
            let name = name.trim();
            // A header name is an RFC 3261 token.
            let token = |c: char| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c);
            if name.is_empty() || !name.chars().all(token) {
                return Err(ParseError::Malformed(format!("bad header name {name:?}")));
            }
            let name = COMPACT
                .iter()
                .find(|(short, _)| short.eq_ignore_ascii_case(name))
                .map_or(name, |(_, long)| long);
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let rest = &trimmed[end..];
        let mut message = Message {
            start,
            headers,
            body: Vec::new(),
        };
        let length = match message.header("Content-Length") {
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| ParseError::Malformed(format!("bad Content-Length {v:?}")))?,
            None => rest.len(),
        };
        if rest.len() < length {
            return Err(ParseError::Incomplete);
        }
        message.body = rest[..length].to_vec();
        if message.is_request() {
            for required in ["Via", "From", "To", "Call-ID", "CSeq"] {
                if message.header(required).is_none() {
                    return Err(ParseError::Missing(required));
                }
            }
            message
                .cseq()
                .ok_or_else(|| ParseError::Malformed("bad CSeq".into()))?;
        }
        Ok(message)
    }

    /// A new request.
    pub fn request(method: &str, uri: &str) -> Message {
        Message {
            start: Start::Request {
                method: method.into(),
                uri: uri.into(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// The response to this request: Via, From, To, Call-ID and CSeq copied; `to_tag` added to
    /// To when it has none.
    pub fn response(&self, code: u16, reason: &str, to_tag: Option<&str>) -> Message {
        let mut out = Message {
            start: Start::Response {
                code,
                reason: reason.into(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        };
        for (name, value) in &self.headers {
            let copy = ["Via", "From", "Call-ID", "CSeq", "Record-Route"]
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name));
            if copy {
                out.headers.push((name.clone(), value.clone()));
            } else if name.eq_ignore_ascii_case("To") {
                let mut to = value.clone();
                if let Some(tag) = to_tag
                    && param(value, "tag").is_none()
                {
                    to.push_str(";tag=");
                    to.push_str(tag);
                }
                out.headers.push(("To".into(), to));
            }
        }
        out
    }

    /// Adds a header.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Message {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a `Warning` saying why (RFC 3261 §20.43, code 399: miscellaneous).
    pub fn with_warning(self, why: &str) -> Message {
        self.with(
            "Warning",
            format!("399 switchboard \"{}\"", why.replace('"', "'")),
        )
    }

    /// Sets the body and its type.
    pub fn with_body(mut self, content_type: &str, body: Vec<u8>) -> Message {
        self.headers
            .push(("Content-Type".into(), content_type.into()));
        self.body = body;
        self
    }

    /// The wire form, Content-Length included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = String::with_capacity(512);
        match &self.start {
            Start::Request { method, uri } => {
                let _ = write!(head, "{method} {uri} SIP/2.0\r\n");
            }
            Start::Response { code, reason } => {
                let _ = write!(head, "SIP/2.0 {code} {reason}\r\n");
            }
        }
        for (name, value) in &self.headers {
            if name.eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            let _ = write!(head, "{name}: {value}\r\n");
        }
        let _ = write!(head, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, Start::Request { .. })
    }

    /// The request's method, or the method its CSeq names for a response.
    pub fn method(&self) -> &str {
        match &self.start {
            Start::Request { method, .. } => method,
            Start::Response { .. } => self.cseq().map_or("", |(_, m)| m),
        }
    }

    /// A response's status code (0 for requests).
    pub fn code(&self) -> u16 {
        match self.start {
            Start::Response { code, .. } => code,
            Start::Request { .. } => 0,
        }
    }

    /// The Request-URI ("" for responses).
    pub fn uri(&self) -> &str {
        match &self.start {
            Start::Request { uri, .. } => uri,
            Start::Response { .. } => "",
        }
    }

    /// The first header of that name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Call-ID.
    pub fn call_id(&self) -> &str {
        self.header("Call-ID").unwrap_or_default()
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let (n, method) = self.header("CSeq")?.split_once(char::is_whitespace)?;
        Some((n.trim().parse().ok()?, method.trim()))
    }

    /// The branch of the top Via.
    pub fn branch(&self) -> &str {
        self.header("Via")
            .and_then(|via| param(via, "branch"))
            .unwrap_or_default()
    }

    /// The To tag.
    pub fn to_tag(&self) -> Option<&str> {
        self.header("To").and_then(|v| param(v, "tag"))
    }

    /// The From tag.
    pub fn from_tag(&self) -> Option<&str> {
        self.header("From").and_then(|v| param(v, "tag"))
    }
}

fn parse_start(line: &str) -> Result<Start, ParseError> {
    let bad = || ParseError::Malformed(format!("bad start line {line:?}"));
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code.parse().map_err(|_| bad())?;
        if !(100..700).contains(&code) {
            return Err(bad());
        }
        return Ok(Start::Response {
            code,
            reason: reason.to_string(),
        });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if version != "SIP/2.0" {
        return Err(ParseError::Malformed(format!(
            "unsupported version {version:?} (SIP/2.0 only)"
        )));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) || !uri.contains(':') {
        return Err(bad());
    }
    Ok(Start::Request {
        method: method.to_string(),
        uri: uri.to_string(),
    })
}

/// A `;name=value` parameter of a header value (outside its `<...>`).
pub fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    params.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The URI of a name-addr (`"Bob" <sip:bob@host>;tag=1`) or addr-spec (`sip:bob@host;tag=1`).
pub fn uri_of(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(';').next().unwrap_or(value).trim(),
    }
}

/// The user part of a SIP URI (`sip:+15550100@host;user=phone` -> `+15550100`).
pub fn user_of(uri: &str) -> &str {
    let rest = uri
        .strip_prefix("sips:")
        .or_else(|| uri.strip_prefix("sip:"))
        .or_else(|| uri.strip_prefix("tel:"))
        .unwrap_or(uri);
    let user = match rest.split_once('@') {
        Some((user, _)) => user,
        None if uri.starts_with("tel:") => rest,
        None => "",
    };
    user.split(';').next().unwrap_or_default()
}

/// The `host:port` of a SIP URI (`sip:alice@127.0.0.1:5070;transport=udp` -> `127.0.0.1:5070`),
/// port 5060 when none is given.
pub fn host_port_of(uri: &str) -> Option<String> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = host.split([';', '?', '>']).next()?.trim();
    if host.is_empty() {
        return None;
    }
    let has_port = match host.rfind(']') {
        Some(i) => host[i..].contains(':'),
        None => host.contains(':'),
    };
    Some(if has_port {
        host.to_string()
    } else {
        format!("{host}:5060")
    })
}

/// A fresh token for tags and branches.
pub fn token() -> String {
    let n: u64 = rand::random();
    format!("{n:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:+15550100@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1\r\n\
f: \"Caller\" <sip:+15551234@127.0.0.1:5061>;tag=abc\r\n\
t: <sip:+15550100@127.0.0.1>\r\n\
i: call-1@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Subject: a folded\r\n  header\r\n\
Content-Type: application/sdp\r\n\
l: 4\r\n\r\nv=0\r\nextra";

    #[test]
    fn parses_compact_folded_headers_and_the_body_by_length() {
        let m = Message::parse(INVITE.as_bytes()).unwrap();
        assert_eq!(m.method(), "INVITE");
        assert_eq!(m.call_id(), "call-1@127.0.0.1");
        assert_eq!(m.from_tag(), Some("abc"));
        assert_eq!(m.to_tag(), None);
        assert_eq!(m.branch(), "z9hG4bK-1");
        assert_eq!(m.cseq(), Some((1, "INVITE")));
        assert_eq!(m.header("subject"), Some("a folded header"));
        assert_eq!(m.body, b"v=0\r");
        assert_eq!(user_of(uri_of(m.header("From").unwrap())), "+15551234");
        assert_eq!(user_of(m.uri()), "+15550100");
    }

    #[test]
    fn a_response_copies_the_transaction_headers_and_tags_to() {
        let m = Message::parse(INVITE.as_bytes()).unwrap();
        let r = m.response(200, "OK", Some("xyz"));
        let again = Message::parse(&r.to_bytes()).unwrap();
        assert_eq!(again.code(), 200);
        assert_eq!(again.to_tag(), Some("xyz"));
        assert_eq!(again.method(), "INVITE");
        assert_eq!(again.branch(), "z9hG4bK-1");
    }

    /// Found by the `sip_message` fuzz target: a header name with NULs and a tab parsed, and the
    /// message built from it did not read back the same.
    #[test]
    fn control_characters_and_names_that_are_not_tokens_are_refused() {
        let nul_name = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\0\0\0\tent-Length: 0\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(
            Message::parse(nul_name),
            Err(ParseError::Malformed(_))
        ));
        let nul_reason = b"SIP/2.0 200 OK\0\0\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(
            Message::parse(nul_reason),
            Err(ParseError::Malformed(_))
        ));
        let bad_name = b"SIP/2.0 200 OK\r\nVia(x): y\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(
            Message::parse(bad_name),
            Err(ParseError::Malformed(_))
        ));
        let bare_cr = b"SIP/2.0 200 OK\r\nTo: <sip:a@b>;tag=1\r=2\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(
            Message::parse(bare_cr),
            Err(ParseError::Malformed(_))
        ));
        // Also found by it: a value folded onto an empty first line gained a leading space.
        let folded = b"SIP/2.0 200 OK\r\nSubject:\r\n  hello\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            Message::parse(folded).unwrap().header("Subject"),
            Some("hello")
        );
        let blank = b"SIP/2.0 200 OK\r\nSubject: x\r\n \r\nContent-Length: 0\r\n\r\n";
        assert_eq!(Message::parse(blank).unwrap().header("Subject"), Some("x"));
        let tab_value = b"SIP/2.0 200 OK\r\nSubject: a\tb\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            Message::parse(tab_value).unwrap().header("Subject"),
            Some("a\tb")
        );
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        for bad in [
            &b""[..],
            b"\r\n\r\n",
            b"hello",
            b"INVITE sip:x SIP/3.0\r\n\r\n",
            b"SIP/2.0 99999 Huh\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: x\r\n\r\n",
            b"\xff\xfe\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nno colon here\r\n\r\n",
            b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nshort",
        ] {
            assert!(Message::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn uris() {
        assert_eq!(
            host_port_of("sip:alice@127.0.0.1:5070;transport=udp").as_deref(),
            Some("127.0.0.1:5070")
        );
        assert_eq!(
            host_port_of("sip:pbx.example.com").as_deref(),
            Some("pbx.example.com:5060")
        );
        assert_eq!(user_of("tel:+15550100"), "+15550100");
        assert_eq!(param("<sip:a@b;lr>;tag=9;x", "tag"), Some("9"));
    }
}
