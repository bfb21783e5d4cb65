//! The terminal channel behind `switchboard simulate`: a person (or a script) plays the
//! customer. Prompts are printed as the caller would hear them; typed digits answer gathers
//! (an empty line is silence); on text channels each line is a message. It drives either a
//! deployed flow through the HTTP API or a local `.wasm` file in-process.

use std::io::{BufRead, IsTerminal as _, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::config::Config;
use crate::contract::{Action, Event, Gather, Prompt};
use crate::engine::{Clock, Fault};
use crate::node::Node;
use crate::sessions::{Awaiting, NewContact, Status, StepReport};

/// The name a local simulation deploys its `.wasm` file under.
pub const LOCAL_FLOW: &str = "local";

/// Starts contacts and sends them events, wherever the flow runs.
pub trait Driver {
    /// Starts a contact.
    fn start(&mut self, new: NewContact) -> anyhow::Result<StepReport>;
    /// Sends an event to a contact.
    fn send(&mut self, contact: &str, event: Event) -> anyhow::Result<StepReport>;
    /// Where the flow runs, for the header line.
    fn describe(&self, report: &StepReport) -> String;
}

/// A `.wasm` file run in-process on a throwaway store.
pub struct LocalFlow {
    runtime: Arc<Node>,
    file: String,
}

impl LocalFlow {
    /// Compiles `file` (showing progress) and prepares customers, settings and the clock.
    pub fn open(
        file: &Path,
        customers: Option<&Path>,
        settings: &[(String, String)],
        at: Option<&str>,
    ) -> anyhow::Result<LocalFlow> {
        let clock = match at {
            Some(at) => Clock::Fixed(
                chrono::DateTime::parse_from_rfc3339(at)
                    .with_context(|| {
                        format!(
                            "--at {at:?} is not an RFC 3339 time such as 2026-11-25T10:00:00-05:00"
                        )
                    })?
                    .to_utc(),
            ),
            None => Clock::System,
        };
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let runtime = Arc::new(Node::ephemeral(Config::default(), clock)?);
        let label = format!("compiling {} ({})", file.display(), human_size(bytes.len()));
        with_progress(&label, || {
            runtime
                .admin()
                .flows()
                .deploy(LOCAL_FLOW, &bytes, "simulate")
                .map_err(anyhow::Error::from)
        })?;
        if let Some(path) = customers {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let list = crate::customers::parse(&text)?;
            runtime.admin().load_customers(&list, "simulate")?;
        }
        if !settings.is_empty() {
            runtime
                .admin()
                .flows()
                .configure(LOCAL_FLOW, settings, "simulate")?;
        }
        Ok(LocalFlow {
            runtime,
            file: file.display().to_string(),
        })
    }
}

impl Driver for LocalFlow {
    fn start(&mut self, new: NewContact) -> anyhow::Result<StepReport> {
        Ok(self.runtime.contacts().start(new)?)
    }

    fn send(&mut self, contact: &str, event: Event) -> anyhow::Result<StepReport> {
        Ok(self.runtime.contacts().send(contact, event)?)
    }

    fn describe(&self, _report: &StepReport) -> String {
        format!("{} (local, no server)", self.file)
    }
}

/// One simulated contact.
pub struct Conversation<'a, D: Driver> {
    driver: D,
    input: Box<dyn BufRead + 'a>,
    out: &'a mut dyn Write,
    interactive: bool,
}

/// What the caller did in answer to a prompt.
enum Answer {
    Event(Event),
    Left,
}

impl<'a, D: Driver> Conversation<'a, D> {
    /// A conversation reading the caller's lines from `input`; `interactive` shows a prompt
    /// instead of echoing each line.
    pub fn new(
        driver: D,
        input: Box<dyn BufRead + 'a>,
        out: &'a mut dyn Write,
        interactive: bool,
    ) -> Self {
        Conversation {
            driver,
            input,
            out,
            interactive,
        }
    }

    /// Runs the contact until it ends, is queued, or the input runs out (the caller hangs up).
    pub fn run(mut self, new: NewContact) -> anyhow::Result<()> {
        let channel = new.channel.unwrap_or(crate::contract::Channel::Voice);
        let mut report = self.driver.start(new.clone())?;
        writeln!(
            self.out,
            "Contact {} from {} to {} ({channel:?}), {}",
            report.contact,
            new.from,
            new.to,
            self.driver.describe(&report)
        )?;
        if self.interactive {
            writeln!(
                self.out,
                "Type digits and Enter to answer; an empty line is silence; /hangup hangs up."
            )?;
        }
        loop {
            self.render(&report)?;
            match &report.status {
                Status::Ended { reason } => {
                    writeln!(self.out, "Contact ended ({reason}).")?;
                    break;
                }
                Status::Queued { queue, priority } => {
                    writeln!(
                        self.out,
                        "Contact is waiting in queue {queue:?} (priority {priority}) for an agent."
                    )?;
                    break;
                }
                Status::WithAgent { queue, agent } => {
                    let agent = agent.as_deref().unwrap_or("an agent");
                    writeln!(self.out, "Contact is with {agent} (queue {queue:?}).")?;
                    break;
                }
                Status::Active => {}
            }
            let answer = match report.awaiting.clone() {
                Some(Awaiting::Input(gather)) => self.gather(&gather)?,
                Some(Awaiting::Message) | None => match self.read_line()? {
                    None => Answer::Left,
                    Some(line) if line.trim() == "/hangup" => Answer::Left,
                    Some(line) => Answer::Event(Event::Message { text: line }),
                },
            };
            let event = match answer {
                Answer::Event(event) => event,
                Answer::Left => {
                    writeln!(self.out, "  caller hangs up")?;
                    Event::Hangup
                }
            };
            report = self.driver.send(&report.contact, event)?;
        }
        Ok(())
    }

    fn read_line(&mut self) -> anyhow::Result<Option<String>> {
        if self.interactive {
            write!(self.out, "  caller > ")?;
            self.out.flush()?;
        }
        let mut line = String::new();
        if self.input.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if !self.interactive {
            writeln!(self.out, "  caller > {line}")?;
        }
        Ok(Some(line))
    }

    /// Collects an answer the way a phone channel does: replays the prompt on silence up to
    /// `retries` times, then reports no input.
    fn gather(&mut self, gather: &Gather) -> anyhow::Result<Answer> {
        for attempt in 0..=gather.retries {
            if attempt > 0 {
                writeln!(self.out, "  (no input; the prompt plays again)")?;
                self.render_prompt(&gather.prompt)?;
            }
            let Some(line) = self.read_line()? else {
                return Ok(Answer::Left);
            };
            if line.trim() == "/hangup" {
                return Ok(Answer::Left);
            }
            let pressed: String = line
                .chars()
                .filter(|c| c.is_ascii_digit() || *c == '*' || *c == '#')
                .collect();
            if pressed.len() != line.trim().chars().count() {
                writeln!(
                    self.out,
                    "  (only 0-9, * and # can be pressed; the rest was ignored)"
                )?;
            }
            let mut digits = match gather.finish_on_key.as_deref() {
                Some(key) => pressed.split(key).next().unwrap_or_default().to_string(),
                None => pressed,
            };
            if gather.max_digits > 0 {
                digits.truncate(gather.max_digits as usize);
            }
            if !digits.is_empty() {
                return Ok(Answer::Event(Event::Input {
                    digits,
                    speech: None,
                }));
            }
        }
        Ok(Answer::Event(Event::NoInput))
    }

    fn render_prompt(&mut self, prompt: &[Prompt]) -> anyhow::Result<()> {
        for line in prompt_lines(prompt) {
            writeln!(self.out, "{line}")?;
        }
        Ok(())
    }

    fn render(&mut self, report: &StepReport) -> anyhow::Result<()> {
        for line in step_lines(report.fault.as_ref(), &report.actions) {
            writeln!(self.out, "{line}")?;
        }
        Ok(())
    }
}

/// What one step did, as transcript lines (`simulate`, and `switchboard trace`): the fault
/// first when there was one, since the actions that follow are then the fallback's.
pub fn step_lines(fault: Option<&Fault>, actions: &[Action]) -> Vec<String> {
    let fault =
        fault.map(|fault| format!("  switchboard: the flow faulted ({fault}); the fallback ran"));
    fault
        .into_iter()
        .chain(actions.iter().flat_map(action_lines))
        .collect()
}

/// What a caller hears or reads, or what Switchboard does, for one action: the lines of a
/// transcript (`simulate`, and `switchboard trace`).
pub fn action_lines(action: &Action) -> Vec<String> {
    match action {
        Action::Say(s) => vec![format!("  flow   > {}", s.text)],
        Action::Play { prompt } => vec![format!("  flow   > [plays {prompt}]")],
        Action::Send { text } => vec![format!("  flow   > {text}")],
        Action::Gather(g) => {
            let mut lines = prompt_lines(&g.prompt);
            lines.push(format!("           [{}]", gather_wait(g)));
            lines
        }
        Action::Enqueue(e) => {
            let attributes: Vec<String> = e
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            vec![format!(
                "  switchboard: queued in {:?} at priority {} [{}]",
                e.queue,
                e.priority,
                attributes.join(", ")
            )]
        }
        Action::Transfer { target } => vec![format!("  switchboard: transferred to {target}")],
        Action::SetAttribute { key, value } => {
            vec![format!("  switchboard: set {key} = {value}")]
        }
        Action::Callback { number } => vec![format!(
            "  switchboard: the caller keeps their place in the queue; an agent will call back {number}"
        )],
        Action::Hangup => vec!["  switchboard: the flow hangs up".into()],
        Action::End => vec!["  switchboard: the flow ends".into()],
    }
}

/// What a gather waits for: `waits 5.0 s for up to 1 digit(s), # to finish`, and whether
/// it drops digits pressed ahead of it.
pub fn gather_wait(gather: &Gather) -> String {
    let digits = if gather.max_digits == 0 {
        "digits".to_string()
    } else {
        format!("up to {} digit(s)", gather.max_digits)
    };
    let finish = gather
        .finish_on_key
        .as_deref()
        .map(|k| format!(", {k} to finish"))
        .unwrap_or_default();
    // Type-ahead needs prompts that take time to play; a transcript can only say so.
    let flush = if gather.flush {
        "; keys pressed before it are dropped"
    } else {
        ""
    };
    format!(
        "waits {:.1} s for {digits}{finish}{flush}",
        f64::from(gather.timeout_ms) / 1000.0
    )
}

fn prompt_lines(prompt: &[Prompt]) -> Vec<String> {
    prompt
        .iter()
        .map(|p| match p {
            Prompt::Say(s) => format!("  flow   > {}", s.text),
            Prompt::Play { prompt } => format!("  flow   > [plays {prompt}]"),
        })
        .collect()
}

/// Runs `work`, showing `label` and the elapsed time on stderr while it runs (a live counter
/// on a terminal, a start and an end line otherwise).
pub fn with_progress<T>(
    label: &str,
    work: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = tty.then(|| {
        let (done, label) = (done.clone(), label.to_string());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                eprint!("\r{label}... {:.1} s", started.elapsed().as_secs_f64());
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    });
    if !tty {
        eprintln!("{label}...");
    }
    let result = work();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(t) = ticker {
        let _ = t.join();
        eprint!("\r");
    }
    let verdict = if result.is_ok() { "done" } else { "failed" };
    eprintln!(
        "{label}... {verdict} in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    result
}

/// `177 KB`, `18.3 MB`.
pub fn human_size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{} KB", bytes.div_ceil(1024))
    }
}
