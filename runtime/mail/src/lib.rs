//! What Switchboard reads of a received mail (with `mail-parser`): who wrote, about what, the
//! text, the attachments, where it belongs in a thread, and whether a robot sent it; and the
//! address in an SMTP command's path. Never fails: a mail that does not parse as MIME is read
//! as what could be read (an empty subject, the raw bytes as text).

use mail_parser::{MessageParser, MimeHeaders as _};

/// A received mail, as the channel uses it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Incoming {
    /// Its Message-ID, without angle brackets (one is made up when it has none).
    pub message_id: Option<String>,
    /// The Message-IDs it answers: In-Reply-To, then References (newest first), no brackets.
    pub answers: Vec<String>,
    /// References as the mail gave them, oldest first (for the reply's own References).
    pub references: Vec<String>,
    /// Subject, decoded.
    pub subject: String,
    /// The sender's address (From), lowercased.
    pub from: Option<String>,
    /// The sender's display name.
    pub from_name: Option<String>,
    /// Plain text: the text part, else the HTML part turned into text.
    pub text: String,
    /// Attachments, in order.
    pub attachments: Vec<Part>,
    /// Why no automatic answer may go to it (RFC 3834): a robot, a bounce or a list sent it.
    pub robot: Option<Robot>,
}

/// An attached file.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// File name (`attachment-N` when it gave none).
    pub name: String,
    /// MIME type.
    pub content_type: String,
    /// Decoded bytes.
    pub bytes: Vec<u8>,
}

/// Who sent a mail that must get no automatic answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Robot {
    /// `Auto-Submitted` other than `no` (an auto-reply, an out-of-office, a notification),
    /// or the older out-of-office markers.
    AutoSubmitted,
    /// A delivery report: the null sender, or `multipart/report`.
    Bounce,
    /// A mailing list (`List-Id`, `List-Unsubscribe`) or bulk mail (`Precedence`).
    List,
}

impl Robot {
    /// As shown in traces, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Robot::AutoSubmitted => "auto-submitted",
            Robot::Bounce => "bounce",
            Robot::List => "list",
        }
    }
}

/// Reads a raw mail. `null_sender`: the SMTP envelope's sender was `<>` (a bounce).
pub fn read(raw: &[u8], null_sender: bool) -> Incoming {
    let Some(message) = MessageParser::default().parse(raw) else {
        return Incoming {
            text: String::from_utf8_lossy(raw).trim().to_string(),
            robot: null_sender.then_some(Robot::Bounce),
            ..Incoming::default()
        };
    };
    let ids = |value: &mail_parser::HeaderValue<'_>| -> Vec<String> {
        match value {
            mail_parser::HeaderValue::Text(t) => vec![t.trim().to_string()],
            mail_parser::HeaderValue::TextList(list) => {
                list.iter().map(|t| t.trim().to_string()).collect()
            }
            _ => Vec::new(),
        }
        .into_iter()
        .map(|id| id.trim_matches(|c| c == '<' || c == '>').to_string())
        .filter(|id| !id.is_empty())
        .collect()
    };
    let references = ids(message.references());
    let mut answers = ids(message.in_reply_to());
    answers.extend(references.iter().rev().cloned());
    let sender = message.from().and_then(|a| a.first());
    let text = message
        .body_text(0)
        .map(|t| t.replace("\r\n", "\n").trim().to_string())
        .unwrap_or_default();
    let attachments = message
        .attachments()
        .enumerate()
        .map(|(i, part)| Part {
            name: part
                .attachment_name()
                .map(str::to_string)
                .unwrap_or_else(|| format!("attachment-{}", i + 1)),
            content_type: part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_string(),
                })
                .unwrap_or_else(|| "application/octet-stream".into()),
            bytes: part.contents().to_vec(),
        })
        .collect();
    let header = |name: &str| {
        message
            .header_raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
    };
    let auto_submitted = header("Auto-Submitted").is_some_and(|v| !v.starts_with("no"))
        || header("X-Autoreply").is_some_and(|v| v == "yes")
        || header("X-Autorespond").is_some()
        || header("X-Auto-Response-Suppress")
            .is_some_and(|v| ["all", "oof", "autoreply"].iter().any(|w| v.contains(w)));
    let report = message.root_part().content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    });
    let list = header("List-Id").is_some()
        || header("List-Unsubscribe").is_some()
        || header("Precedence")
            .is_some_and(|v| matches!(v.as_str(), "bulk" | "list" | "junk" | "auto_reply"));
    // Nothing recognisable as a mail (no headers, no body): the bytes are what was said.
    let text = if text.is_empty() && message.subject().is_none() && sender.is_none() {
        String::from_utf8_lossy(raw).trim().to_string()
    } else {
        text
    };
    let robot = if null_sender || report {
        Some(Robot::Bounce)
    } else if auto_submitted {
        Some(Robot::AutoSubmitted)
    } else if list {
        Some(Robot::List)
    } else {
        None
    };
    Incoming {
        message_id: message.message_id().map(str::to_string),
        answers,
        references,
        subject: message.subject().unwrap_or_default().trim().to_string(),
        from: sender
            .and_then(|a| a.address())
            .map(|a| a.trim().to_ascii_lowercase()),
        from_name: sender
            .and_then(|a| a.name())
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty()),
        text,
        attachments,
        robot,
    }
}

/// The mailbox a plus-address points at and its tag: `support+c42@acme.test` is
/// (`support@acme.test`, `Some("c42")`). Lowercased.
pub fn plus_address(address: &str) -> (String, Option<String>) {
    let address = address.trim().to_ascii_lowercase();
    let Some((local, domain)) = address.rsplit_once('@') else {
        return (address, None);
    };
    match local.split_once('+') {
        Some((base, tag)) if !base.is_empty() && !tag.is_empty() => {
            (format!("{base}@{domain}"), Some(tag.to_string()))
        }
        _ => (address.clone(), None),
    }
}

/// The subject of a reply: `Re: ` before the original unless it already starts so.
pub fn reply_subject(subject: &str) -> String {
    let s = subject.trim();
    if s.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("re:")) {
        s.to_string()
    } else if s.is_empty() {
        "Re: your message".into()
    } else {
        format!("Re: {s}")
    }
}

/// `text` quoted for a reply: each line after `> `, under an attribution line.
pub fn quote(text: &str, who: &str) -> String {
    let mut out = format!("{who} wrote:\n");
    for line in text.lines() {
        if line.is_empty() {
            out.push_str(">\n");
        } else {
            out.push_str("> ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The address inside an SMTP path (`FROM:<a@b.c> SIZE=10` after `MAIL`, `TO:<...>` after
/// `RCPT`) and the parameters after it; `keyword` is `FROM:` or `TO:`. `None` when the
/// argument is not such a path.
pub fn path_of(arg: &str, keyword: &str) -> Option<(String, String)> {
    let rest = arg.get(..keyword.len())?;
    if !rest.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let address = rest[..end].trim();
    // A source route (`<@a,@b:user@c>`) is ignored, as RFC 5321 allows.
    let address = address.rsplit(':').next().unwrap_or(address);
    Some((address.to_string(), rest[end + 1..].trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_threaded_mail_with_an_attachment() {
        let raw = b"From: \"Jane Roe\" <Jane@Example.com>\r\n\
To: support@acme.test\r\n\
Subject: =?utf-8?q?Caf=C3=A9_order?=\r\n\
Message-ID: <m2@example.com>\r\n\
In-Reply-To: <a1@acme.test>\r\n\
References: <m1@example.com> <a1@acme.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\
\r\n\
--b\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Hello there\r\n\
--b\r\n\
Content-Type: application/pdf; name=invoice.pdf\r\n\
Content-Disposition: attachment; filename=invoice.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0=\r\n\
--b--\r\n";
        let mail = read(raw, false);
        assert_eq!(mail.subject, "Caf\u{e9} order");
        assert_eq!(mail.from.as_deref(), Some("jane@example.com"));
        assert_eq!(mail.from_name.as_deref(), Some("Jane Roe"));
        assert_eq!(mail.message_id.as_deref(), Some("m2@example.com"));
        assert_eq!(
            mail.answers,
            ["a1@acme.test", "a1@acme.test", "m1@example.com"]
        );
        assert_eq!(mail.references, ["m1@example.com", "a1@acme.test"]);
        assert_eq!(mail.text, "Hello there");
        assert_eq!(mail.attachments.len(), 1);
        assert_eq!(mail.attachments[0].name, "invoice.pdf");
        assert_eq!(mail.attachments[0].content_type, "application/pdf");
        assert_eq!(mail.attachments[0].bytes, b"%PDF-");
        assert_eq!(mail.robot, None);
    }

    #[test]
    fn robots_bounces_and_lists_are_told_apart() {
        let auto = b"From: a@b.c\r\nAuto-Submitted: auto-replied\r\nSubject: x\r\n\r\nhi";
        assert_eq!(read(auto, false).robot, Some(Robot::AutoSubmitted));
        let human = b"From: a@b.c\r\nAuto-Submitted: no\r\nSubject: x\r\n\r\nhi";
        assert_eq!(read(human, false).robot, None);
        let oof =
            b"From: a@b.c\r\nX-Auto-Response-Suppress: All\r\nSubject: Out of Office\r\n\r\naway";
        assert_eq!(read(oof, false).robot, Some(Robot::AutoSubmitted));
        let report = b"From: MAILER-DAEMON@b.c\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\n\r\nfailed\r\n--x--\r\n";
        assert_eq!(read(report, false).robot, Some(Robot::Bounce));
        assert_eq!(read(human, true).robot, Some(Robot::Bounce));
        let list = b"From: a@b.c\r\nList-Id: <news.b.c>\r\n\r\nnews";
        assert_eq!(read(list, false).robot, Some(Robot::List));
        let bulk = b"From: a@b.c\r\nPrecedence: bulk\r\n\r\nnews";
        assert_eq!(read(bulk, false).robot, Some(Robot::List));
    }

    #[test]
    fn garbage_is_read_as_what_it_is() {
        let mail = read(b"\xff\xfe not a mail at all", false);
        assert!(mail.text.contains("not a mail at all"), "{mail:?}");
        assert_eq!(read(b"", false).subject, "");
    }

    #[test]
    fn paths_and_parameters() {
        assert_eq!(
            path_of("FROM:<a@b.c> SIZE=100", "FROM:"),
            Some(("a@b.c".into(), "SIZE=100".into()))
        );
        assert_eq!(
            path_of("from: <>", "FROM:"),
            Some((String::new(), String::new()))
        );
        assert_eq!(
            path_of("TO:<@relay.x:u@d.e>", "TO:"),
            Some(("u@d.e".into(), String::new()))
        );
        assert_eq!(path_of("TO:u@d.e", "TO:"), None);
        assert_eq!(path_of("T", "TO:"), None);
        assert_eq!(path_of("TO:\u{e9}<x>", "TO:"), None);
    }

    #[test]
    fn plus_addresses_subjects_and_quotes() {
        assert_eq!(
            plus_address("Support+c-42@Acme.test"),
            ("support@acme.test".into(), Some("c-42".into()))
        );
        assert_eq!(
            plus_address("support@acme.test"),
            ("support@acme.test".into(), None)
        );
        assert_eq!(plus_address("+x@acme.test").1, None);
        assert_eq!(reply_subject("Where is it"), "Re: Where is it");
        assert_eq!(reply_subject("RE: Where is it"), "RE: Where is it");
        assert_eq!(reply_subject("\u{e9}t\u{e9}"), "Re: \u{e9}t\u{e9}");
        assert_eq!(quote("a\n\nb", "Jane"), "Jane wrote:\n> a\n>\n> b\n");
    }
}
