//! Whatever a flow returns through the contract (any actions, any strings in them, as a
//! hostile component may) and whatever events the host hands it: the actions' TwiML for a
//! call and for SMS is well-formed XML carrying only characters XML allows, says exactly the
//! texts the flow said (no verb smuggled in by a text), plays prompt ids only under the
//! prompts URL; and actions and events come back unchanged from the JSON sessions, traces
//! and the HTTP API keep them in.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quick_xml::Reader;
use quick_xml::events::Event as Xml;
use switchboard_contract::{Action, Event, Prompt};
use switchboard_wire::twiml::{self, Urls, xml_char, xml_safe};

const PROMPTS: &str = "https://cc.example.com/prompts";

fn urls() -> Urls {
    let u = |p: &str| format!("https://cc.example.com/twilio/{p}");
    Urls {
        gather: u("voice/gather"),
        no_input: u("voice/gather?no_input=1"),
        prompts: PROMPTS.into(),
        wait: u("voice/wait"),
        dequeued: u("voice/dequeued"),
        dialed: u("voice/dialed"),
        hold: u("hold.wav"),
    }
}

/// The document's root and the texts of each element named in `names`, in document order,
/// read by an XML parser: panics when the document is not well-formed.
fn read(doc: &str, names: &[&str]) -> (String, Vec<(String, String)>) {
    assert!(
        doc.chars().all(xml_char),
        "a character XML cannot carry: {doc:?}"
    );
    let mut reader = Reader::from_str(doc);
    reader.config_mut().check_end_names = true;
    let mut root = None;
    let mut open: Option<(String, String)> = None;
    let mut found = Vec::new();
    let mut depth = 0usize;
    loop {
        match reader
            .read_event()
            .unwrap_or_else(|e| panic!("{e}: {doc:?}"))
        {
            Xml::Start(e) => {
                depth += 1;
                let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                root.get_or_insert_with(|| name.clone());
                if names.contains(&name.as_str()) {
                    assert!(
                        open.is_none(),
                        "{name} inside another text element: {doc:?}"
                    );
                    open = Some((name, String::new()));
                }
            }
            Xml::Empty(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                root.get_or_insert_with(|| name.clone());
            }
            Xml::End(e) => {
                depth -= 1;
                if open
                    .as_ref()
                    .is_some_and(|(n, _)| n.as_bytes() == e.name().as_ref())
                {
                    found.push(open.take().unwrap());
                }
            }
            Xml::Text(t) => {
                if let Some((_, text)) = &mut open {
                    text.push_str(&t.decode().unwrap());
                }
            }
            Xml::GeneralRef(r) => {
                if let Some((_, text)) = &mut open {
                    let name = r.decode().unwrap();
                    let c = quick_xml::escape::unescape(&format!("&{name};"))
                        .unwrap_or_else(|e| panic!("{e}: {doc:?}"))
                        .into_owned();
                    text.push_str(&c);
                }
            }
            Xml::Eof => break,
            _ => {}
        }
    }
    assert_eq!(depth, 0, "unclosed elements: {doc:?}");
    (root.unwrap_or_default(), found)
}

/// What the caller hears, in order, from the actions a voice step renders: up to the first
/// action that ends the call.
fn heard(actions: &[Action]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let prompt = |p: &Prompt, out: &mut Vec<(String, String)>| match p {
        Prompt::Say(s) => out.push(("Say".into(), xml_safe(&s.text).into_owned())),
        Prompt::Play { prompt } => out.push(("Play".into(), prompt.clone())),
    };
    for action in actions {
        match action {
            Action::Say(s) => out.push(("Say".into(), xml_safe(&s.text).into_owned())),
            Action::Send { text } => out.push(("Say".into(), xml_safe(text).into_owned())),
            Action::Play { prompt: p } => prompt(&Prompt::Play { prompt: p.clone() }, &mut out),
            Action::Gather(g) => g.prompt.iter().for_each(|p| prompt(p, &mut out)),
            Action::Hangup | Action::End | Action::Callback { .. } => break,
            _ => {}
        }
    }
    out
}

fuzz_target!(|input: (Vec<Action>, bool, Vec<Event>)| {
    let (actions, ended, events) = input;

    let doc = twiml::voice(&actions, &urls(), ended);
    let (root, found) = read(&doc, &["Say", "Play"]);
    assert_eq!(root, "Response");
    let want = heard(&actions);
    assert_eq!(found.len(), want.len(), "{actions:?} -> {doc}");
    for ((kind, got), (want_kind, want)) in found.iter().zip(&want) {
        assert_eq!(kind, want_kind, "{doc}");
        if kind == "Say" {
            assert_eq!(got, want, "{doc}");
        } else if want.starts_with("http://") || want.starts_with("https://") {
            assert_eq!(got, &xml_safe(want), "{doc}");
        } else {
            let id = got
                .strip_prefix(PROMPTS)
                .and_then(|rest| rest.strip_prefix('/'))
                .unwrap_or_else(|| panic!("a prompt id outside the prompts URL: {got}"));
            assert!(!id.contains(['/', '?', '#']), "{got}");
        }
    }

    let sms = twiml::messages(&actions);
    let (root, messages) = read(&sms, &["Message"]);
    assert_eq!(root, "Response");
    let texts: Vec<String> = actions
        .iter()
        .flat_map(|a| match a {
            Action::Say(s) => vec![s.text.clone()],
            Action::Send { text } => vec![text.clone()],
            Action::Gather(g) => g
                .prompt
                .iter()
                .filter_map(|p| match p {
                    Prompt::Say(s) => Some(s.text.clone()),
                    Prompt::Play { .. } => None,
                })
                .collect(),
            _ => Vec::new(),
        })
        .map(|t| xml_safe(&t).into_owned())
        .collect();
    let got: Vec<String> = messages.into_iter().map(|(_, t)| t).collect();
    assert_eq!(got, texts, "{sms}");

    let json = serde_json::to_vec(&actions).unwrap();
    let back: Vec<Action> = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, actions);
    let json = serde_json::to_vec(&events).unwrap();
    let back: Vec<Event> = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, events);
});
