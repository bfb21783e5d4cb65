//! `switchboard trace ID`: every recorded step of a contact as a transcript, the way
//! `simulate` shows a conversation: per step what happened, what the customer heard or read
//! and what Switchboard did, what the flow asked of the host (CRM, settings, clock) and what
//! it got, and the fault when the fallback ran; `--json` prints the server's answer for
//! scripts. Never prints the flow's state itself (the flow's private data, and base64 no
//! one reads): its size is shown instead.

use clap::Args;

use super::Remote;
use super::client::Client;
use super::output::{Format, ordinal, readable_time, shorten};
use crate::channels::terminal;
use crate::contract::{Event, TaskStatus};
use crate::engine::HostCall;
use crate::sessions::{Said, TraceEntry};

/// Host call arguments and results longer than this are cut: a CRM record can run to
/// kilobytes, and one line per call is what keeps a trace readable.
const MAX_VALUE_CHARS: usize = 100;

#[derive(Args)]
pub struct TraceArgs {
    /// The contact id.
    id: String,
    #[command(flatten)]
    format: Format,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: TraceArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.remote)?;
    let answer = client.get(&format!("/v1/contacts/{}/trace", args.id))?;
    // The conversation with agents is printed after the steps; a server without
    // transcripts (an older version) just has none.
    let said: Vec<Said> = client
        .get(&format!("/v1/contacts/{}/transcript", args.id))
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    args.format
        .print(answer, "trace", |trace: &Vec<TraceEntry>| {
            transcript(trace) + &conversation(&said)
        })
}

/// The messages between the customer and agents, one line each.
fn conversation(said: &[Said]) -> String {
    if said.is_empty() {
        return String::new();
    }
    let mut lines = vec!["conversation with agents".to_string()];
    for s in said {
        let who = match (s.from.as_str(), &s.agent) {
            ("agent", Some(agent)) => format!("agent {agent}"),
            (from, _) => from.to_string(),
        };
        lines.push(format!("  {}  {who}: {}", readable_time(&s.at), s.text));
    }
    lines.join("\n") + "\n"
}

fn transcript(trace: &[TraceEntry]) -> String {
    if trace.is_empty() {
        return "no steps recorded\n".into();
    }
    let mut lines = Vec::new();
    for entry in trace {
        lines.push(format!(
            "step {}  {}  version {}  {:.1} ms",
            entry.step,
            readable_time(&entry.at),
            entry.version,
            entry.elapsed_us as f64 / 1000.0
        ));
        lines.push(format!("  event  {}", event_in_words(&entry.event)));
        lines.extend(terminal::step_lines(entry.fault.as_ref(), &entry.actions));
        lines.extend(entry.host_calls.iter().map(host_call_line));
        lines.push(format!("  state  {} bytes", entry.state.len()));
    }
    lines.join("\n") + "\n"
}

fn event_in_words(event: &Event) -> String {
    match event {
        Event::Started => "started".into(),
        Event::Input { digits, speech } => {
            let speech = speech.as_deref().filter(|s| !s.is_empty());
            match (digits.is_empty(), speech) {
                (false, None) => format!("caller pressed {digits:?}"),
                (true, Some(speech)) => format!("caller said {speech:?}"),
                (false, Some(speech)) => format!("caller pressed {digits:?} and said {speech:?}"),
                (true, None) => "caller answered with neither digits nor speech".into(),
            }
        }
        Event::NoInput => "no input".into(),
        Event::Message { text } => format!("caller wrote {text:?}"),
        Event::Mail(mail) => match mail.attachments.len() {
            0 => format!("{} mailed {:?}", mail.from, mail.subject),
            n => format!(
                "{} mailed {:?} with {n} attachment(s)",
                mail.from, mail.subject
            ),
        },
        Event::TaskOutcome {
            queue,
            status,
            agent,
        } => match status {
            TaskStatus::Assigned => format!(
                "task assigned to {} in queue {queue}",
                agent.as_deref().unwrap_or("an agent")
            ),
            TaskStatus::Completed => format!(
                "task completed by {} in queue {queue}",
                agent.as_deref().unwrap_or("the agent")
            ),
            TaskStatus::TimedOut => format!("nobody took the task in queue {queue} in time"),
            TaskStatus::Canceled => format!("task canceled in queue {queue}"),
        },
        Event::QueueWait {
            queue,
            waited_secs,
            position,
        } => format!(
            "still waiting in queue {queue}: {} in line after {waited_secs} s",
            ordinal(*position)
        ),
        Event::Hangup => "customer hung up".into(),
    }
}

/// `  host   crm.lookup "phone/+15551230002" -> {"Ok":{"name":"Grace Hopper",…}`
fn host_call_line(call: &HostCall) -> String {
    format!(
        "  host   {} {} -> {}",
        call.call,
        shorten(&call.args.to_string(), MAX_VALUE_CHARS),
        shorten(&call.result.to_string(), MAX_VALUE_CHARS)
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::contract::{Action, Enqueue, Gather, Prompt, Say};
    use crate::engine::Fault;

    fn entry(step: u32, event: Event, actions: Vec<Action>) -> TraceEntry {
        TraceEntry {
            step,
            at: "2026-11-25T10:00:00.25+00:00".into(),
            version: 1,
            attributes: vec![],
            event,
            actions,
            fault: None,
            host_calls: vec![],
            state: vec![b'x'; 57],
            elapsed_us: 1_260,
        }
    }

    fn say(text: &str) -> Say {
        Say {
            text: text.into(),
            voice: None,
            language: None,
        }
    }

    #[test]
    fn a_contact_reads_like_the_simulate_transcript() {
        let mut started = entry(
            1,
            Event::Started,
            vec![
                Action::Say(say("Thank you for calling Acme.")),
                Action::Gather(Gather {
                    prompt: vec![Prompt::Say(say("For sales, press 1."))],
                    max_digits: 1,
                    timeout_ms: 5_000,
                    finish_on_key: None,
                    retries: 1,
                    flush: false,
                }),
            ],
        );
        started.host_calls = vec![
            HostCall {
                call: "config.get".into(),
                args: json!("welcome_prompt"),
                result: json!(null),
            },
            HostCall {
                call: "crm.lookup".into(),
                args: json!("phone/+15551230002"),
                result: json!({"Ok": {"name": "Grace Hopper", "notes": "x".repeat(200)}}),
            },
        ];
        let pressed = entry(
            2,
            Event::Input {
                digits: "1".into(),
                speech: None,
            },
            vec![Action::Enqueue(Enqueue {
                queue: "sales".into(),
                priority: 0,
                attributes: vec![("department".into(), "sales".into())],
                timeout_secs: 0,
            })],
        );
        let text = transcript(&[started, pressed]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..6],
            [
                "step 1  2026-11-25 10:00:00.250 +00:00  version 1  1.3 ms",
                "  event  started",
                "  flow   > Thank you for calling Acme.",
                "  flow   > For sales, press 1.",
                "           [waits 5.0 s for up to 1 digit(s)]",
                "  host   config.get \"welcome_prompt\" -> null",
            ]
        );
        assert!(lines[6].starts_with("  host   crm.lookup \"phone/+15551230002\" -> {\"Ok\":"));
        assert!(lines[6].ends_with('…'), "{}", lines[6]);
        assert!(lines[6].chars().count() < 160, "{}", lines[6]);
        assert_eq!(
            lines[7..],
            [
                "  state  57 bytes",
                "step 2  2026-11-25 10:00:00.250 +00:00  version 1  1.3 ms",
                "  event  caller pressed \"1\"",
                "  switchboard: queued in \"sales\" at priority 0 [department=sales]",
                "  state  57 bytes",
            ]
        );
    }

    #[test]
    fn a_faulted_step_says_the_fallback_ran() {
        let mut faulted = entry(3, Event::NoInput, vec![Action::Hangup]);
        faulted.fault = Some(Fault::Trap {
            message: "unreachable".into(),
        });
        let text = transcript(&[faulted]);
        assert!(
            text.contains(
                "  switchboard: the flow faulted (the flow trapped: unreachable); the fallback ran\n  switchboard: the flow hangs up\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn router_news_reads_in_words() {
        let waiting = Event::QueueWait {
            queue: "sales".into(),
            waited_secs: 40,
            position: 2,
        };
        assert_eq!(
            event_in_words(&waiting),
            "still waiting in queue sales: 2nd in line after 40 s"
        );
        let assigned = Event::TaskOutcome {
            queue: "sales".into(),
            status: TaskStatus::Assigned,
            agent: Some("sara".into()),
        };
        assert_eq!(
            event_in_words(&assigned),
            "task assigned to sara in queue sales"
        );
        assert_eq!(event_in_words(&Event::Hangup), "customer hung up");
        assert_eq!(
            event_in_words(&Event::Message { text: "hi".into() }),
            "caller wrote \"hi\""
        );
    }

    #[test]
    fn the_conversation_with_agents_follows_the_steps() {
        let said = |from: &str, text: &str| Said {
            at: "2026-12-04T10:00:00Z".into(),
            from: from.into(),
            agent: Some("ann".into()),
            task: None,
            text: text.into(),
        };
        let text = conversation(&[said("customer", "my parcel?"), said("agent", "on its way")]);
        assert!(text.starts_with("conversation with agents\n"), "{text}");
        assert!(text.contains("customer: my parcel?"), "{text}");
        assert!(text.contains("agent ann: on its way"), "{text}");
        assert_eq!(conversation(&[]), "");
    }

    #[test]
    fn no_steps_says_so() {
        assert_eq!(transcript(&[]), "no steps recorded\n");
    }
}
