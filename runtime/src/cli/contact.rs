//! `switchboard contact ID`: a contact's session in a few lines: who called whom on which
//! channel, the flow and the version it is pinned to, where it stands in words, what it
//! waits for, its steps and faults, its times and attributes; `--json` prints the server's
//! answer for scripts. Never prints the flow's state itself (the flow's private data, and
//! base64 no one reads): its size is shown instead.

use clap::Args;

use super::Remote;
use super::client::Client;
use super::output::{Format, readable_time};
use crate::channels::terminal;
use crate::sessions::{Awaiting, Session, Status};

#[derive(Args)]
pub struct ContactArgs {
    /// The contact id.
    id: String,
    #[command(flatten)]
    format: Format,
    #[command(flatten)]
    remote: Remote,
}

pub fn run(args: ContactArgs) -> anyhow::Result<()> {
    let answer = Client::new(&args.remote)?.get(&format!("/v1/contacts/{}", args.id))?;
    args.format.print(answer, "session", summary)
}

fn summary(session: &Session) -> String {
    let row = |label: &str, value: String| format!("{label:<11}{value}");
    let mut lines = vec![
        row("contact", session.id.clone()),
        row("channel", format!("{:?}", session.channel).to_lowercase()),
        row("from", format!("{} -> {}", session.from, session.to)),
        row(
            "flow",
            format!("{}, pinned to version {}", session.flow, session.version),
        ),
        row("status", status_in_words(&session.status)),
        row("awaiting", awaiting_in_words(session.awaiting.as_ref())),
        row(
            "steps",
            format!("{} ({} faulted)", session.steps, session.faults),
        ),
        row("state", format!("{} bytes", session.state.len())),
        row("created", readable_time(&session.created_at)),
        row("updated", readable_time(&session.updated_at)),
    ];
    if session.attributes.is_empty() {
        lines.push(row("attributes", "none".into()));
    } else {
        lines.push("attributes".into());
        lines.extend(
            session
                .attributes
                .iter()
                .map(|(key, value)| format!("  {key}={value}")),
        );
    }
    lines.join("\n") + "\n"
}

fn status_in_words(status: &Status) -> String {
    match status {
        Status::Active => "with the flow".into(),
        Status::Queued { queue, priority } => {
            format!("queued in {queue} at priority {priority}")
        }
        Status::WithAgent {
            queue,
            agent: Some(agent),
        } => format!("with agent {agent} (queue {queue})"),
        Status::WithAgent { queue, agent: None } => format!("with an agent (queue {queue})"),
        Status::Ended { reason } => format!("ended: {reason}"),
    }
}

fn awaiting_in_words(awaiting: Option<&Awaiting>) -> String {
    match awaiting {
        None => "nothing".into(),
        Some(Awaiting::Message) => "a message from the customer".into(),
        Some(Awaiting::Input(gather)) => {
            format!("the caller's input ({})", terminal::gather_wait(gather))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Channel, Gather};

    fn session(status: Status, awaiting: Option<Awaiting>) -> Session {
        Session {
            id: "c-1".into(),
            channel: Channel::Voice,
            from: "+15551230002".into(),
            to: "+15550100".into(),
            attributes: vec![("department".into(), "sales".into())],
            flow: "ivr-menu".into(),
            version: 2,
            state: b"{\"queue\":\"sales\"}".to_vec(),
            status,
            awaiting,
            steps: 3,
            faults: 1,
            created_at: "2026-11-25T10:00:00.000000001+00:00".into(),
            updated_at: "2026-11-25T10:00:04.5+00:00".into(),
            node: None,
            task: None,
        }
    }

    #[test]
    fn a_queued_contact_reads_as_a_summary() {
        let text = summary(&session(
            Status::Queued {
                queue: "sales".into(),
                priority: 0,
            },
            None,
        ));
        assert_eq!(
            text,
            "contact    c-1\n\
             channel    voice\n\
             from       +15551230002 -> +15550100\n\
             flow       ivr-menu, pinned to version 2\n\
             status     queued in sales at priority 0\n\
             awaiting   nothing\n\
             steps      3 (1 faulted)\n\
             state      17 bytes\n\
             created    2026-11-25 10:00:00.000 +00:00\n\
             updated    2026-11-25 10:00:04.500 +00:00\n\
             attributes\n\
             \x20 department=sales\n"
        );
    }

    #[test]
    fn every_status_and_wait_reads_in_words() {
        assert_eq!(status_in_words(&Status::Active), "with the flow");
        assert_eq!(
            status_in_words(&Status::WithAgent {
                queue: "sales".into(),
                agent: Some("sara".into())
            }),
            "with agent sara (queue sales)"
        );
        assert_eq!(
            status_in_words(&Status::Ended {
                reason: "customer-hangup".into()
            }),
            "ended: customer-hangup"
        );
        let gather = Gather {
            prompt: vec![],
            max_digits: 1,
            timeout_ms: 5_000,
            finish_on_key: None,
            retries: 1,
            flush: false,
        };
        let flushing = Gather {
            flush: true,
            ..gather.clone()
        };
        assert_eq!(
            awaiting_in_words(Some(&Awaiting::Input(flushing))),
            "the caller's input (waits 5.0 s for up to 1 digit(s); keys pressed before it are dropped)"
        );
        assert_eq!(
            awaiting_in_words(Some(&Awaiting::Input(gather))),
            "the caller's input (waits 5.0 s for up to 1 digit(s))"
        );
    }
}
