//! A flow built against contract 0.1.0 with wit-bindgen alone, as flows were before 0.2.0:
//! the host must keep running it unchanged. It uses every host interface of 0.1.0 (crm, kv,
//! config, log, clock), so each one's forwarding to the current implementation is exercised.
//!
//! Started: "<greeting> You are caller number N. It is HH:MM in Paris." and a one-digit gather.
//! Input: "You pressed D." and the end. A message: "You wrote: TEXT." An e-mail reaches it as a
//! message (0.1.0 has no mail event).

wit_bindgen::generate!({
    path: "../../../wit/0.1.0",
    world: "flow",
});

// The world's `use types.{contact, event, step, flow-error}` already put those at the root.
use switchboard::flow::types::{Action, Gather, Prompt, Say};
use switchboard::flow::{clock, config, crm, kv, log};

struct Legacy;

fn say(text: String) -> Say {
    Say {
        text,
        voice: None,
        language: None,
    }
}

impl Guest for Legacy {
    fn handle(contact: Contact, _state: Vec<u8>, event: Event) -> Result<Step, FlowError> {
        let actions = match event {
            Event::Started => {
                let greeting = config::get("greeting").unwrap_or_else(|| "Hello.".to_string());
                let name = match crm::lookup(&crm::LookupKey::Phone(contact.from.clone())) {
                    Ok(Some(customer)) => format!(" {}", customer.name),
                    _ => String::new(),
                };
                let count = kv::get("callers")
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| s.parse::<u32>().ok())
                    .unwrap_or(0)
                    + 1;
                kv::set("callers", count.to_string().as_bytes());
                let time = match clock::time_in("Europe/Paris") {
                    Ok(t) => format!("{:02}:{:02}", t.hour, t.minute),
                    Err(e) => return Err(FlowError::Internal(e)),
                };
                log::log(
                    log::Level::Info,
                    &format!("caller {count} at {}", clock::now()),
                );
                vec![
                    Action::Say(say(format!(
                        "{greeting}{name} You are caller number {count}. It is {time} in Paris."
                    ))),
                    Action::Gather(Gather {
                        prompt: vec![Prompt::Say(say("Press a key.".into()))],
                        max_digits: 1,
                        timeout_ms: 5_000,
                        finish_on_key: None,
                        retries: 0,
                    }),
                ]
            }
            Event::Input(input) => vec![
                Action::Say(say(format!("You pressed {}.", input.digits))),
                Action::Hangup,
            ],
            Event::Message(text) => vec![Action::Send(format!("You wrote: {text}."))],
            Event::NoInput | Event::Hangup => vec![Action::End],
            Event::TaskOutcome(_) | Event::QueueWait(_) => vec![],
        };
        Ok(Step {
            actions,
            state: Vec::new(),
        })
    }
}

export!(Legacy);
