//! Step actions rendered as TwiML, with a real XML writer: every text and attribute is
//! escaped by it, never by hand. What a flow says is its own text: characters XML 1.0 cannot
//! carry at all (most control characters) become U+FFFD instead of making a document Twilio
//! refuses, and a prompt id cannot step out of the prompts URL.

use std::borrow::Cow;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

use switchboard_contract::{Action, Gather, Prompt, Say};

/// Where TwiML verbs send the caller's answers back to.
pub struct Urls {
    /// The gather action URL (digits and speech come back here).
    pub gather: String,
    /// The URL a gather that timed out redirects to.
    pub no_input: String,
    /// Base URL of uploaded prompts, for `play` of a prompt id.
    pub prompts: String,
    /// The wait URL of `<Enqueue>`: what a waiting caller hears, until they leave.
    pub wait: String,
    /// The action URL of `<Enqueue>`: requested when the caller left the queue.
    pub dequeued: String,
    /// The action URL of the `<Dial>` to an agent: requested when that call ends.
    pub dialed: String,
    /// Hold music, as a WAV file.
    pub hold: String,
}

/// Builds a `<Response>` document.
pub struct TwiML {
    writer: Writer<Vec<u8>>,
}

impl Default for TwiML {
    fn default() -> Self {
        Self::new()
    }
}

impl TwiML {
    /// An empty response.
    pub fn new() -> TwiML {
        let mut writer = Writer::new(Vec::new());
        let _ = writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
        let _ = writer.write_event(Event::Start(BytesStart::new("Response")));
        TwiML { writer }
    }

    fn element(&mut self, name: &str, attributes: &[(&str, String)], text: Option<&str>) {
        let mut start = BytesStart::new(name);
        for (k, v) in attributes {
            start.push_attribute((*k, xml_safe(v).as_ref()));
        }
        match text {
            Some(text) => {
                let _ = self.writer.write_event(Event::Start(start));
                let text = xml_safe(text);
                let _ = self.writer.write_event(Event::Text(BytesText::new(&text)));
                let _ = self.writer.write_event(Event::End(BytesEnd::new(name)));
            }
            None => {
                let _ = self.writer.write_event(Event::Empty(start));
            }
        }
    }

    /// `<Say voice=.. language=..>text</Say>`.
    pub fn say(&mut self, say: &Say) {
        let mut attributes = Vec::new();
        if let Some(voice) = &say.voice {
            attributes.push(("voice", voice.clone()));
        }
        if let Some(language) = &say.language {
            attributes.push(("language", language.clone()));
        }
        self.element("Say", &attributes, Some(&say.text));
    }

    /// `<Play>url</Play>` (a prompt id becomes a URL under the prompts base).
    pub fn play(&mut self, prompt: &str, urls: &Urls) {
        let url = if prompt.starts_with("http://") || prompt.starts_with("https://") {
            prompt.to_string()
        } else {
            format!(
                "{}/{}",
                urls.prompts.trim_end_matches('/'),
                path_segment(prompt)
            )
        };
        self.element("Play", &[], Some(&url));
    }

    /// A `<Say>` or a `<Play>`.
    fn prompt(&mut self, prompt: &Prompt, urls: &Urls) {
        match prompt {
            Prompt::Say(s) => self.say(s),
            Prompt::Play { prompt } => self.play(prompt, urls),
        }
    }

    /// `<Message>text</Message>`.
    pub fn message(&mut self, text: &str) {
        self.element("Message", &[], Some(text));
    }

    /// `<Gather>` with `ahead` (the prompts before it in the step) and its own prompts, then a
    /// `<Redirect>` taken when it times out.
    pub fn gather(&mut self, gather: &Gather, ahead: &[Prompt], urls: &Urls) {
        let mut start = BytesStart::new("Gather");
        start.push_attribute(("input", "dtmf"));
        start.push_attribute(("action", urls.gather.as_str()));
        start.push_attribute(("method", "POST"));
        let timeout = gather.timeout_ms.div_ceil(1000).max(1).to_string();
        start.push_attribute(("timeout", timeout.as_str()));
        let digits = gather.max_digits.to_string();
        if gather.max_digits > 0 {
            start.push_attribute(("numDigits", digits.as_str()));
        }
        if let Some(key) = &gather.finish_on_key {
            start.push_attribute(("finishOnKey", xml_safe(key).as_ref()));
        }
        let _ = self.writer.write_event(Event::Start(start));
        for prompt in ahead.iter().chain(&gather.prompt) {
            self.prompt(prompt, urls);
        }
        let _ = self.writer.write_event(Event::End(BytesEnd::new("Gather")));
        self.element(
            "Redirect",
            &[("method", "POST".into())],
            Some(&urls.no_input),
        );
    }

    /// `<Enqueue waitUrl=.. action=..>queue</Enqueue>`: Switchboard's router, not Twilio's,
    /// decides who answers; the wait URL tells the caller to leave once an agent accepted.
    pub fn enqueue(&mut self, queue: &str, urls: &Urls) {
        self.element(
            "Enqueue",
            &[
                ("waitUrl", urls.wait.clone()),
                ("waitUrlMethod", "POST".into()),
                ("action", urls.dequeued.clone()),
                ("method", "POST".into()),
            ],
            Some(queue),
        );
    }

    /// `<Leave/>`: out of the queue, on to the `<Enqueue>` action URL.
    pub fn leave(&mut self) {
        self.element("Leave", &[], None);
    }

    /// `<Play>` of a URL.
    pub fn play_url(&mut self, url: &str) {
        self.element("Play", &[], Some(url));
    }

    /// `<Dial action=..><Number>+1...</Number></Dial>`, or `<Sip>` for a `sip:` URI.
    pub fn dial_agent(&mut self, endpoint: &str, urls: &Urls) {
        let mut start = BytesStart::new("Dial");
        start.push_attribute(("action", urls.dialed.as_str()));
        start.push_attribute(("method", "POST"));
        let _ = self.writer.write_event(Event::Start(start));
        let noun = if endpoint.starts_with("sip:") || endpoint.starts_with("sips:") {
            "Sip"
        } else {
            "Number"
        };
        self.element(noun, &[], Some(endpoint));
        let _ = self.writer.write_event(Event::End(BytesEnd::new("Dial")));
    }

    /// A callback's dial of the customer, from the agent's answered call: `<Dial
    /// callerId=.. action=.. timeout=..><Number url=..>number</Number></Dial>` (the
    /// `url` runs for the customer when they answer, before the two are connected).
    pub fn dial_customer(
        &mut self,
        number: &str,
        caller_id: &str,
        action: &str,
        greet: &str,
        timeout_secs: u64,
    ) {
        let mut start = BytesStart::new("Dial");
        start.push_attribute(("callerId", xml_safe(caller_id).as_ref()));
        start.push_attribute(("action", xml_safe(action).as_ref()));
        start.push_attribute(("method", "POST"));
        start.push_attribute(("timeout", timeout_secs.to_string().as_str()));
        let _ = self.writer.write_event(Event::Start(start));
        let noun = if number.starts_with("sip:") || number.starts_with("sips:") {
            "Sip"
        } else {
            "Number"
        };
        self.element(
            noun,
            &[("url", greet.to_string()), ("method", "POST".to_string())],
            Some(number),
        );
        let _ = self.writer.write_event(Event::End(BytesEnd::new("Dial")));
    }

    /// `<Dial>target</Dial>`.
    pub fn dial(&mut self, target: &str) {
        self.element("Dial", &[], Some(target));
    }

    /// `<Hangup/>`.
    pub fn hangup(&mut self) {
        self.element("Hangup", &[], None);
    }

    /// The document.
    pub fn finish(mut self) -> String {
        let _ = self
            .writer
            .write_event(Event::End(BytesEnd::new("Response")));
        String::from_utf8(self.writer.into_inner()).unwrap_or_default()
    }
}

/// Whether XML 1.0 can carry `c` at all (its `Char` production): tab, line feed, carriage
/// return and everything from space up, but for U+FFFE and U+FFFF.
pub fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `text` with every character XML cannot carry replaced by U+FFFD; borrowed when there is
/// none (nearly always).
pub fn xml_safe(text: &str) -> Cow<'_, str> {
    if text.chars().all(xml_char) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(
            text.chars()
                .map(|c| if xml_char(c) { c } else { '\u{FFFD}' })
                .collect(),
        )
    }
}

/// `id` as one URL path segment: letters, digits, `-`, `_`, `.` and `~` as they are, every
/// other byte percent-encoded (so `/`, `?` and `#` cannot leave the prompts URL).
fn path_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A voice step's actions as TwiML. `ended` adds a final `<Hangup/>` when the flow's actions
/// did not say so themselves.
///
/// Twilio hears digits only inside a `<Gather>`, so the prompts that lead up to a gather go
/// inside it: a caller who presses during them answers the gather at once (type-ahead, as on
/// SIP), unless the gather asks to flush; then they play before it and such presses are lost.
pub fn voice(actions: &[Action], urls: &Urls, ended: bool) -> String {
    let mut twiml = TwiML::new();
    let mut hung_up = false;
    let mut ahead: Vec<Prompt> = Vec::new();
    for action in actions {
        let leads_up = match action {
            Action::Say(s) => Some(Prompt::Say(s.clone())),
            Action::Play { prompt } => Some(Prompt::Play {
                prompt: prompt.clone(),
            }),
            Action::Send { text } => Some(Prompt::Say(Say {
                text: text.clone(),
                voice: None,
                language: None,
            })),
            // Nothing the caller hears: the prompts around it still lead up to a gather.
            Action::SetAttribute { .. } => continue,
            _ => None,
        };
        if let Some(prompt) = leads_up {
            ahead.push(prompt);
            continue;
        }
        if let Action::Gather(g) = action
            && !g.flush
        {
            twiml.gather(g, &std::mem::take(&mut ahead), urls);
            continue;
        }
        for prompt in ahead.drain(..) {
            twiml.prompt(&prompt, urls);
        }
        match action {
            // Taken above.
            Action::Say(_) | Action::Play { .. } | Action::Send { .. } => {}
            Action::SetAttribute { .. } => {}
            Action::Gather(g) => twiml.gather(g, &[], urls),
            Action::Enqueue(e) => twiml.enqueue(&e.queue, urls),
            Action::Transfer { target } => {
                twiml.dial(target);
                hung_up = true;
            }
            Action::Hangup | Action::End | Action::Callback { .. } => {
                twiml.hangup();
                hung_up = true;
                break;
            }
        }
    }
    for prompt in ahead.drain(..) {
        twiml.prompt(&prompt, urls);
    }
    if ended && !hung_up {
        twiml.hangup();
    }
    twiml.finish()
}

/// A text step's replies as TwiML `<Message>`s.
pub fn messages(actions: &[Action]) -> String {
    let mut twiml = TwiML::new();
    for action in actions {
        match action {
            Action::Say(Say { text, .. }) | Action::Send { text } => twiml.message(text),
            Action::Gather(g) => {
                for p in &g.prompt {
                    if let Prompt::Say(s) = p {
                        twiml.message(&s.text);
                    }
                }
            }
            _ => {}
        }
    }
    twiml.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quick_xml::Reader;
    use quick_xml::events::Event as Xml;

    fn urls() -> Urls {
        let u = |p: &str| format!("https://example.com/twilio/{p}");
        Urls {
            gather: u("voice/gather"),
            no_input: u("voice/gather?no_input=1"),
            prompts: "https://example.com/prompts".into(),
            wait: u("voice/wait"),
            dequeued: u("voice/dequeued"),
            dialed: u("voice/dialed"),
            hold: u("hold.wav"),
        }
    }

    /// The texts of `element` elements, read back by an XML parser that checks characters.
    pub(crate) fn texts_of(doc: &str, element: &str) -> Vec<String> {
        let mut reader = Reader::from_str(doc);
        let mut inside = false;
        let mut found = Vec::new();
        loop {
            match reader.read_event().expect("well-formed TwiML") {
                Xml::Start(e) if e.name().as_ref() == element.as_bytes() => {
                    inside = true;
                    found.push(String::new());
                }
                Xml::End(e) if e.name().as_ref() == element.as_bytes() => inside = false,
                Xml::Text(t) if inside => {
                    let text = t.decode().unwrap().into_owned();
                    let text = quick_xml::escape::unescape(&text).unwrap().into_owned();
                    found.last_mut().unwrap().push_str(&text);
                }
                Xml::GeneralRef(r) if inside => {
                    let name = r.decode().unwrap();
                    let text = quick_xml::escape::unescape(&format!("&{name};"))
                        .unwrap()
                        .into_owned();
                    found.last_mut().unwrap().push_str(&text);
                }
                Xml::Eof => break,
                _ => {}
            }
        }
        found
    }

    #[test]
    fn control_characters_a_flow_says_become_replacement_characters_not_broken_twiml() {
        let said = "press 1\u{1} </Say><Dial>+15550000</Dial> \u{FFFF}& done";
        let doc = voice(
            &[Action::Say(Say {
                text: said.into(),
                voice: Some("alice\u{0}".into()),
                language: None,
            })],
            &urls(),
            true,
        );
        assert!(!doc.contains('\u{1}') && !doc.contains('\u{0}'), "{doc}");
        assert_eq!(
            texts_of(&doc, "Say"),
            ["press 1\u{FFFD} </Say><Dial>+15550000</Dial> \u{FFFD}& done"]
        );
        assert!(
            texts_of(&doc, "Dial").is_empty(),
            "no verb smuggled in: {doc}"
        );
    }

    #[test]
    fn a_prompt_id_cannot_leave_the_prompts_url() {
        let doc = voice(
            &[
                Action::Play {
                    prompt: "welcome".into(),
                },
                Action::Play {
                    prompt: "../v1/flows?x=1#y".into(),
                },
            ],
            &urls(),
            false,
        );
        assert_eq!(
            texts_of(&doc, "Play"),
            [
                "https://example.com/prompts/welcome",
                "https://example.com/prompts/..%2Fv1%2Fflows%3Fx%3D1%23y"
            ]
        );
    }
}
